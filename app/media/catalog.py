"""Catalogue media (SPEC K1, W1): a product's image or video, uploaded by the brand's office and
served to everyone — consumers' phones load it on the product pages (``/p/{gtin}``, the brand's
product list).

An upload (``catalog.write``) is checked before anything is kept: a JPEG, PNG or WebP image, or an
MP4 or WebM video, told by its first bytes, never by a name or Content-Type (415
``unsupported_catalog_media``); at most ``TRACECODE_CATALOG_IMAGE_MAX_BYTES`` for an image and
``TRACECODE_CATALOG_VIDEO_MAX_BYTES`` for a video (413 ``catalog_media_too_large``, the rest of the
body never read). An image loses its metadata blocks — EXIF with the GPS position of the phone
that took it, XMP, IPTC, comments — before it is kept (``app.media.imagemeta``: no imaging library
is installed, and none is needed to drop blocks); one whose blocks do not add up is 400
``damaged_image``. A video is kept as it is.

The bytes go to the photos' store (``app.media.storage``: a directory or an S3 bucket) under
``catalog/<brand>/<yyyy>/<mm>/<uuid>.<ext>``; the row (``catalog_media``) says whose, what kind,
its size and digest. The same bytes uploaded again by the same brand are the same medium (one row
per brand and digest): a retried upload, or two sent at once, keep one object — the loser of a
race deletes its own object and answers the winner's row.

Served at ``GET /media/catalog/{id}`` to anyone, with no credentials: the id is random (a UUID)
and a medium never changes (no overwrite; a new upload is a new id), so the answer is cached for a
year (``immutable``), with a strong ETag of its digest, ``nosniff`` and its own type, and byte
ranges for a video's seeking. A product's ``image_url`` / ``video_url`` names it by its path
(``/media/catalog/{id}``, a same-origin URL for the console and the consumer pages); the
catalogue checks that such a path names a medium of the product's brand and of the right kind
(``app.catalog.service.check_product_media``). ``DELETE /media/catalog/{id}`` removes one no
product names (409 ``in_use`` otherwise; 404 for another brand's).

No database connection is held while the store is written or read (as photos: S3 may take 30 s).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from psycopg_pool import AsyncConnectionPool

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.media import imagemeta
from app.media.storage import PhotoStore

log = logging.getLogger("tracecode.media")

Kind = Literal["image", "video"]
PATH_PREFIX = "/media/catalog/"
# ISO base media files that browsers play as MP4 (a QuickTime "qt  " file or a HEIF image is not)
_MP4_BRANDS = {
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ",
    b"dash", b"mmp4", b"msnv", b"MSNV", b"3gp4", b"3gp5", b"3gp6",
}  # fmt: skip
_TYPES: dict[str, tuple[Kind, str]] = {
    "image/jpeg": ("image", "jpg"),
    "image/png": ("image", "png"),
    "image/webp": ("image", "webp"),
    "video/mp4": ("video", "mp4"),
    "video/webm": ("video", "webm"),
}


class CatalogMediaOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    kind: Kind
    content_type: str
    size_bytes: int
    sha256: str
    url: Annotated[
        str,
        msgspec.Meta(
            description="its path on this server, to put in a product's image_url or video_url"
        ),
    ]
    absolute_url: Annotated[
        str, msgspec.Meta(description="the same under TRACECODE_PUBLIC_SCHEME://RESOLVER_HOST")
    ]
    created_at: datetime


def sniff(data: bytes) -> tuple[str, Kind, str]:
    """(media type, kind, extension) by the first bytes; 415 ``unsupported_catalog_media``."""
    content_type = None
    if data.startswith(b"\xff\xd8\xff"):
        content_type = "image/jpeg"
    elif data.startswith(imagemeta.PNG_SIGNATURE):
        content_type = "image/png"
    elif len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        content_type = "image/webp"
    elif len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _MP4_BRANDS:
        content_type = "video/mp4"
    elif data.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in data[:64]:  # EBML, DocType webm
        content_type = "video/webm"
    if content_type is None:
        raise UnsupportedMediaType(
            "a product image is a JPEG, PNG or WebP; a product video an MP4 or WebM",
            code="unsupported_catalog_media",
        )
    kind, ext = _TYPES[content_type]
    return content_type, kind, ext


def too_large(max_bytes: int) -> PayloadTooLarge:
    """413 ``catalog_media_too_large`` (``details.max_bytes``), the connection closed: the rest
    of the body is never read."""
    return PayloadTooLarge(
        f"this upload is at most {max_bytes // 1024} KB",
        code="catalog_media_too_large",
        details={"max_bytes": max_bytes},
        headers={"Connection": "close"},
    )


def limit_of(kind: Kind | None, image_max: int, video_max: int) -> int:
    """The most an upload of ``kind`` may hold (of either kind: the larger)."""
    if kind == "image":
        return image_max
    if kind == "video":
        return video_max
    return max(image_max, video_max)


def _columns() -> str:
    return "id, kind, content_type, size_bytes, sha256, created_at"


def _out(row: dict[str, Any], public_url: str) -> CatalogMediaOut:
    path = f"{PATH_PREFIX}{row['id']}"
    return CatalogMediaOut(
        id=row["id"],
        kind=row["kind"],
        content_type=row["content_type"],
        size_bytes=row["size_bytes"],
        sha256=bytes(row["sha256"]).hex(),
        url=path,
        absolute_url=public_url + path,
        created_at=row["created_at"],
    )


def prepare(
    data: bytes, kind: Kind | None, image_max: int, video_max: int
) -> tuple[bytes, str, Kind, str]:
    """(bytes to keep, media type, kind, extension) of an upload: typed by its first bytes, of
    the ``kind`` asked for (if any), within its kind's limit, an image without its metadata."""
    if not data:
        raise BadRequest("the body is empty: send the file's bytes", code="empty_body")
    content_type, found, ext = sniff(data)
    if kind is not None and found != kind:
        raise UnsupportedMediaType(
            f"this is a {found}, not a {kind}",
            code="unsupported_catalog_media",
            details={"kind": found},
        )
    limit = limit_of(found, image_max, video_max)
    if len(data) > limit:
        raise too_large(limit)
    if found == "image":
        try:
            data = imagemeta.strip(data, content_type)
        except imagemeta.Damaged as exc:
            raise ValidationFailed(
                f"the image cannot be read: {exc}", code="damaged_image"
            ) from None
    return data, content_type, found, ext


async def upload(
    pool: AsyncConnectionPool[Conn],
    actor: Principal,
    store: PhotoStore,
    data: bytes,
    *,
    kind: Kind | None,
    image_max: int,
    video_max: int,
    public_url: str,
) -> CatalogMediaOut:
    """Keep one image or video of the caller's brand (the reader bounded the body by the larger
    limit; type, kind and its own limit are checked here). The same bytes of the brand already
    kept: that medium, nothing written."""
    actor.require("catalog.write")
    data, content_type, found, ext = prepare(data, kind, image_max, video_max)
    digest = hashlib.sha256(data).digest()
    brand = actor.brand_id
    async with pool.connection() as conn:  # not held while the store writes
        row = await _same(conn, brand, digest)
        now = await _now(conn)
    if row is not None:
        return _out(row, public_url)
    media_id = uuid.uuid4()
    key = f"catalog/{brand}/{now:%Y}/{now:%m}/{media_id.hex}.{ext}"
    await store.put(key, data)
    try:
        async with pool.connection() as conn:  # committed as the block ends
            # the same bytes kept meanwhile (a race of two uploads): that row, locked, not ours
            row = await (
                await conn.execute(
                    f"""INSERT INTO catalog_media (id, brand_id, kind, content_type, size_bytes,
                                                   sha256, storage_key, created_by)
                        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                        ON CONFLICT (brand_id, sha256)
                          DO UPDATE SET brand_id = catalog_media.brand_id
                        RETURNING {_columns()}, storage_key = %s AS ours""",
                    (media_id, brand, found, content_type, len(data), digest, key,
                     actor.user_id, key),
                )
            ).fetchone()  # fmt: skip
            assert row is not None
            out = _out(row, public_url)
            if row["ours"]:
                await audit.record(conn, actor, "upload", "catalog_media", media_id, after=out)
    except BaseException:
        await _forget(store, key)
        raise
    if not row["ours"]:
        await _forget(store, key)
    return out


async def _same(conn: Conn, brand: int, digest: bytes) -> dict[str, Any] | None:
    return await (  # type: ignore[no-any-return]
        await conn.execute(
            f"SELECT {_columns()} FROM catalog_media WHERE brand_id = %s AND sha256 = %s",
            (brand, digest),
        )
    ).fetchone()


async def _now(conn: Conn) -> datetime:
    row = await (await conn.execute("SELECT now() AS now")).fetchone()
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


async def _forget(store: PhotoStore, key: str) -> None:
    """Delete an object no row names, best effort: one left behind is an orphan never served."""
    try:
        await store.delete(key)
    except Exception as exc:
        log.warning("catalogue object left without a row", extra={"key": key, "error": str(exc)})


async def public_row(pool: AsyncConnectionPool[Conn], media_id: uuid.UUID) -> dict[str, Any]:
    """The medium's row (anyone may read it); 404 when there is none."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT content_type, size_bytes, sha256, storage_key FROM catalog_media "
                "WHERE id = %s",
                (media_id,),
            )
        ).fetchone()
    if row is None:
        raise NotFound("no such catalogue medium")
    return row  # type: ignore[no-any-return]


async def delete(
    pool: AsyncConnectionPool[Conn], actor: Principal, store: PhotoStore, media_id: uuid.UUID
) -> None:
    """Delete a medium of the caller's brand that no product names (409 ``in_use``; 404 for
    another brand's or none). The row goes first, in its transaction, with the product check
    under its lock (a product naming it waits, then finds it gone: 400); the object after."""
    actor.require("catalog.write")
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT storage_key FROM catalog_media WHERE id = %s AND brand_id = %s FOR UPDATE",
                (media_id, actor.brand_id),
            )
        ).fetchone()
        if row is None:
            raise NotFound("no such catalogue medium")
        path = f"{PATH_PREFIX}{media_id}"
        used = await (
            await conn.execute(
                "SELECT id FROM products WHERE image_url = %s OR video_url = %s LIMIT 1",
                (path, path),
            )
        ).fetchone()
        if used is not None:
            raise Conflict(
                "a product shows this file: change the product first",
                code="in_use",
                details={"product_id": used["id"]},
            )
        await conn.execute("DELETE FROM catalog_media WHERE id = %s", (media_id,))
        await audit.record(conn, actor, "delete", "catalog_media", media_id)
    await _forget(store, row["storage_key"])
