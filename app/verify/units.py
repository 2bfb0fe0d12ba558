"""The state of units as verification sees it: product, lot, production date, shipped."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg import AsyncCursor

from app.verify.schemas import ProductInfo


class UnitInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a verification needs to know of an activated unit."""

    brand_id: int
    status: str  # active, sold, or void / destroyed (replaced, decommissioned): not genuine
    product: ProductInfo | None
    lot: str | None
    production_date: str | None
    shipped: bool


# The date as its ISO text and "shipped" as a boolean: nothing for the client to parse or format.
_UNITS = """SELECT u.code, u.status, u.lot, to_char(u.production_date, 'YYYY-MM-DD'),
                   u.shipped_at IS NOT NULL,
                   p.id, p.name, p.spec, p.gtin, p.image_url, p.video_url
            FROM unit_state u JOIN products p ON p.id = u.product_id
            WHERE u.code = ANY(%s::bigint[])"""


async def load_units(
    cur: AsyncCursor[Any], codes: list[int], brands: dict[int, int]
) -> dict[int, UnitInfo]:
    """The activated units among ``codes`` (one query); a unit never activated on a packing line
    (issued, not commissioned) is absent. ``brands``: the brand of each code's batch. ``cur``:
    a cursor with ``tuple_row`` rows (a round reads many rows: tuples are cheapest)."""
    # The codes as one array literal: psycopg's list adapter inspects every element (~140k
    # instructions for a round of 16 codes; the text, a few hundred).
    await cur.execute(_UNITS, ("{" + ",".join(map(str, sorted(set(codes)))) + "}",))
    products: dict[int, ProductInfo] = {}  # a round's units share few products: one each
    units = {}
    for (
        code,
        status,
        lot,
        made,
        shipped,
        product_id,
        name,
        spec,
        gtin,
        image,
        video,
    ) in await cur.fetchall():
        product = products.get(product_id)
        if product is None:
            product = products[product_id] = ProductInfo(
                id=product_id, name=name, spec=spec, gtin=gtin, image_url=image, video_url=video
            )
        units[code] = UnitInfo(
            brand_id=brands[code],
            status=status,
            product=product,
            lot=lot,
            production_date=made,
            shipped=shipped,
        )
    return units


# The brands of the products some GTINs name: the root of each owner's tree (``/brand/…/``).
_GTIN_BRANDS = """SELECT p.gtin, split_part(o.path, '/', 2)::bigint FROM products p
                    JOIN orgs o ON o.id = p.org_id WHERE p.gtin = ANY(%s::char(14)[])"""


async def gtin_brands(cur: AsyncCursor[Any], gtins: list[str]) -> dict[str, int]:
    """GTIN -> the brand whose product has it (GTIN-14s; GTINs are unique), for those a
    product has."""
    await cur.execute(_GTIN_BRANDS, (gtins,))
    return {gtin: int(brand) for gtin, brand in await cur.fetchall()}
