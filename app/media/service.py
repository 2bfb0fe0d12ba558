"""Photos (issue 18 item 7): uploaded through the API, kept in the media store, served only to
those allowed.

An upload is checked before anything is kept: at most ``TRACECODE_MEDIA_MAX_BYTES`` (413
``photo_too_large``, the rest of the body never read), and a JPEG, PNG or WebP by its first bytes
(415 ``unsupported_photo_type`` otherwise, whatever the name or Content-Type claims). The photo
gets a random id (a UUID) and a storage key the service makes (``app.media.storage``); names
from the client are never used.

Who may read one: its owner, and whoever sees the owner's field records (``app.field.scope``:
the owner's supervisor, ``field.read`` over the owner's organisation); for a photo attached to an
inspection, also whoever reads inspections (``inspect.scan``, ``reports.read``) at a store of
their own subtree; anyone else gets 404.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec

from app import audit
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
from app.media.storage import PhotoStore

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


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The body, up to ``max_bytes``; 413 ``photo_too_large`` as soon as it is longer."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(
                f"a photo is at most {max_bytes // 1024} KB",
                code="photo_too_large",
                details={"max_bytes": max_bytes},
                headers={"Connection": "close"},
            )
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


async def upload(
    conn: Conn, actor: Principal, store: PhotoStore, data: bytes, daily_bytes: int
) -> PhotoOut:
    """Keep one photo of the caller's (checked above: size by the reader, type here), within
    ``daily_bytes`` of photos per user in 24 hours (429 ``photo_quota``, checked before each)."""
    actor.require_any(*UPLOADERS)
    if actor.user_id is None:
        raise BadRequest("photos are uploaded by users", code="user_required")
    if not data:
        raise BadRequest("the body is empty: send the image's bytes", code="empty_body")
    content_type, ext = sniff(data)
    # No lock: uploads of one user at once may pass the quota by what they carry (a phone
    # syncing its photos is not made to wait for each storage write, holding connections).
    used = await (
        await conn.execute(
            """SELECT coalesce(sum(size_bytes), 0) AS n FROM media_photos
               WHERE owner_id = %s AND created_at > now() - interval '1 day'""",
            (actor.user_id,),
        )
    ).fetchone()
    if used is not None and used["n"] + len(data) > daily_bytes:
        raise TooManyRequests(
            f"at most {daily_bytes // (1024 * 1024)} MB of photos a day; try again later",
            code="photo_quota",
            details={"daily_bytes": daily_bytes, "used_bytes": used["n"]},
        )
    photo_id = uuid.uuid4()
    now = await (await conn.execute("SELECT now() AS now")).fetchone()
    assert now is not None
    key = f"{actor.brand_id}/{now['now']:%Y}/{now['now']:%m}/{photo_id.hex}.{ext}"
    row = await (
        await conn.execute(
            """INSERT INTO media_photos
                   (id, owner_id, org_id, content_type, size_bytes, sha256, storage_key)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               RETURNING id, content_type, size_bytes, sha256, created_at""",
            (photo_id, actor.user_id, actor.org_id, content_type, len(data),
             hashlib.sha256(data).digest(), key),
        )
    ).fetchone()  # fmt: skip
    assert row is not None
    await store.put(key, data)  # after the row: a failed write rolls the row back
    out = _out(row)
    await audit.record(conn, actor, "upload", "photo", photo_id, after=out)
    return out


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
    conn: Conn, actor: Principal, store: PhotoStore, photo_id: uuid.UUID
) -> tuple[str, bytes]:
    """(media type, bytes) of a photo the caller may see."""
    row = await visible_row(conn, actor, photo_id)
    return row["content_type"], await store.get(row["storage_key"])
