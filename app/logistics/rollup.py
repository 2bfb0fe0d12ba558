"""Stock roll-up (SPEC L9): fold the movement deltas into ``stock`` exactly once, raise low-stock
alerts, and recount stock from the code state to prove the two agree.

Every movement writes its unit-state change and its ``stock_deltas`` rows in one transaction. The
roll-up takes delta rows under ``FOR UPDATE SKIP LOCKED`` and deletes them in the same statement
that adds them to ``stock``, so concurrent roll-ups take disjoint rows and a row is counted once;
rows of transactions not yet committed are invisible and are picked up by a later pass.
A delta that cannot be folded goes to ``dead_letters`` and the others are folded
(``app.deadletters``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from app.auth.principal import brand_of
from app.db import Conn
from app.deadletters import STOCK_DELTAS, drain
from app.locks import Lock, run_alone, xact

# One batch: take, delete and sum delta rows, add the sums to stock. Stock rows are upserted in key
# order so two roll-ups touching the same rows wait for each other instead of deadlocking.
_BATCH_OF = """
WITH taken AS (
    DELETE FROM stock_deltas
    WHERE id IN ({take})
    RETURNING org_id, product_id, lot, on_hand, in_transit
), summed AS (
    SELECT org_id, product_id, lot, sum(on_hand) AS on_hand, sum(in_transit) AS in_transit,
           count(*) AS n
    FROM taken GROUP BY org_id, product_id, lot
), upserted AS (
    INSERT INTO stock AS s (org_id, product_id, lot, on_hand, in_transit)
    SELECT org_id, product_id, lot, on_hand, in_transit FROM summed
    ORDER BY org_id, product_id, lot
    ON CONFLICT (org_id, product_id, lot) DO UPDATE
        SET on_hand = s.on_hand + EXCLUDED.on_hand,
            in_transit = s.in_transit + EXCLUDED.in_transit,
            updated_at = now()
    RETURNING 1
), pairs AS (
    SELECT DISTINCT m.org_id, m.product_id
    FROM summed m JOIN stock_thresholds t USING (org_id, product_id)
)
SELECT (SELECT coalesce(sum(n), 0) FROM summed)::bigint AS taken,
       (SELECT count(*) FROM upserted) AS upserted,
       (SELECT coalesce(array_agg(org_id ORDER BY org_id, product_id), '{}') FROM pairs) AS orgs,
       (SELECT coalesce(array_agg(product_id ORDER BY org_id, product_id), '{}') FROM pairs)
           AS products
"""
_BATCH = _BATCH_OF.replace(
    "{take}", "SELECT id FROM stock_deltas ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)
# The same for given rows only: salvaging a batch that failed (see ``rollup``).
_BATCH_IDS = _BATCH_OF.replace(
    "{take}", "SELECT id FROM stock_deltas WHERE id = ANY(%(ids)s) FOR UPDATE SKIP LOCKED"
)

# (org, product) pairs with a threshold, their on-hand total over lots, and what the alert names.
_BELOW = """
SELECT t.org_id, t.product_id, t.min_units, o.path, o.name AS org_name, p.name AS product_name,
       coalesce((SELECT sum(s.on_hand) FROM stock s
                 WHERE s.org_id = t.org_id AND s.product_id = t.product_id), 0)::bigint AS on_hand
FROM unnest(%s::bigint[], %s::bigint[]) AS k (org_id, product_id)
JOIN stock_thresholds t ON t.org_id = k.org_id AND t.product_id = k.product_id
JOIN orgs o ON o.id = t.org_id
JOIN products p ON p.id = t.product_id
"""

# Raised when no acknowledged alert holds: one acknowledged at this minimum and at no more
# than the units on hand now, with the stock not back at its minimum since (``_RECOVERED``) —
# a probe: each roll-up under the minimum raised the acknowledged alert again, though the stock
# had not fallen (it had risen, or the same minimum was set again).
_ALERT = """
INSERT INTO alerts (brand_id, org_id, kind, severity, message, details, dedup_key)
SELECT %(brand)s, %(org)s, 'low_stock', %(severity)s, %(message)s, %(details)s, %(dedup)s
WHERE NOT EXISTS (
    SELECT 1 FROM (SELECT acknowledged_at, details FROM alerts
                    WHERE org_id = %(org)s AND dedup_key = %(dedup)s
                    ORDER BY at DESC, id DESC LIMIT 1) AS last
     WHERE last.acknowledged_at IS NOT NULL AND NOT last.details ? 'recovered'
       AND (last.details ->> 'min_units')::bigint = %(min_units)s
       AND (last.details ->> 'on_hand')::bigint <= %(on_hand)s)
ON CONFLICT (dedup_key) WHERE acknowledged_at IS NULL
DO UPDATE SET occurrences = alerts.occurrences + 1, last_at = now(), severity = EXCLUDED.severity,
              message = EXCLUDED.message, details = EXCLUDED.details
"""


# The stock is back at its minimum: an open alert is closed (acknowledged by no one, its details
# say ``recovered``; a probe: it stayed open, and the dashboard counted it, after the store was
# restocked), and an acknowledged one holds no more (the next fall raises)
_RECOVERED = """
UPDATE alerts SET details = details || '{"recovered": true}',
                  acknowledged_at = coalesce(acknowledged_at, now())
WHERE id = (SELECT id FROM alerts WHERE org_id = %(org)s AND dedup_key = %(dedup)s
             ORDER BY at DESC, id DESC LIMIT 1)
  AND NOT details ? 'recovered'
"""


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """A stock row that differs from what the code state says."""

    org_id: int
    product_id: int
    lot: str
    on_hand: int
    in_transit: int
    expected_on_hand: int
    expected_in_transit: int


async def rollup(conn: Conn, limit: int = 100_000) -> int:
    """Fold pending stock deltas into ``stock``, ``limit`` rows per transaction, until none are
    left; return how many delta rows were consumed. ``conn`` must not be inside a transaction
    (each batch commits on its own). A delta that cannot be folded (say, a sum out of range)
    is dead-lettered and does not stop the others (``app.deadletters.drain``)."""
    return await drain(
        conn,
        "stock_deltas",
        STOCK_DELTAS,
        lambda: _fold(conn, _BATCH, {"limit": limit}),
        lambda ids: _fold(conn, _BATCH_IDS, {"ids": ids}),
        limit,
    )


async def _fold(conn: Conn, sql: str, params: dict[str, Any]) -> int:
    """One batch in one transaction: fold the deltas, raise low-stock alerts."""
    async with conn.transaction():
        row = await (await conn.execute(sql, params)).fetchone()
        assert row is not None
        if row["orgs"]:
            await check_thresholds(conn, list(zip(row["orgs"], row["products"], strict=True)))
        return int(row["taken"])


async def check_thresholds(conn: Conn, pairs: list[tuple[int, int]]) -> int:
    """Open (or bump) one low_stock alert per (organisation, product) below its threshold;
    return how many pairs are below; close those of pairs back at their minimum. Evaluated one
    transaction at a time (``Lock.STOCK_THRESHOLDS``, held to its commit): the threshold set and
    the stock folded by another transaction are read once it has committed (probe skew)."""
    if not pairs:
        return 0
    await conn.execute(*xact(Lock.STOCK_THRESHOLDS))
    rows = await (
        await conn.execute(_BELOW, ([o for o, _ in pairs], [p for _, p in pairs]))
    ).fetchall()
    below = [r for r in rows if r["on_hand"] < r["min_units"]]
    if below:
        await conn.cursor().executemany(_ALERT, [_alert(r) for r in below])
    back = [
        {"org": r["org_id"], "dedup": f"low_stock:{r['org_id']}:{r['product_id']}"}
        for r in rows
        if r["on_hand"] >= r["min_units"]
    ]
    if back:
        await conn.cursor().executemany(_RECOVERED, back)
    return len(below)


def _alert(row: dict[str, Any]) -> dict[str, Any]:
    org, product, on_hand, minimum = (
        row["org_id"],
        row["product_id"],
        row["on_hand"],
        row["min_units"],
    )
    return {
        "brand": brand_of(row["path"]),
        "org": org,
        "severity": "critical" if on_hand <= 0 else "warning",
        "message": f"Low stock of {row['product_name']} at {row['org_name']}: "
        f"{on_hand} on hand, minimum {minimum}",
        "details": Jsonb(
            {"org_id": org, "product_id": product, "on_hand": on_hand, "min_units": minimum}
        ),
        "dedup": f"low_stock:{org}:{product}",
        "on_hand": on_hand,
        "min_units": minimum,
    }


# What the code state says, against stock plus the deltas not yet rolled up — in one statement, so
# one snapshot: a movement's state change and its deltas are both visible or both not.
_RECOUNT = """
WITH expected AS (
    SELECT org_id, product_id, lot, sum(on_hand) AS on_hand, sum(in_transit) AS in_transit
    FROM (
        SELECT holder_org_id AS org_id, product_id, lot, count(*) AS on_hand, 0 AS in_transit
        FROM unit_state WHERE status = 'active' AND transit_to IS NULL
        GROUP BY 1, 2, 3
        UNION ALL
        SELECT transit_to, product_id, lot, 0, count(*)
        FROM unit_state WHERE status = 'active' AND transit_to IS NOT NULL
        GROUP BY 1, 2, 3
    ) c GROUP BY 1, 2, 3
), recorded AS (
    SELECT org_id, product_id, lot, sum(on_hand) AS on_hand, sum(in_transit) AS in_transit
    FROM (
        SELECT org_id, product_id, lot, on_hand, in_transit FROM stock
        UNION ALL
        SELECT org_id, product_id, lot, on_hand, in_transit FROM stock_deltas
    ) r GROUP BY 1, 2, 3
)
SELECT org_id, product_id, lot,
       coalesce(r.on_hand, 0)::bigint AS on_hand, coalesce(r.in_transit, 0)::bigint AS in_transit,
       coalesce(e.on_hand, 0)::bigint AS expected_on_hand,
       coalesce(e.in_transit, 0)::bigint AS expected_in_transit
FROM expected e FULL JOIN recorded r USING (org_id, product_id, lot)
WHERE coalesce(r.on_hand, 0) <> coalesce(e.on_hand, 0)
   OR coalesce(r.in_transit, 0) <> coalesce(e.in_transit, 0)
ORDER BY org_id, product_id, lot
"""


async def recount(conn: Conn) -> list[Mismatch]:
    """Stock rows (plus pending deltas) that differ from the count of units in the code state:
    on hand = active units held and not in transit; in transit = active units on their way."""
    rows = await (await conn.execute(_RECOUNT)).fetchall()
    return [Mismatch(**row) for row in rows]


async def rollup_alone(conn: Conn, *, wait: bool = False, limit: int = 100_000) -> int | None:
    """``rollup`` with one roller at a time across processes; ``None`` when another roller is
    running and ``wait`` is false. ``conn`` should be in autocommit mode."""
    return await run_alone(conn, Lock.STOCK_ROLLUP, lambda: rollup(conn, limit), wait=wait)
