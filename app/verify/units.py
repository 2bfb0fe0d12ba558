"""The state of units as verification sees it: product, lot, production date, shipped."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from app.verify.schemas import ProductInfo

VOID_STATES = ("void", "destroyed")  # unit states that verify as not genuine


class UnitInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a verification needs to know of an activated unit."""

    brand_id: int
    status: str  # active, sold, or void / destroyed (replaced, decommissioned): not genuine
    product: ProductInfo | None
    lot: str | None
    production_date: str | None
    shipped: bool


_UNITS = """SELECT u.code, u.status, u.lot, u.production_date, u.shipped_at, p.id, p.name,
                   p.spec, p.gtin, p.image_url, p.video_url
            FROM unit_state u JOIN products p ON p.id = u.product_id
            WHERE u.code = ANY(%s)"""


async def load_units(
    conn: AsyncConnection[Any], codes: list[int], brands: dict[int, int]
) -> dict[int, UnitInfo]:
    """The activated units among ``codes`` (one query); a unit never activated on a packing line
    (issued, not commissioned) is absent. ``brands``: the brand of each code's batch."""
    cur = conn.cursor(row_factory=tuple_row)  # a round reads many rows: tuples are cheapest
    await cur.execute(_UNITS, (sorted(set(codes)),))
    return {
        code: UnitInfo(
            brand_id=brands[code],
            status=status,
            product=ProductInfo(
                id=product, name=name, spec=spec, gtin=gtin, image_url=image, video_url=video
            ),
            lot=lot,
            production_date=made.isoformat(),
            shipped=shipped_at is not None,
        )
        for code, status, lot, made, shipped_at, product, name, spec, gtin, image, video in (
            await cur.fetchall()
        )
    }
