"""The state of one unit as verification sees it: product, lot, production date, shipped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.codes.batches import BatchRef
from app.db import Conn
from app.verify.schemas import ProductInfo

if TYPE_CHECKING:
    from app.verify.service import UnitInfo

_UNIT = """SELECT u.status, u.lot, u.production_date, u.shipped_at, p.id, p.name, p.spec, p.gtin,
                  p.image_url, p.video_url
           FROM unit_state u JOIN products p ON p.id = u.product_id
           WHERE u.code = %s"""


async def load_unit(conn: Conn, code: int, batch: BatchRef) -> UnitInfo | None:
    """None when the unit was never activated on a packing line (issued, not commissioned)."""
    from app.verify.service import UnitInfo

    row = await (await conn.execute(_UNIT, (code,))).fetchone()
    if row is None:
        return None
    return UnitInfo(
        brand_id=batch.brand_id,
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
