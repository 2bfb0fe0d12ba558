"""The state of units as verification sees it: product, lot, production date, shipped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.db import Conn
from app.verify.schemas import ProductInfo

if TYPE_CHECKING:
    from app.verify.service import UnitInfo

_UNITS = """SELECT u.code, u.status, u.lot, u.production_date, u.shipped_at, p.id, p.name,
                   p.spec, p.gtin, p.image_url, p.video_url
            FROM unit_state u JOIN products p ON p.id = u.product_id
            WHERE u.code = ANY(%s)"""


async def load_units(conn: Conn, codes: list[int], brands: dict[int, int]) -> dict[int, UnitInfo]:
    """The activated units among ``codes`` (one query); a unit never activated on a packing line
    (issued, not commissioned) is absent. ``brands``: the brand of each code's batch."""
    from app.verify.service import UnitInfo

    rows = await (await conn.execute(_UNITS, (sorted(set(codes)),))).fetchall()
    return {
        row["code"]: UnitInfo(
            brand_id=brands[row["code"]],
            status=row["status"],
            product=ProductInfo(
                id=row["id"],
                name=row["name"],
                spec=row["spec"],
                gtin=row["gtin"],
                image_url=row["image_url"],
                video_url=row["video_url"],
            ),
            lot=row["lot"],
            production_date=row["production_date"].isoformat(),
            shipped=row["shipped_at"] is not None,
        )
        for row in rows
    }
