"""HTTP routes of photos (issue 18 item 7).

Neither route takes the request's connection (``app.deps.provide_conn``, held to the answer): the
store may take up to 30 s (S3), and a few photos waiting on it held every pooled connection (a
probe). The caller is loaded on a connection of its own, given back at once (``caller``); the
service takes the pool for its short transactions. The upload reads its own body (``read_photo``),
which ``provide_conn`` would have read first, whole, up to the route's cap: a body sent without
a Content-Length was 413 ``payload_too_large`` at 16 MB instead of ``photo_too_large`` as soon as
it passed the limit (a probe). So never add ``conn`` to the upload.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import BaseRouteHandler

from app.auth.principal import Principal
from app.config import MEDIA_MAX_BYTES_CAP, Settings
from app.deps import provide_principal
from app.media import service
from app.media.service import PhotoOut
from app.media.storage import store_from_settings


def declared_size(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """413 ``photo_too_large`` for a declared size over the limit, before the body is read (a
    guard runs before the dependencies, and ``read_photo`` reads the body: a probe's 8 MB was read
    to be refused)."""
    limit = connection.app.state.settings.media_max_bytes
    length = connection.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise service.too_large(limit)


async def caller(request: Request[Any, Any, Any], state: State, settings: Settings) -> Principal:
    """The caller, loaded on a pooled connection given back at once (``provide_principal``'s
    look-up, not on the request's connection)."""
    async with state.pool.connection() as conn:
        return await provide_principal(request, conn, settings)


async def read_photo(request: Request[Any, Any, Any], settings: Settings) -> bytes:
    """The upload's body, up to ``TRACECODE_MEDIA_MAX_BYTES``: 413 ``photo_too_large`` as soon
    as it is longer, with or without a Content-Length."""
    limit = settings.media_max_bytes
    try:
        return await service.read_limited(request.stream(), limit)
    except RequestEntityTooLarge:  # the route's cap, Litestar's check, before the chunk is ours
        raise service.too_large(limit) from None


async def uploader(
    request: Request[Any, Any, Any], state: State, settings: Settings, photo: bytes
) -> Principal:
    """The caller of an upload, loaded again once its ``photo`` is in (``app.deps.caller_first``
    loaded it before the body): a token deactivated while the body came in uploads nothing.
    ``photo`` is taken only to come after it."""
    return await caller(request, state, settings)


class PhotoController(Controller):
    path = "/media/photos"

    # raw_body: the bytes are an image, never a form, whatever the Content-Type says (a probe:
    # curl's default form type made a PNG's bytes 400 invalid_character); permission and
    # before_body (an API key's photo: 400 user_required): checked before the body
    # (app.deps.caller_first)
    @post(
        "/",
        status_code=201,
        guards=[declared_size],
        request_max_body_size=MEDIA_MAX_BYTES_CAP,
        opt={
            "raw_body": True,
            "permission": service.UPLOADERS,
            "before_body": service.require_uploader,
        },
        dependencies={"photo": Provide(read_photo), "principal": Provide(uploader)},
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        photo: bytes,
        principal: Principal,
        settings: Settings,
    ) -> PhotoOut:
        """Upload a photo: the request body is the image's bytes (JPEG, PNG or WebP, told by
        its first bytes, not by a name or Content-Type), at most ``TRACECODE_MEDIA_MAX_BYTES``
        (413 ``photo_too_large``; 415 ``unsupported_photo_type``). 201 with the photo's id, to
        attach to a review; ``url`` serves it to those allowed."""
        store = store_from_settings(settings)
        return await service.upload(
            request.app.state.pool, principal, store, photo, settings.media_daily_bytes
        )

    @get(
        "/{photo_id:uuid}",
        media_type="image/*",  # JPEG, PNG or WebP: its own type
        dependencies={"principal": Provide(caller)},
    )
    async def download(
        self, photo_id: uuid.UUID, state: State, principal: Principal, settings: Settings
    ) -> Response[bytes]:
        """The photo's bytes, to its owner and those who see the owner's field records (404 to
        anyone else)."""
        media_type, data = await service.read(
            state.pool, principal, store_from_settings(settings), photo_id
        )
        return Response(
            data,
            media_type=media_type,
            headers={
                "Cache-Control": "private, max-age=3600",
                "X-Content-Type-Options": "nosniff",
                # opened on its own, a crafted file runs nothing in the console's origin
                "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
                "Content-Disposition": f'inline; filename="{photo_id}"',
            },
        )
