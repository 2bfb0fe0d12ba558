"""The SQL of the consumer pages: a published product by GTIN, with its brand and category;
whether a product is published; what a unit's points claim offers."""

from __future__ import annotations

from typing import Any

from app.auth.service import org_status
from app.db import Conn
from app.members.points import RETURNED_UNSOLD, SPOILT, points_in_force

# SQL: the product's owner (aliased ``o``) and every organisation above it up to the brand are
# active (turning off a brand or an agent turns off its subtree, as access goes): a product is
# public — its page ``/p/{gtin}``, its ``gs1:pip`` link — while published and this holds (a
# probe: a brand turned off kept its product pages and Digital Links)
OWNER_LIVE = f"{org_status('o')} = 'active'"

_PRODUCT_BY_GTIN = f"""
SELECT p.name, p.spec, p.product_type, p.gtin, p.image_url, p.colour_no, p.efficacy,
       p.video_url, c.name AS category, b.name AS brand, b.id AS brand_id
  FROM products p
  JOIN orgs o ON o.id = p.org_id
  -- the brand, not the owner: a product may belong to any organisation of the brand's tree
  JOIN orgs b ON b.id = split_part(o.path, '/', 2)::bigint
  LEFT JOIN categories c ON c.id = p.category_id
 WHERE p.gtin = %s AND p.published AND {OWNER_LIVE}
"""


async def published_product(conn: Conn, gtin14: str) -> dict[str, Any] | None:
    """The public face of a product; None when unknown, not published, or of an organisation
    turned off (its brand, or one above its owner: ``OWNER_LIVE``)."""
    return await (await conn.execute(_PRODUCT_BY_GTIN, (gtin14,))).fetchone()


async def is_published(conn: Conn, product_id: int) -> bool:
    """Whether the product has a public page (``/p/{gtin}``: an unpublished one's is 404, as
    one of an organisation turned off)."""
    sql = (
        f"SELECT p.published AND {OWNER_LIVE} AS published FROM products p "
        "JOIN orgs o ON o.id = p.org_id WHERE p.id = %s"
    )
    row = await (await conn.execute(sql, (product_id,))).fetchone()
    return bool(row and row["published"])


_CLAIMABLE = (
    """
SELECT u.brand_id, """
    + points_in_force("u")
    + """ AS points,
       EXISTS (SELECT 1 FROM point_claims c
                WHERE c.code_id = u.code AND c.withdrawn_at IS NULL) AS claimed
  FROM unit_state u
  JOIN orgs b ON b.id = u.brand_id
 WHERE u.code = %s
   -- a brand turned off has no members and no sign-in (its /member/login is the 404 page):
   -- nothing to offer (a probe), as its products have no pages (``OWNER_LIVE``)
   AND b.status = 'active'
   -- as the claim decides (``app.members.points``): nothing to offer for a unit returned by a
   -- consumer and not sold since, or returned damaged or expired
   AND NOT """
    + SPOILT
    + " AND NOT "
    + RETURNED_UNSOLD
)


async def claimable(conn: Conn, code: int) -> tuple[int, int] | None:
    """(brand id, points) of a unit whose points are still to be claimed; None when it earns
    none, was claimed already or its brand is turned off (the claim itself decides; this only
    picks what to offer)."""
    row = await (await conn.execute(_CLAIMABLE, (code,))).fetchone()
    if row is None or not row["points"] or row["claimed"]:
        return None
    return int(row["brand_id"]), int(row["points"])
