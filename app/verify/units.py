"""The state of one unit as verification sees it: product, lot, production date, shipped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.codes.batches import BatchRef
from app.db import Conn
from app.verify.schemas import ProductInfo

if TYPE_CHECKING:
    from app.verify.service import UnitInfo

_PRODUCT = "SELECT id, name, spec, gtin, image_url, video_url FROM products WHERE id = %s"


async def load_unit(conn: Conn, code: int, batch: BatchRef) -> UnitInfo | None:
    """None when the unit was never activated (issued but not commissioned on a line).

    Until per-unit activation exists (the packing issue), a unit counts as activated when its
    batch is active, and its product is the batch's product.
    """
    from app.verify.service import UnitInfo

    if batch.state != "active":
        return None
    product = None
    if batch.product_id is not None:
        row = await (await conn.execute(_PRODUCT, (batch.product_id,))).fetchone()
        product = ProductInfo(**row) if row else None
    return UnitInfo(
        brand_id=batch.brand_id, product=product, lot=None, production_date=None, shipped=False
    )
