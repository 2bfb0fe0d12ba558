"""Photos (issue 18 item 7): uploaded through the API, kept in the media store, served only to
those allowed.

An upload is checked before anything is kept: at most ``TRACECODE_MEDIA_MAX_BYTES`` (413
``photo_too_large``, the rest of the body never read), and a JPEG, PNG or WebP by its first bytes
(415 ``unsupported_photo_type`` otherwise, whatever the name or Content-Type claims) whose
blocks add up, of at most ``imagemeta.MAX_SIDE`` pixels a side and ``MAX_PIXELS`` in all (400
``damaged_image`` / ``image_too_large``, as catalogue media: a 69-byte PNG claiming 100,000 ×
100,000 pixels was kept and served to a supervisor's browser to decode, a probe). It is kept as
taken, its EXIF too: staff's evidence, seen by staff only. The photo gets a random id (a UUID)
and a storage key the service makes (``app.media.storage``); names from the client are never
used.

No database connection is held while the store is written or read (S3 may take up to 30 s: a
handful of uploads or thumbnails waiting on a slow store held every pooled connection and the
rest of the API answered 503, a probe). An upload checks the caller's quota, puts the bytes, then
writes the row in a short transaction under the user's quota lock (``Lock.MEDIA_QUOTA``: uploads
sent at once all read the same total and all passed, a probe), the quota counted again there; an
object whose row is refused or fails is deleted again, best effort (one the store will not delete
then is an orphan no row names, never served). A read finds the row, gives the connection back,
then fetches the bytes.

Who may read one: its owner, and whoever sees the owner's field records (``app.field.scope``:
the owner's supervisor, ``field.read`` over the owner's organisation); for a photo attached to an
inspection, also whoever reads inspections (``inspect.scan``, ``reports.read``) at a store of
their own subtree; anyone else gets 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from app import audit, locks
from app.auth.principal import Principal
from app.db import Conn
from app.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
)
from app.field import scope
from app.locks import Lock
from app.media import imagemeta
from app.media.storage import PhotoStore

log = logging.getLogger("tracecode.media")

UPLOADERS = ("field.visit", "inspect.scan")
INSPECTION_READERS = ("inspect.scan", "reports.read")

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


class PhotoOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    content_type: str
    size_bytes: int
    sha256: str
    url: str
    created_at: datetime


def sniff(data: bytes) -> tuple[str, str]:
    """(media type, extension) of a JPEG, PNG or WebP by its magic bytes; 415 otherwise."""
    if data.startswith(_JPEG):
        return "image/jpeg", "jpg"
    if data.startswith(_PNG):
        return "image/png", "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    raise UnsupportedMediaType(
        "a photo is a JPEG, PNG or WebP image", code="unsupported_photo_type"
    )


def too_large(max_bytes: int) -> PayloadTooLarge:
    """413 ``photo_too_large`` (``details.max_bytes``), the connection closed: the rest of the
    body is never read."""
    return PayloadTooLarge(
        f"a photo is at most {max_bytes // 1024} KB",
        code="photo_too_large",
        details={"max_bytes": max_bytes},
        headers={"Connection": "close"},
    )


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The body, up to ``max_bytes``; 413 ``photo_too_large`` as soon as it is longer."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    return bytes(body)


def _out(row: dict[str, Any]) -> PhotoOut:
    return PhotoOut(
        id=row["id"],
        content_type=row["content_type"],
        size_bytes=row["size_bytes"],
        sha256=bytes(row["sha256"]).hex(),
        url=f"/media/photos/{row['id']}",
        created_at=row["created_at"],
    )


def _checked_digest(data: bytes, content_type: str) -> bytes:
    """The photo's SHA-256, once its blocks add up and it is of a size a browser can draw
    (``imagemeta.checked``: 400 ``damaged_image`` / ``image_too_large``). The photo is kept as
    taken, its EXIF too (staff's evidence, seen by staff only): only the walk's checks count."""
    imagemeta.checked(data, content_type)
    return hashlib.sha256(data).digest()


def require_uploader(actor: Principal) -> int:
    """The user uploading a photo: ``UPLOADERS``' 403, and 400 ``user_required`` for an API key.
    The upload's route runs it before the body too (``app.deps.caller_first``)."""
    actor.require_any(*UPLOADERS)
    if actor.user_id is None:
        raise BadRequest("photos are uploaded by users", code="user_required")
    return actor.user_id


async def upload(
    pool: AsyncConnectionPool[Conn],
    actor: Principal,
    store: PhotoStore,
    data: bytes,
    daily_bytes: int,
) -> PhotoOut:
    """Keep one photo of the caller's (checked above: size by the reader, type here), within
    ``daily_bytes`` of photos per user in 24 hours (429 ``photo_quota``, checked before the
    store is written and again, under the user's lock, with the row). Connections are taken for
    the two short transactions only, none while the store writes."""
    user_id = require_uploader(actor)
    if not data:
        raise BadRequest("the body is empty: send the image's bytes", code="empty_body")
    content_type, ext = sniff(data)
    digest = await asyncio.to_thread(_checked_digest, data, content_type)
    async with pool.connection() as conn:  # not held while the store writes
        now = await _check_quota(conn, user_id, len(data), daily_bytes)
    photo_id = uuid.uuid4()
    key = f"{actor.brand_id}/{now:%Y}/{now:%m}/{photo_id.hex}.{ext}"
    await store.put(key, data)
    try:
        async with pool.connection() as conn:  # committed as the block ends
            await locks.xact_lock(conn, Lock.MEDIA_QUOTA, f"user:{user_id}")
            await _check_quota(conn, user_id, len(data), daily_bytes)
            row = await (
                await conn.execute(
                    """INSERT INTO media_photos
                           (id, owner_id, org_id, content_type, size_bytes, sha256, storage_key)
                       VALUES (%s, %s, %s, %s, %s, %s, %s)
                       RETURNING id, content_type, size_bytes, sha256, created_at""",
                    (photo_id, user_id, actor.org_id, content_type, len(data), digest,
                     key),
                )
            ).fetchone()  # fmt: skip
            assert row is not None
            out = _out(row)
            await audit.record(conn, actor, "upload", "photo", photo_id, after=out)
    except BaseException:
        await _forget(store, key)
        raise
    return out


async def _check_quota(conn: Conn, user_id: int, size: int, daily_bytes: int) -> datetime:
    """The database's time, once the user's photos of 24 hours and ``size`` more are within
    ``daily_bytes``; 429 ``photo_quota`` otherwise, with ``Retry-After`` (README: every 429 has
    one; a probe: this one had none): the seconds until the window's oldest photo leaves it,
    at least 1 (a day when none is in it: a photo larger than the quota never fits)."""
    row = await (
        await conn.execute(
            """SELECT coalesce(sum(size_bytes), 0) AS n, now() AS now,
                      ceil(extract(epoch FROM min(created_at) + interval '1 day' - now()))::int
                        AS wait
                 FROM media_photos
                WHERE owner_id = %s AND created_at > now() - interval '1 day'""",
            (user_id,),
        )
    ).fetchone()
    assert row is not None
    if row["n"] + size > daily_bytes:
        seconds = max(1, 86400 if row["wait"] is None else row["wait"])
        raise TooManyRequests(
            f"at most {daily_bytes // (1024 * 1024)} MB of photos a day; try again in {seconds} s",
            code="photo_quota",
            details={"daily_bytes": daily_bytes, "used_bytes": row["n"], "retry_after": seconds},
            headers={"Retry-After": str(seconds)},
        )
    return row["now"]  # type: ignore[no-any-return]


async def _forget(store: PhotoStore, key: str) -> None:
    """Delete an object whose row was not written, best effort: one left behind is an orphan no
    row names (never served), logged here."""
    try:
        await store.delete(key)
    except Exception as exc:
        log.warning("photo object left without a row", extra={"key": key, "error": str(exc)})


async def visible_row(conn: Conn, actor: Principal, photo_id: uuid.UUID) -> dict[str, Any]:
    """The photo's row when the caller may see it; 404 otherwise (never 403)."""
    actor.require_any(*scope.READERS, *UPLOADERS, *INSPECTION_READERS)
    where, params = scope.condition(actor, "p.owner_id", "o.path")
    if actor.has_any(*INSPECTION_READERS):
        where = f"""({where} OR EXISTS (
            SELECT 1 FROM inspection_scans sc JOIN orgs s ON s.id = sc.store_org_id
            WHERE sc.photo_ids @> ARRAY[p.id] AND sc.photo_ids <> '{{}}'
              AND s.path LIKE %(inspect_prefix)s))"""
        params["inspect_prefix"] = actor.org_path + "%"
    row = await (
        await conn.execute(
            "SELECT p.id, p.owner_id, p.content_type, p.size_bytes, p.sha256, p.storage_key, "
            "p.created_at FROM media_photos p JOIN orgs o ON o.id = p.org_id "
            f"WHERE p.id = %(id)s AND {where}",
            {**params, "id": photo_id},
        )
    ).fetchone()
    if row is None:
        raise NotFound("photo not found")
    return row


async def read(
    pool: AsyncConnectionPool[Conn], actor: Principal, store: PhotoStore, photo_id: uuid.UUID
) -> tuple[str, bytes]:
    """(media type, bytes) of a photo the caller may see; the connection is given back before
    the store is asked."""
    async with pool.connection() as conn:
        row = await visible_row(conn, actor, photo_id)
    return row["content_type"], await store.get(row["storage_key"])
