"""HTTP routes of catalogue media (``app.media.catalog``): the upload, the brand's list and usage,
the public download with byte ranges, the deletion.

As the photos' routes (``app.media.routes``), none that touches the store takes the request's
connection: the store may take up to 30 s, and the upload reads its own body (bounded as it comes
in, 413 as soon as it passes the limit of the kind asked for, or of either kind). The list and
the usage, database reads only, take it as any list does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from litestar import Controller, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import BaseRouteHandler
from litestar.response import Stream

from app.auth.principal import Principal
from app.byteranges import CHUNK, wanted_range
from app.catalog.schemas import MEDIA_ID
from app.config import CATALOG_MEDIA_MAX_BYTES_CAP, Settings
from app.db import Conn
from app.errors import NotFound
from app.media import catalog
from app.media.catalog import CatalogMediaListed, CatalogMediaOut, CatalogUsageOut, Kind
from app.media.routes import caller
from app.media.s3 import S3Store
from app.media.storage import LocalStore, PhotoStore, store_from_settings
from app.paging import Page, PageNo, PerPage

IMMUTABLE = "public, max-age=31536000, immutable"
_MEDIA_ID = re.compile(MEDIA_ID)


def _medium(media_id: str) -> uuid.UUID:
    """The medium a path names by its id in the canonical hyphenated form (either case), the
    one form the media checks read (``app.catalog.service``); 404, as for an unknown id, for
    any other that ``uuid.UUID`` takes — 32 bare hex digits, braces, ``urn:uuid:``, hyphens
    elsewhere (a review: brand B's story named brand A's medium so, past the brand check, and
    the brand's own story showed its medium so with the medium not in use)."""
    if _MEDIA_ID.fullmatch(media_id) is None:
        raise NotFound("no such catalogue medium")
    return uuid.UUID(media_id)


def _limit(connection: ASGIConnection[Any, Any, Any, Any]) -> int:
    """The most this upload may hold: its ``kind``'s limit (either's when it names none). A
    ``kind`` given twice is its last, as the handler's: Litestar keeps a repeated single-valued
    parameter's last value (a review: this read the first, ``?kind=image&kind=video`` held a
    video to the image's limit)."""
    settings: Settings = connection.app.state.settings
    kinds = connection.query_params.getall("kind", [])
    kind = kinds[-1] if kinds else None
    return catalog.limit_of(
        kind if kind in ("image", "video") else None,  # type: ignore[arg-type]
        settings.catalog_image_max_bytes,
        settings.catalog_video_max_bytes,
    )


def declared_size(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """413 ``catalog_media_too_large`` for a declared size over the limit, before the body."""
    limit = _limit(connection)
    length = connection.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise catalog.too_large(limit)


async def read_body(request: Request[Any, Any, Any]) -> bytes:
    """The upload's body, up to its limit: 413 as soon as it is longer."""
    limit = _limit(request)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise catalog.too_large(limit)
    except RequestEntityTooLarge:  # the route's cap, Litestar's check, before the chunk is ours
        raise catalog.too_large(limit) from None
    return bytes(body)


async def uploader(
    request: Request[Any, Any, Any], state: State, settings: Settings, content: bytes
) -> Principal:
    """The caller, loaded again once the body is in (``content`` is taken only to come after it):
    a token deactivated while the body came in uploads nothing."""
    return await caller(request, state, settings)


async def _slice(path: Path, first: int, last: int) -> AsyncIterator[bytes]:
    try:
        file = await anyio.open_file(path, "rb")
    except FileNotFoundError:  # deleted since the row was read: the answer has begun
        return
    async with file:
        await file.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = await file.read(min(CHUNK, left))
            if not chunk:
                raise RuntimeError(f"{path} ended before its byte {last}")
            left -= len(chunk)
            yield chunk


async def _whole(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _body(store: PhotoStore, key: str, first: int, last: int) -> AsyncIterator[bytes]:
    """Bytes ``first``–``last`` of a stored medium, never read whole: from the file, or asked of
    S3 as a range and streamed (a 200 MB video asked for ``bytes=0-0`` reads one byte)."""
    if isinstance(store, LocalStore):
        path = store.path(key)
        if not path.is_file():
            raise NotFound("no such catalogue medium")
        return _slice(path, first, last)
    if isinstance(store, S3Store):
        return await store.stream(key, first, last)
    data = await store.get(key)  # another store: no ranged read of its own
    return _whole(data[first : last + 1])


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether ``If-None-Match`` names the (one, never changing) version: its ETag, or ``*``."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


class CatalogMediaController(Controller):
    path = "/media/catalog"

    # raw_body: the bytes are the file, never a form, whatever the Content-Type says;
    # permission and before_body (the brand's own staff: 403 brand_staff_only below it): checked
    # before the body (app.deps.caller_first)
    @post(
        "/",
        status_code=201,
        guards=[declared_size],
        request_max_body_size=CATALOG_MEDIA_MAX_BYTES_CAP,
        opt={"raw_body": True, "permission": ("catalog.write",), "before_body": catalog.writer},
        dependencies={"content": Provide(read_body), "principal": Provide(uploader)},
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        content: bytes,
        principal: Principal,
        settings: Settings,
        kind: Kind | None = None,
    ) -> CatalogMediaOut:
        """Upload a product image or video (``catalog.write``, the brand's own staff: 403
        ``brand_staff_only`` below the brand, as a medium is the brand's): the request body is
        the file's bytes — a JPEG, PNG or WebP image (at most
        ``TRACECODE_CATALOG_IMAGE_MAX_BYTES``, its metadata removed) or an MP4 or WebM video
        (``TRACECODE_CATALOG_VIDEO_MAX_BYTES``, kept as is), told by its first bytes (415
        ``unsupported_catalog_media``; ``kind`` asks for one of the two). 201 with its public
        ``url``, to put in a product's ``image_url`` or ``video_url``; the same bytes again are
        the same medium. The brand keeps at most ``TRACECODE_CATALOG_BRAND_QUOTA_BYTES`` of
        media (409 ``catalog_quota_exceeded``)."""
        return await catalog.upload(
            request.app.state.pool,
            principal,
            store_from_settings(settings),
            content,
            kind=kind,
            image_max=settings.catalog_image_max_bytes,
            video_max=settings.catalog_video_max_bytes,
            quota=settings.catalog_brand_quota_bytes,
            public_url=settings.public_url,
        )

    @get("/")
    async def list_media(
        self,
        conn: Conn,
        principal: Principal,
        settings: Settings,
        kind: Kind | None = None,
        unused: bool | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[CatalogMediaListed]:
        """The media of the caller's brand (``catalog.read``), newest first, each with the
        products naming it (the first few, and their count); ``unused=true``: those no product
        names (a file uploaded in the product dialog and never saved on a product), which may
        be deleted."""
        return await catalog.list_media(
            conn,
            principal,
            kind=kind,
            unused=unused,
            page=page,
            per_page=per_page,
            public_url=settings.public_url,
        )

    @get("/usage")
    async def usage(self, conn: Conn, principal: Principal, settings: Settings) -> CatalogUsageOut:
        """The bytes and count of the caller's brand's media, and its quota (``catalog.read``)."""
        return await catalog.usage(conn, principal, settings.catalog_brand_quota_bytes)

    @get("/{media_id:str}", media_type="application/octet-stream")
    async def download(
        self, request: Request[Any, Any, Any], media_id: str, state: State, settings: Settings
    ) -> Response[Any]:
        """The medium's bytes, to anyone (consumers' phones): its own type, cached for a year
        (it never changes), one byte range of it on request (206; 416 past its end). The id in
        its canonical form only (``8-4-4-4-12`` hex digits, either case; 404 otherwise)."""
        row = await catalog.public_row(state.pool, _medium(media_id))
        size, etag = row["size_bytes"], f'"{bytes(row["sha256"]).hex()}"'
        headers = {
            "Cache-Control": IMMUTABLE,
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "X-Content-Type-Options": "nosniff",
            # opened on its own, a crafted file runs nothing in this origin
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; "
            "sandbox",
            "Content-Disposition": "inline",
        }
        if _matches(request.headers.get("if-none-match", ""), etag):
            return Response(b"", status_code=304, headers=headers)
        first, last, status = 0, size - 1, 200
        wanted, if_range = request.headers.get("range"), request.headers.get("if-range")
        if wanted is not None and (if_range is None or if_range.strip() == etag):
            span = wanted_range(wanted, size)
            if span is not None:
                (first, last), status = span, 206
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        headers["Content-Length"] = str(last - first + 1)
        media_type = row["content_type"]
        headers["Content-Type"] = media_type  # a Stream takes the route's type over its own
        if request.method == "HEAD":  # the headers only: the store is not asked
            return Response(b"", status_code=status, media_type=media_type, headers=headers)
        body = await _body(store_from_settings(settings), row["storage_key"], first, last)
        return Stream(body, status_code=status, media_type=media_type, headers=headers)

    @delete("/{media_id:str}", dependencies={"principal": Provide(caller)})
    async def remove(
        self, media_id: str, state: State, principal: Principal, settings: Settings
    ) -> None:
        """Delete a medium of the caller's brand that no product shows (409 ``in_use``; 404 for
        another brand's; 403 ``brand_staff_only`` below the brand: its media are its own staff's to
        delete, as its products are). Copies cached by browsers and proxies may live on for a
        while."""
        await catalog.delete(
            state.pool,
            principal,
            store_from_settings(settings),
            _medium(media_id),
            public_url=settings.public_url,
        )
