"""A line's recent uploads and their rejected scans (P2, the console's packing lines page).

The uploads themselves leave no row of their own: what they activated and packed is in the
state tables and the events, and a rejected scan changes nothing. So the answers given are kept
as a short log, in Redis: after each upload the route pushes one entry — the time, the user, the
counts and the first ``KEEP_REJECTIONS`` rejected scans (code, reason, message) — onto a list
per line (``{namespace}:line-uploads:{org}:{line code}``) trimmed to the newest ``KEEP``
uploads; one pipelined round trip off the database's path. It is a recent-activity view for the
people watching a line, not a record: a Redis that is down loses entries (the upload itself is
never refused for it; a warning is logged), and an upload whose transaction fails after its
answer was made is still listed.

``GET /lines/{line}/uploads`` reads it with the line's own scoping (``packing.scan``, a line of
the caller's organisation, 404 ``unknown_line`` otherwise), newest first, paged; with
``rejected_only`` just the uploads that rejected a scan.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec
from redis.exceptions import RedisClusterException, RedisError

from app.auth.principal import Principal
from app.db import Conn
from app.errors import ServiceUnavailable
from app.packing.lines import get_line
from app.packing.schemas import RejectionOut, ScanUploadOut, UploadOut
from app.paging import Page, page_of
from app.redisconn import AnyRedis

KEEP = 200  # uploads kept per line
_REDIS_ERRORS = (RedisError, RedisClusterException, OSError)  # a cluster's own errors included
KEEP_REJECTIONS = 100  # rejected scans kept per upload

log = logging.getLogger("tracecode.packing")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(UploadOut).decode


def key(namespace: str, org_id: int, line_code: str) -> str:
    return f"{namespace}:line-uploads:{org_id}:{line_code}"


def entry(actor: Principal, out: ScanUploadOut, at: datetime | None = None) -> UploadOut:
    """What the log keeps of one upload's answer."""
    rejections = [
        RejectionOut(id=s.id, kind=s.kind, code=s.code, reason=s.reason, message=s.message)
        for s in out.scans
        if s.result == "rejected"
    ][:KEEP_REJECTIONS]
    return UploadOut(
        at=at or datetime.now(UTC),
        user_id=actor.user_id,
        username=actor.username,
        scans=len(out.scans),
        accepted=out.accepted,
        duplicates=out.duplicates,
        rejected=out.rejected,
        rejections=rejections,
    )


async def remember(
    redis: AnyRedis, namespace: str, actor: Principal, line_code: str, out: ScanUploadOut
) -> None:
    """Push the upload's entry onto its line's log, trimmed to the newest ``KEEP``."""
    name = key(namespace, actor.org_id, line_code)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.lpush(name, _encode(entry(actor, out)))
            pipe.ltrim(name, 0, KEEP - 1)
            await pipe.execute()
    except _REDIS_ERRORS as exc:  # the upload stands; only its log entry is lost
        log.warning("upload log not kept", extra={"line": line_code, "error": str(exc)})


async def recent(
    conn: Conn,
    redis: AnyRedis,
    namespace: str,
    actor: Principal,
    line_code: str,
    *,
    rejected_only: bool,
    page: int,
    per_page: int,
) -> Page[UploadOut]:
    """The line's recent uploads, newest first (``packing.scan``; a line of the caller's
    organisation)."""
    actor.require("packing.scan")
    await get_line(conn, actor, line_code)  # 404 unknown_line outside the caller's organisation
    try:
        raw = await redis.lrange(key(namespace, actor.org_id, line_code), 0, KEEP - 1)
    except _REDIS_ERRORS:
        raise ServiceUnavailable(
            "the recent uploads cannot be read now; try again shortly", code="redis_unavailable"
        ) from None
    items = []
    for entry in raw:
        try:
            items.append(_decode(entry))
        except msgspec.DecodeError:  # an entry of another shape (an older release): skipped
            continue
    if rejected_only:
        items = [i for i in items if i.rejected]
    return page_of(items, page, per_page)
