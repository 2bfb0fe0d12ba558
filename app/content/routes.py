"""HTTP routes of the brand story (the back office's side; the phone site's pages are
``app.web.content_pages``).

``PUT /brand-story`` takes no request connection (``app.deps.provide_conn``, held to the answer):
the story is sanitised first — seconds of parse for a deep one, before it is refused — and the
service takes the pool for the short transaction of its write (a probe: a burst of deep saves
held every pooled connection and the rest of the API answered 503). So never add ``conn`` to it.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.di import Provide

from app.auth.principal import Principal
from app.config import Settings
from app.content import story
from app.content.schemas import StoryIn, StoryOut
from app.db import Conn
from app.deps import provide_principal


async def first_caller(
    request: Request[Any, Any, Any], state: State, settings: Settings
) -> Principal:
    """The caller as ``app.deps.caller_first`` loaded it before the body, on a connection given
    back at once (else loaded so here): not on the request's connection, which the save does
    not take. ``story.put_story`` loads it again in its write's transaction."""
    loaded: Principal | None = request.state.get("principal")
    if loaded is not None:
        return loaded
    async with state.pool.connection() as conn:
        return await provide_principal(request, conn, settings)


class BrandStoryController(Controller):
    path = "/brand-story"

    @get("/")
    async def get_story(self, conn: Conn, principal: Principal) -> StoryOut:
        """The caller's brand's story (品牌介绍): title, sanitised HTML, version (0: none yet)."""
        return await story.get_story(conn, principal)

    @put("/", dependencies={"principal": Provide(first_caller)})
    async def put_story(
        self,
        request: Request[Any, Any, Any],
        data: StoryIn,
        state: State,
        settings: Settings,
        principal: Principal,
    ) -> StoryOut:
        """Save the brand story (``content.write``, the brand's own staff: 403
        ``brand_staff_only`` below it). The HTML is sanitised by an allow-list and answered as
        kept (400 ``too_deep`` when its tags nest more than 64 levels deep, ``invalid_character``
        when it holds a control character, as a character reference; ``unknown_catalog_media``
        when a picture or link names a catalogue medium of this server that is not the brand's,
        or a picture one that is no image); ``version`` is the one the edit was made from: 409
        ``story_changed`` when another save came between (details: the current ``version``)."""

        async def reload(conn: Conn) -> Principal:
            return await provide_principal(request, conn, settings)

        saved = await story.put_story(
            state.pool, principal, data, reload=reload, public_url=settings.public_url
        )
        if state.replica is not None:  # read-your-writes, as ``provide_conn`` marks a change
            await state.replica.note_write(state.redis, principal)
        return saved
