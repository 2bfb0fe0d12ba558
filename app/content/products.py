"""The phone site's product list (seed 1.10.1 "产品列表", 1.10.2 "手机端展示的产品及产品排序设置"):
a brand's published products in the catalogue's ``display_order`` (then by id), a page at a
time. The catalogue (``app.catalog``) owns the products, ``published`` and the order; this only
reads them for consumers: the public fields of a published product of any organisation of the
brand's tree, as its own page ``/p/{gtin}`` shows them.

A product is public while it is published and its owner's line is active (``_OWNER_LIVE``; as
``app.web.queries.OWNER_LIVE`` for its own page and Digital Link): the
owner and every organisation above it up to the brand, as access goes (``org_status``: turning
off a brand or an agent turns off its subtree). A deactivated brand's product pages and Digital
Link went on showing it (a probe) while its list, story and sign-in pages were 404.
"""

from __future__ import annotations

from app.auth.service import org_status
from app.db import Conn
from app.errors import NotFound
from app.paging import Page, fetch_page

_OWNER_LIVE = f"{org_status('o')} = 'active'"  # SQL: the owner (``o``) and its line active
_PUBLIC = """p.id, p.name, p.spec, p.product_type, p.gtin, p.image_url, p.video_url,
             p.colour_no, c.name AS category"""


async def published_products(
    conn: Conn, brand_id: int, page: int, per_page: int
) -> Page[dict[str, object]]:
    """One page of the brand's published products, in display order."""
    return await fetch_page(
        conn,
        columns=_PUBLIC,
        source="products p JOIN orgs o ON o.id = p.org_id "
        "LEFT JOIN categories c ON c.id = p.category_id",
        where=["p.published", "o.path LIKE %(brand)s", _OWNER_LIVE],
        params={"brand": f"/{brand_id}/%"},
        order="p.display_order, p.id",
        page=page,
        per_page=per_page,
        make=dict,
    )


async def brand_name(conn: Conn, brand_id: int) -> str:
    """The name of an active brand (one a consumer can join); 404 for anything else."""
    row = await (
        await conn.execute(
            "SELECT name FROM orgs WHERE id = %s AND kind = 'brand' AND status = 'active'",
            (brand_id,),
        )
    ).fetchone()
    if row is None:
        raise NotFound("brand not found")
    return str(row["name"])
