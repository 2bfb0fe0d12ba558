"""The chainer: appends committed events to their brand's hash chain, after the fact.

Nothing is hashed or serialised where events are written (the packing line writes tens of
thousands of codes a second): the chain is built behind it, by the workers' periodic pass
(``workers.chain``), ``tracecode chain run`` and an on-demand anchor. The order is the commit-safe
order of ``app.erp.export`` (read its docstring): each event records the transaction that wrote
it (``events.xact``, migration 0046), and below the transaction horizon (``app.db.HORIZON_CTE``)
every transaction has ended, so ``(xact, id)`` order there is final — a transaction committing
late holds the horizon back until it ends, and its events are chained in their place, never
skipped. Events older than migration 0046 have ``xact`` 0 and come first, in id order.

Each batch is one short transaction per brand: lock the brand's head row (``FOR UPDATE SKIP
LOCKED``: a second chainer at the same moment skips the brand rather than wait, so running two is
harmless), check that the head still ends the stored chain, read up to ``BATCH`` events after
the head's ``(xact, id)`` below the horizon with their codes, append their links, move the head.
An on-demand anchor (``app.chain.service.anchor_now``, ``wait``) waits for the head row instead:
skipping would anchor the head as it was before what the other holder chains (a probe: of two
``POST /chain/anchors`` at once, the second answered the previous anchor). No deadlock: the
request's first lock of the chain's is its brand's head row (nothing it did before touches the
chain's tables), and a background pass never waits for a head row (it skips it) — at most its
insert of a new brand's head waits for the request that inserted it, holding nothing then.
A brand whose batch fails (a head that no longer matches its chain, an event chained already —
someone rewrote the tables) keeps its error on the head row (``GET /chain``, ``tracecode chain
check``), logged once, and is skipped — by this pass and by the periodic ones after it, until
the error is cleared: by a batch that succeeds after a repair, run by ``tracecode chain run``
(which tries the broken brands too) or ``POST /chain/anchors``. The other brands go on. The
chain of a brand whose organisation is gone is kept all the same: nothing here needs the
brand's row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from app.db import HORIZON_CTE, Conn
from app.deadletters import reason_of
from app.events.chainverify import FIELDS, canonical, codes_text, genesis, link

log = logging.getLogger("tracecode.chain")
BATCH = 2000  # events per transaction: short, so the chainer never holds the horizon back
_SPANS = 16  # at most this many event-id ranges in one read of event_codes


def _micros(column: str) -> str:
    """A time as its canonical text: microseconds since the epoch in decimal — and a time that
    is not finite (``infinity``: a hand edit, an old release) as PostgreSQL's text of it, which
    no finite time's text equals, where the cast to ``bigint`` would fail the whole statement (a
    probe: a check that met one answered 500 instead of naming the event). A finite time's text
    is byte for byte what it always was: every chain stored verifies unchanged."""
    return (
        f"CASE WHEN isfinite({column})"
        f" THEN ((extract(epoch FROM {column}) * 1000000)::bigint)::text ELSE {column}::text END"
    )


# The event's FIELDS as their canonical texts (chainverify's docstring), in one SELECT list.
EVENT_TEXT = f"""e.id::text AS id, e.event_uuid::text AS event_uuid, e.brand_id::text AS brand_id,
    e.event_type, e.action, e.biz_step, e.disposition,
    {_micros("e.event_time")} AS event_time, e.tz_offset,
    {_micros("e.record_time")} AS record_time, e.read_point,
    e.biz_location::text AS biz_location, e.source_org::text AS source_org,
    e.destination_org::text AS destination_org, e.biz_transactions::text AS biz_transactions,
    e.parent_kind::text AS parent_kind, e.parent_code::text AS parent_code,
    e.child_count::text AS child_count, e.recorded_by::text AS recorded_by, e.client_event_id,
    e.details::text AS details, e.error_declaration::text AS error_declaration"""

_PENDING = f"""WITH {HORIZON_CTE}
SELECT e.xact::text AS xact, {EVENT_TEXT} FROM events e
 WHERE e.brand_id = %(brand)s AND (e.xact, e.id) > (%(xact)s::xid8, %(id)s)
   AND e.xact < (SELECT x FROM horizon)
 ORDER BY e.xact, e.id LIMIT %(limit)s"""

# Brands with events below the horizon not chained yet. The brands come from the events
# themselves (a loose scan of ``events_brand_xact_idx``: one probe per brand), not from orgs.
# A brand whose head holds an error is left out unless asked for (``%(broken)s``): its chain
# stays broken until someone repairs it, and a pass every few seconds would only log it again.
# Asked for, every brand whose head holds an error is taken, pending events or not: its batch
# clears the error once the head checks out (a probe: a head the workers could not anchor, all
# its events chained, kept its error after the repair and ``tracecode chain run``, for good).
_BRANDS = f"""WITH RECURSIVE {HORIZON_CTE},
brands AS (
    (SELECT brand_id FROM events ORDER BY brand_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.brand_id FROM events e WHERE e.brand_id > b.brand_id
             ORDER BY e.brand_id LIMIT 1)
      FROM brands b WHERE b.brand_id IS NOT NULL)
SELECT b.brand_id FROM brands b LEFT JOIN event_chain_heads h ON h.brand_id = b.brand_id
 WHERE b.brand_id IS NOT NULL AND (h.error IS NULL OR %(broken)s) AND EXISTS (
    SELECT 1 FROM events e WHERE e.brand_id = b.brand_id
       AND (e.xact, e.id) > (coalesce(h.last_xact, '0'::xid8), coalesce(h.last_id, 0))
       AND e.xact < (SELECT x FROM horizon))
UNION
SELECT brand_id FROM event_chain_heads WHERE %(broken)s AND error IS NOT NULL
 ORDER BY brand_id"""


class ChainBroken(Exception):
    """The stored chain of a brand is not what its head says: it is not extended."""


class Pass(msgspec.Struct):
    """What one chaining pass did: links appended, and the brands it could not extend."""

    appended: int = 0
    failed: dict[int, str] = {}


def spans(ids: Sequence[int]) -> list[tuple[int, int]]:
    """``ids`` as at most ``_SPANS`` ranges covering them (neighbouring ids merged first)."""
    ordered = sorted(set(ids))
    if not ordered:
        return []
    gap = 1000
    while True:
        ranges = [[ordered[0], ordered[0]]]
        for value in ordered[1:]:
            if value - ranges[-1][1] > gap:
                ranges.append([value, value])
            else:
                ranges[-1][1] = value
        if len(ranges) <= _SPANS:
            return [(lo, hi) for lo, hi in ranges]
        gap *= 8


async def codes_of(conn: Conn, ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
    """The codes of events by id, through the BRIN index on ``event_codes (event_id)``: the
    ranges of ids pick the index's block ranges, and the exact ids filter the rows in SQL, so
    only these events' rows leave the database — never the rows of the other brands' events
    the ranges span. (``event_id + 0``: an ``= ANY`` the BRIN index could use was scanned once
    per id by it; as a filter it is checked once per row of the ranges.)"""
    found: dict[int, list[tuple[str, int]]] = {i: [] for i in ids}
    ranges = spans(ids)
    if not ranges:
        return found
    where = " OR ".join("event_id BETWEEN %s AND %s" for _ in ranges)
    args: list[Any] = [v for r in ranges for v in r]
    cursor = await conn.execute(
        f"""SELECT event_id, kind::text AS kind, code FROM event_codes
            WHERE ({where}) AND event_id + 0 = ANY(%s::bigint[])""",
        [*args, list(found)],
    )
    for row in await cursor.fetchall():
        found[row["event_id"]].append((row["kind"], row["code"]))
    return found


def event_bytes(row: dict[str, Any], codes: list[tuple[str, int]]) -> bytes:
    """The canonical bytes of an event row read with ``EVENT_TEXT`` and its codes."""
    return canonical([*(row[name] for name in FIELDS[:-1]), codes_text(codes)])


async def pending_brands(conn: Conn, broken: bool = False) -> list[int]:
    """Brands with committed events not chained yet; with ``broken``, also every brand whose
    head holds an error (the last batch or anchor failed), pending events or not."""
    rows = await (await conn.execute(_BRANDS, {"broken": broken})).fetchall()
    return [row["brand_id"] for row in rows]


async def _head(conn: Conn, brand_id: int, wait: bool = False) -> dict[str, Any] | None:
    """The brand's head row, locked; ``None`` when another chainer holds it — unless ``wait``:
    then it waits for that one's transaction to end and reads the head as it left it."""
    await conn.execute(
        "INSERT INTO event_chain_heads (brand_id, hash) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (brand_id, genesis(brand_id)),
    )
    head = await (
        await conn.execute(
            """SELECT position, hash, last_xact::text AS last_xact, last_id, error
               FROM event_chain_heads WHERE brand_id = %s FOR UPDATE"""
            + ("" if wait else " SKIP LOCKED"),
            (brand_id,),
        )
    ).fetchone()
    if head is None:
        return None
    if head["position"] > 0:
        last = await (
            await conn.execute(
                "SELECT hash FROM event_chain WHERE brand_id = %s AND position = %s",
                (brand_id, head["position"]),
            )
        ).fetchone()
        if last is None or bytes(last["hash"]) != bytes(head["hash"]):
            raise ChainBroken(f"link {head['position']} is not the head's: the chain was altered")
    elif bytes(head["hash"]) != genesis(brand_id):
        raise ChainBroken("the head of an empty chain is not the genesis: it was altered")
    return head


async def _clear_error(conn: Conn, brand_id: int, position: int) -> None:
    """Clear the error the brand's head holds, the head checking out — unless an anchor signed a
    hash the chain does not hold at its position (another hash than its link's, or a position
    past the head): ``ChainBroken``, the error kept. That is the sign a consistent rewrite of the
    links cannot hide (``anchors.anchor_head``'s ``chain_broken``), and a head that checks out
    does not repair it (a probe: the next ``POST /chain/anchors``, nothing pending, cleared the
    error the workers' anchoring kept, then answered 409 — and the workers chained the brand
    again). Checked only here, with an error kept: never on a healthy chain's batches."""
    wrong = await (
        await conn.execute(
            """SELECT a.id, a.position FROM event_chain_anchors a
               LEFT JOIN event_chain c ON c.brand_id = a.brand_id AND c.position = a.position
               WHERE a.brand_id = %s AND (a.position > %s OR c.hash IS DISTINCT FROM a.hash)
               ORDER BY a.position LIMIT 1""",
            (brand_id, position),
        )
    ).fetchone()
    if wrong is not None:
        raise ChainBroken(
            f"anchor {wrong['id']} signed another hash at position {wrong['position']}: the chain"
            " was altered"
        )
    await conn.execute(
        "UPDATE event_chain_heads SET error = NULL, error_at = NULL WHERE brand_id = %s",
        (brand_id,),
    )


async def chain_batch(conn: Conn, brand_id: int, limit: int = BATCH, wait: bool = False) -> int:
    """Append up to ``limit`` of the brand's pending events to its chain, in one transaction;
    the number appended (0: nothing pending, or another chainer is at it — with ``wait``, only
    nothing pending: it waits for the other to finish, then chains what is left). A head that
    checks out clears the error it holds, even with nothing pending (the repair is done) — but
    not while an anchor disagrees with the chain (``_clear_error``: ``ChainBroken``)."""
    async with conn.transaction():
        head = await _head(conn, brand_id, wait)
        if head is None:
            return 0
        if head["error"] is not None:
            await _clear_error(conn, brand_id, head["position"])
        rows = await (
            await conn.execute(
                _PENDING,
                {
                    "brand": brand_id,
                    "xact": head["last_xact"],
                    "id": head["last_id"],
                    "limit": limit,
                },
            )
        ).fetchall()
        if not rows:
            return 0
        codes = await codes_of(conn, [int(r["id"]) for r in rows])
        previous, position = bytes(head["hash"]), head["position"]
        ids, positions, hashes = [], [], []
        for row in rows:
            event_id = int(row["id"])
            previous = link(previous, event_bytes(row, codes[event_id]))
            position += 1
            ids.append(event_id)
            positions.append(position)
            hashes.append(previous)
        await conn.execute(
            """INSERT INTO event_chain (event_id, brand_id, position, hash)
               SELECT i, %s, p, h
               FROM unnest(%s::bigint[], %s::bigint[], %s::bytea[]) AS t (i, p, h)""",
            (brand_id, ids, positions, hashes),
        )
        await conn.execute(
            """UPDATE event_chain_heads SET position = %s, hash = %s, last_xact = %s::xid8,
                      last_id = %s, updated_at = now()
               WHERE brand_id = %s""",
            (position, previous, rows[-1]["xact"], ids[-1], brand_id),
        )
        return len(rows)


async def record_failure(
    conn: Conn, brand_id: int, exc: BaseException, what: str = "extended"
) -> str:
    """Keep why the brand's chain could not be ``what`` (extended, anchored) on its head row
    (``error``, ``error_at``; one error log line): later passes leave the brand out until a batch
    that succeeds clears it. The reason kept: the error's first line (``reason_of``: PostgreSQL's
    DETAIL line quotes the row — "Failing row contains (…)")."""
    reason = reason_of(exc)[:500]
    log.error("event chain of brand %s not %s: %s", brand_id, what, reason)
    await conn.execute(
        """INSERT INTO event_chain_heads (brand_id, hash, error, error_at)
           VALUES (%s, %s, %s, now())
           ON CONFLICT (brand_id) DO UPDATE SET error = excluded.error, error_at = now()""",
        (brand_id, genesis(brand_id), reason),
    )
    return reason


async def chain_brand(conn: Conn, brand_id: int, max_batches: int | None = None) -> int:
    """Chain the brand's pending events, batch after batch (at most ``max_batches``)."""
    appended, batches = 0, 0
    while max_batches is None or batches < max_batches:
        done = await chain_batch(conn, brand_id)
        appended, batches = appended + done, batches + 1
        if done < BATCH:
            break
    return appended


async def chain_all(conn: Conn, brands: Sequence[int] | None = None, broken: bool = False) -> Pass:
    """One pass over every brand with pending events (or ``brands``), a batch per brand per
    round until none is left. ``conn`` is in autocommit mode. A brand that fails is recorded
    (its head's error, one error log line) and skipped; later passes leave it out until its
    error is cleared — by a batch that succeeds when asked for by name (``brands``), with
    ``broken`` (``tracecode chain run``: after a repair) or on demand (``POST /chain/anchors``).
    A database that cannot be reached raises (the caller tries again later)."""
    result = Pass(failed={})
    todo = list(brands) if brands is not None else await pending_brands(conn, broken)
    while todo:
        more = []
        for brand_id in todo:
            try:
                done = await chain_batch(conn, brand_id)
            except (psycopg.OperationalError, psycopg.errors.QueryCanceled):
                raise
            except Exception as exc:  # this brand's record cannot be chained: the others go on
                result.failed[brand_id] = await record_failure(conn, brand_id, exc)
                continue
            result.appended += done
            if done == BATCH:
                more.append(brand_id)
        todo = more
    return result
