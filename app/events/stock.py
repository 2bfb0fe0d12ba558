"""Stock deltas: every movement writes one row per (organisation, product, lot) it changes, in
its own transaction; the roll-up worker folds them into ``stock`` (``app.logistics.rollup``).

Shared by every domain that moves goods in or out of stock (packing activates, logistics moves,
a voided batch decommissions); it imports nothing but the database helper.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from app.db import Conn

StockColumn = Literal["on_hand", "in_transit"]

# (org_id, product_id, lot, column) -> units added (negative: taken away)
Deltas = Counter[tuple[int, int, str, StockColumn]]


def new_deltas() -> Deltas:
    """Keys are (org, product, lot, "on_hand" | "in_transit"); values are unit counts."""
    return Counter()


async def write_deltas(conn: Conn, deltas: Deltas, event_id: int) -> None:
    """One ``stock_deltas`` row per (org, product, lot) that changes, by COPY, naming the event
    that moved the goods."""
    rows: dict[tuple[int, int, str], list[int]] = {}
    for (org, product, lot, column), n in deltas.items():
        if n:
            row = rows.setdefault((org, product, lot), [0, 0])
            row[0 if column == "on_hand" else 1] += n
    if not rows:
        return
    async with conn.cursor().copy(
        "COPY stock_deltas (org_id, product_id, lot, on_hand, in_transit, event_id) FROM STDIN"
    ) as copy:
        for (org, product, lot), (on_hand, in_transit) in rows.items():
            await copy.write_row((org, product, lot, on_hand, in_transit, event_id))
