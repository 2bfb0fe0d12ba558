"""HTTP routes of photos (issue 18 item 7)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from app.auth.principal import Principal
from app.config import MEDIA_MAX_BYTES_CAP, Settings
from app.db import Conn
from app.errors import PayloadTooLarge
from app.media import service
from app.media.service import PhotoOut
from app.media.storage import store_from_settings


def declared_size(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """413 ``photo_too_large`` for a declared size over the limit, before the body is read (a
    guard runs before the dependencies, and ``conn`` reads the body first: a probe's 8 MB was
    read to be refused)."""
    limit = connection.app.state.settings.media_max_bytes
    length = connection.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(
            f"a photo is at most {limit // 1024} KB",
            code="photo_too_large",
            details={"max_bytes": limit},
            headers={"Connection": "close"},
        )


class PhotoController(Controller):
    path = "/media/photos"

    # raw_body: the bytes are an image, never a form, whatever the Content-Type says (a probe:
    # curl's default form type made a PNG's bytes 400 invalid_character)
    @post(
        "/",
        status_code=201,
        guards=[declared_size],
        request_max_body_size=MEDIA_MAX_BYTES_CAP,
        opt={"raw_body": True},
    )
    async def upload(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Principal, settings: Settings
    ) -> PhotoOut:
        """Upload a photo: the request body is the image's bytes (JPEG, PNG or WebP, told by
        its first bytes, not by a name or Content-Type), at most ``TRACECODE_MEDIA_MAX_BYTES``
        (413 ``photo_too_large``; 415 ``unsupported_photo_type``). 201 with the photo's id, to
        attach to a review; ``url`` serves it to those allowed."""
        data = await service.read_limited(request.stream(), settings.media_max_bytes)
        store = store_from_settings(settings)
        return await service.upload(conn, principal, store, data, settings.media_daily_bytes)

    @get("/{photo_id:uuid}", media_type="image/*")  # JPEG, PNG or WebP: its own type
    async def download(
        self, photo_id: uuid.UUID, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[bytes]:
        """The photo's bytes, to its owner and those who see the owner's field records (404 to
        anyone else)."""
        media_type, data = await service.read(
            conn, principal, store_from_settings(settings), photo_id
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
