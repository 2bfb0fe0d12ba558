"""HTTP routes of the brand story (the back office's side; the phone site's pages are
``app.web.content_pages``)."""

from __future__ import annotations

from litestar import Controller, get, put

from app.auth.principal import Principal
from app.content import story
from app.content.schemas import StoryIn, StoryOut
from app.db import Conn


class BrandStoryController(Controller):
    path = "/brand-story"

    @get("/")
    async def get_story(self, conn: Conn, principal: Principal) -> StoryOut:
        """The caller's brand's story (品牌介绍): title, sanitised HTML, version (0: none yet)."""
        return await story.get_story(conn, principal)

    @put("/")
    async def put_story(self, data: StoryIn, conn: Conn, principal: Principal) -> StoryOut:
        """Save the brand story (``content.write``, the brand's own staff: 403
        ``brand_staff_only`` below it). The HTML is sanitised by an allow-list and answered as
        kept (400 ``too_deep`` when its tags nest more than 64 levels deep); ``version`` is the
        one the edit was made from: 409 ``story_changed`` when another save came between
        (details: the current ``version``)."""
        return await story.put_story(conn, principal, data)
