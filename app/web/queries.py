"""The SQL of the consumer pages: a published product by GTIN, with its brand and category."""

from __future__ import annotations

from typing import Any

from app.db import Conn

_PRODUCT_BY_GTIN = """
SELECT p.name, p.spec, p.product_type, p.gtin, p.image_url, p.colour_no, p.efficacy,
       p.video_url, c.name AS category, o.name AS brand
  FROM products p
  JOIN orgs o ON o.id = p.org_id
  LEFT JOIN categories c ON c.id = p.category_id
 WHERE p.gtin = %s AND p.published
"""


async def published_product(conn: Conn, gtin14: str) -> dict[str, Any] | None:
    """The public face of a product; None when unknown or not published."""
    return await (await conn.execute(_PRODUCT_BY_GTIN, (gtin14,))).fetchone()
