"""The chain's face to callers: who may read it, the head, the export, on-demand anchors.

The chain of a brand holds every event of the brand whole (a claim's member id included: a
hash needs the exact content), so only the brand organisation's own staff holding
``audit.read`` read it (without it: the permission refusal; ``brand_staff_only`` below the brand). A
caller only ever reaches its own brand's chain: no route takes a brand id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg

from app import audit
from app.auth.principal import Principal
from app.chain import anchors, chainer
from app.chain.check import BATCH, CheckReport, check_chain, events_by_id
from app.config import Settings
from app.db import HORIZON_CTE, Conn
from app.deadletters import is_poison
from app.errors import BadRequest, Conflict, Forbidden, ServiceUnavailable
from app.events.chainverify import FIELDS, FORMAT, genesis, key_id

PERMISSION = "audit.read"
MAX_EXPORT = 10_000  # links per GET /chain/export (the CLI exports any range to a file)
MAX_CHECK = 200_000  # links per POST /chain/check (the CLI checks whole chains)
CATCH_UP_BATCHES = 10  # an on-demand anchor chains at most this many batches first
# how long an on-demand anchor waits for the transactions open when it came to end (below the
# horizon, what was committed before it can be chained), then 503 ``chain_behind``
HORIZON_WAIT_SECONDS = 5.0
HORIZON_POLL_SECONDS = (0.01, 0.25)  # the first pause between two looks, the longest


class Head(msgspec.Struct, frozen=True):
    brand_id: int
    position: int
    hash: str
    updated_at: datetime | None
    error: str | None  # why the last pass could not extend the chain
    error_at: datetime | None
    format: str
    algorithm: str  # of the anchors' signatures
    public_key: str  # the anchors' Ed25519 public key, hex
    key_id: str


def chain_brand(actor: Principal) -> int:
    """The brand whose chain the caller reads: its own, as the brand's staff with
    ``audit.read``."""
    actor.require(PERMISSION)
    if actor.org_id != actor.brand_id:
        raise Forbidden("the event chain is read by the brand's own staff", code="brand_staff_only")
    return actor.brand_id


async def head_of(conn: Conn, settings: Settings, brand_id: int) -> Head:
    row = await (
        await conn.execute(
            """SELECT position, hash, updated_at, error, error_at FROM event_chain_heads
               WHERE brand_id = %s""",
            (brand_id,),
        )
    ).fetchone()
    public = anchors.public_key(settings)
    return Head(
        brand_id=brand_id,
        position=row["position"] if row else 0,
        hash=bytes(row["hash"] if row else genesis(brand_id)).hex(),
        updated_at=row["updated_at"] if row else None,
        error=row["error"] if row else None,
        error_at=row["error_at"] if row else None,
        format=FORMAT,
        algorithm="Ed25519",
        public_key=public.hex(),
        key_id=key_id(public),
    )


async def _snapshot_xmax(conn: Conn) -> str:
    """The first transaction id not yet given out: every event committed by now has a lower
    ``xact``."""
    row = await (
        await conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x")
    ).fetchone()
    assert row is not None
    return str(row["x"])


async def _wait_for_horizon(conn: Conn, target: str) -> None:
    """Wait until the transaction horizon (``app.db.HORIZON_CTE``) reaches ``target``: every
    transaction that was open then has ended, so each event committed before is chainable in its
    final place. A transaction of the request's own is no part of its horizon. Looks again after
    short pauses (no lock held, nothing written yet) for at most ``HORIZON_WAIT_SECONDS``, then
    503 ``chain_behind`` (retryable: a long transaction elsewhere holds the chain back)."""
    deadline = time.monotonic() + HORIZON_WAIT_SECONDS
    pause, longest = HORIZON_POLL_SECONDS
    while True:
        row = await (
            await conn.execute(
                f"WITH {HORIZON_CTE} SELECT (SELECT x FROM horizon) >= %s::xid8 AS passed",
                (target,),
            )
        ).fetchone()
        if row is not None and row["passed"]:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServiceUnavailable(
                "a transaction open since before the request holds the event chain back: "
                "what was committed before it cannot be anchored yet; retry shortly",
                code="chain_behind",
                details={"waited_seconds": HORIZON_WAIT_SECONDS},
                headers={"Retry-After": str(max(1, round(HORIZON_WAIT_SECONDS)))},
            )
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, longest)


def _unchainable(exc: Exception) -> bool:
    """Whether ``exc`` out of a batch is the chain's or an event's fault (the head no longer
    ends the stored chain, an event chained already or that cannot be hashed: any error of
    PostgreSQL's but a lost connection, a lock or a cancelled statement — as the workers'
    pass takes it), not the system's."""
    if isinstance(exc, chainer.ChainBroken) or is_poison(exc):
        return True
    return isinstance(exc, psycopg.Error) and not isinstance(exc, psycopg.OperationalError)


async def _catch_up(conn: Conn, brand_id: int) -> None:
    """Chain what is committed (``CATCH_UP_BATCHES`` at most). A batch that fails for a reason
    of the chain or its events is 409 ``chain_broken``; what was chained before it is committed
    (valid links) and the reason kept on the head in a short transaction of its own, as the
    workers' pass does (a probe: an event that could not be hashed was a 500, nothing kept)."""
    try:
        for _ in range(CATCH_UP_BATCHES):
            if await chainer.chain_batch(conn, brand_id, wait=True) < chainer.BATCH:
                break
    except Exception as exc:
        if not _unchainable(exc):
            raise
        await conn.commit()  # the failed batch was rolled back to its savepoint
        async with conn.transaction():
            reason = await chainer.record_failure(conn, brand_id, exc)
        raise Conflict(
            "the brand's event chain cannot be extended: it was altered, or an event cannot be "
            "hashed (tracecode chain check)",
            code="chain_broken",
            details={"reason": reason[:300]},
        ) from None


async def anchor_now(
    conn: Conn, settings: Settings, actor: Principal
) -> tuple[anchors.Anchor, bool]:
    """Chain what is committed (a few batches at most), then anchor the head; audited when a
    new anchor is made. The anchor covers every event committed before the request: it first
    waits for the transactions open at its start to end (``_wait_for_horizon``; 503
    ``chain_behind`` after ``HORIZON_WAIT_SECONDS`` — the chainer takes nothing above the
    horizon, and the head as it was would be answered as if current). The head row is waited
    for, not skipped, when another chainer (a background pass, another anchor request) holds
    it, for the same reason. The lock is held until the request's transaction ends, so two
    anchors at once are made one after the other. A head whose position was anchored with
    another hash is 409 ``chain_broken`` (``anchors.anchor_head``), the events chained first
    committed all the same, and the reason kept on the head."""
    brand_id = chain_brand(actor)
    await _wait_for_horizon(conn, await _snapshot_xmax(conn))
    await _catch_up(conn, brand_id)
    try:
        anchor, created = await anchors.anchor_head(conn, settings, brand_id, actor.person)
    except Conflict as exc:
        if exc.code == "chain_broken":  # the head's position was signed with another hash
            # kept on the head, as the workers' anchoring keeps it: the workers leave the brand
            # out, and no batch clears it while the anchor disagrees (``chainer._clear_error``)
            await chainer.record_failure(conn, brand_id, exc, "anchored")
            await conn.commit()  # what was chained stays: valid links, although not anchored
        raise
    if created:
        await audit.record(
            conn, actor, "create", "event_chain_anchor", anchor.id, after=anchor, org_id=brand_id
        )
    return anchor, created


def chain_range(
    head: int, first: int | None, last: int | None, limit: int, clip: bool
) -> tuple[int, int]:
    """The positions an export (``clip``: to ``limit`` links unless ``last`` is given) or a
    check (to the head) covers: 400 ``bad_positions`` (details: ``head``, ``max_links``) when they
    are not within the chain or are too many."""
    start = 1 if first is None else first
    if last is not None:
        end = last
    else:
        end = min(head, start + limit - 1) if clip else head
    if head == 0 or start < 1 or start > head or end < start or end > head:
        raise BadRequest(
            f"positions {start}..{end} are not within the chain (1..{head})",
            code="bad_positions",
            details={"head": head, "max_links": limit},
        )
    if end - start + 1 > limit:
        raise BadRequest(
            f"at most {limit} links at once: ask for a narrower range",
            code="bad_positions",
            details={"head": head, "max_links": limit},
        )
    return start, end


def event_fields(row: dict[str, Any] | None, codes: list[tuple[str, int]]) -> dict[str, Any] | None:
    """An event as an export carries it: its ``FIELDS`` texts, ``codes`` a sorted list."""
    if row is None:
        return None
    fields: dict[str, Any] = {name: row[name] for name in FIELDS[:-1]}
    fields["codes"] = [f"{kind}:{code}" for kind, code in sorted(codes)]
    return fields


async def export_lines(
    conn: Conn, settings: Settings, brand_id: int, first: int, last: int
) -> AsyncIterator[str]:
    """The export of positions ``first``..``last``: JSON lines (``app.events.chainverify``)."""
    if first == 1:
        previous = genesis(brand_id)
    else:
        row = await (
            await conn.execute(
                "SELECT hash FROM event_chain WHERE brand_id = %s AND position = %s",
                (brand_id, first - 1),
            )
        ).fetchone()
        previous = bytes(row["hash"]) if row else b""
    public = anchors.public_key(settings)
    header = {
        "format": FORMAT,
        "brand_id": str(brand_id),
        "from": first,
        "to": last,
        "previous_hash": previous.hex(),
        "public_key": public.hex(),
        "key_id": key_id(public),
        "exported_at": anchors.signed_at(datetime.now(UTC)),
        "fields": list(FIELDS),
    }
    yield json.dumps(header, ensure_ascii=False) + "\n"
    for lo in range(first, last + 1, BATCH):
        hi = min(lo + BATCH - 1, last)
        links = await (
            await conn.execute(
                """SELECT position, event_id, hash FROM event_chain
                   WHERE brand_id = %s AND position BETWEEN %s AND %s ORDER BY position""",
                (brand_id, lo, hi),
            )
        ).fetchall()
        events = await events_by_id(conn, [r["event_id"] for r in links])
        codes = await chainer.codes_of(conn, list(events))
        for row in links:
            event = event_fields(events.get(row["event_id"]), codes.get(row["event_id"], []))
            line = {"position": row["position"], "hash": bytes(row["hash"]).hex(), "event": event}
            yield json.dumps(line, ensure_ascii=False) + "\n"
    for anchor in await anchors.anchors_between(conn, brand_id, first, last):
        yield json.dumps({"anchor": msgspec.to_builtins(anchor)}, ensure_ascii=False) + "\n"


async def export_for(
    conn: Conn,
    settings: Settings,
    actor: Principal,
    first: int | None,
    last: int | None,
    *,
    audited: bool = True,
) -> tuple[bytes, str]:
    """``GET /chain/export``: the caller's brand's links ``first``..``last`` (at most
    ``MAX_EXPORT``) as JSON lines, and a file name; audited as an export (not for a HEAD
    request: no download, ``app.head``)."""
    brand_id = chain_brand(actor)
    head = await head_of(conn, settings, brand_id)
    start, end = chain_range(head.position, first, last, MAX_EXPORT, clip=True)
    body = "".join([line async for line in export_lines(conn, settings, brand_id, start, end)])
    if audited:
        await audit.record(
            conn,
            actor,
            "export",
            "event_chain",
            brand_id,
            after={"from": start, "to": end},
            org_id=brand_id,
        )
    return body.encode(), f"event-chain-{brand_id}-{start}-{end}.jsonl"


async def check_for(
    conn: Conn, settings: Settings, actor: Principal, first: int | None, last: int | None
) -> CheckReport:
    """``POST /chain/check``: re-hash links ``first``..``last`` (default the whole chain, at
    most ``MAX_CHECK``) of the caller's brand."""
    brand_id = chain_brand(actor)
    head = await head_of(conn, settings, brand_id)
    if head.position == 0 and first is None and last is None:
        return await check_chain(conn, settings, brand_id)
    start, end = chain_range(head.position, first, last, MAX_CHECK, clip=False)
    return await check_chain(conn, settings, brand_id, start, end)
