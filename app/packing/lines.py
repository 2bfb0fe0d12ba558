"""Packing lines and their production context (P1); packing rules per product (P3)."""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.catalog.service import writable_product
from app.db import Conn
from app.errors import NotFound, Unprocessable
from app.packing.schemas import LineContextIn, LineOut, PackingRuleIn, PackingRuleOut
from app.paging import Page, fetch_page

_LINE_COLUMNS = (
    "l.id, l.org_id, l.code, l.product_id, p.name AS product_name, p.spec, l.lot, "
    "l.production_date, l.updated_at"
)
_LINE_SOURCE = "lines l LEFT JOIN products p ON p.id = l.product_id"
_LINE = f"SELECT {_LINE_COLUMNS} FROM {_LINE_SOURCE}"

# the organisations whose lines activate new codes; the others pack and relabel active ones
COMMISSIONING_KINDS = frozenset({"brand", "factory"})


async def commissions(conn: Conn, actor: Principal) -> bool:
    """Whether the caller's organisation may activate codes never active (a factory, the brand)."""
    org = await (
        await conn.execute("SELECT kind FROM orgs WHERE id = %s", (actor.org_id,))
    ).fetchone()
    return org is not None and org["kind"] in COMMISSIONING_KINDS


async def brand_product(conn: Conn, actor: Principal, product_id: int) -> dict[str, Any]:
    """A product of the caller's brand (else 404): id, name, spec, gtin."""
    row = await (
        await conn.execute(
            """SELECT p.id, p.name, p.spec, p.gtin, o.path FROM products p
               JOIN orgs o ON o.id = p.org_id WHERE p.id = %s""",
            (product_id,),
        )
    ).fetchone()
    if row is None or not row["path"].startswith(f"/{actor.brand_id}/"):
        raise NotFound("product not found", code="unknown_product")
    return row


async def get_line(conn: Conn, actor: Principal, code: str) -> LineOut:
    """A line of the caller's organisation, by its code (404 until its context is set)."""
    row = await (
        await conn.execute(f"{_LINE} WHERE l.org_id = %s AND l.code = %s", (actor.org_id, code))
    ).fetchone()
    if row is None:
        raise NotFound(f"line {code} has no production context yet", code="unknown_line")
    return LineOut(**row)


async def list_lines(conn: Conn, actor: Principal, page: int, per_page: int) -> Page[LineOut]:
    actor.require("packing.scan")
    return await fetch_page(
        conn,
        columns=_LINE_COLUMNS,
        source=_LINE_SOURCE,
        where=["l.org_id = %(org)s"],
        params={"org": actor.org_id},
        order="l.code",
        page=page,
        per_page=per_page,
        make=lambda row: LineOut(**row),
    )


async def set_context(conn: Conn, actor: Principal, code: str, data: LineContextIn) -> LineOut:
    """Set what a line produces now (creates the line on first use); audited. The context it
    has already changes nothing (no write, no row)."""
    actor.require("packing.scan")
    if not 1 <= len(code) <= 32 or not all(c.isalnum() or c in "._-" for c in code):
        raise Unprocessable("a line code is 1–32 letters, digits, '.', '_' or '-'", code="bad_line")
    await brand_product(conn, actor, data.product_id)
    # a write only where the context differs, decided by the upsert under its row lock: a line
    # set twice at once on its first use (a double click) is written and audited once (a probe:
    # both read "no line yet" and both wrote a row); set to what it is, no write and no row
    changed = await (
        await conn.execute(
            """INSERT INTO lines (org_id, code, product_id, lot, production_date, updated_by)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (org_id, code) DO UPDATE SET product_id = EXCLUDED.product_id,
                   lot = EXCLUDED.lot, production_date = EXCLUDED.production_date,
                   updated_by = EXCLUDED.updated_by, updated_at = now()
                WHERE (lines.product_id, lines.lot, lines.production_date) IS DISTINCT FROM
                      (EXCLUDED.product_id, EXCLUDED.lot, EXCLUDED.production_date)
               RETURNING id""",
            (actor.org_id, code, data.product_id, data.lot, data.production_date, actor.person),
        )
    ).fetchone()
    line = await get_line(conn, actor, code)
    if changed is not None:
        await audit.record(conn, actor, "set_context", "line", line.id, after=line)
    return line


async def get_rules(conn: Conn, actor: Principal, product_id: int) -> list[PackingRuleOut]:
    actor.require("catalog.read")
    await brand_product(conn, actor, product_id)
    rows = await (
        await conn.execute(
            "SELECT product_id, level, quantity, strict FROM packing_rules WHERE product_id = %s "
            "ORDER BY array_position(ARRAY['inner', 'master', 'pallet'], level)",
            (product_id,),
        )
    ).fetchall()
    return [PackingRuleOut(**row) for row in rows]


async def set_rules(
    conn: Conn, actor: Principal, product_id: int, rules: list[PackingRuleIn]
) -> list[PackingRuleOut]:
    """Replace a product's packing rules (one per level); audited, unless they are those it
    has already (no write, no row). Replacements of one product's
    rules run one after the other (its row locked): two at once mixed their rules, or refused
    the same set with a unique-key conflict (a probe). Written as the product is
    (``catalog.service.writable_product``: 404 outside the caller's subtree; a probe: an
    agent's key replaced the brand's product's rules)."""
    actor.require("catalog.write")
    levels = [rule.level for rule in rules]
    if len(set(levels)) != len(levels):
        raise Unprocessable("one rule per level", code="duplicate_level")
    await brand_product(conn, actor, product_id)  # 404 unknown_product: not the brand's
    await writable_product(conn, actor, product_id)
    await conn.execute("SELECT 1 FROM products WHERE id = %s FOR NO KEY UPDATE", (product_id,))
    before = await get_rules(conn, actor, product_id)
    wanted = {(r.level, r.quantity, r.strict) for r in rules}
    if wanted == {(r.level, r.quantity, r.strict) for r in before}:
        # the rules it has already (one per level, so as sets): no write and no row (a probe:
        # a ``set_packing_rules`` row whose before and after were the same)
        return before
    await conn.execute("DELETE FROM packing_rules WHERE product_id = %s", (product_id,))
    for rule in rules:
        await conn.execute(
            "INSERT INTO packing_rules (product_id, level, quantity, strict) "
            "VALUES (%s, %s, %s, %s)",
            (product_id, rule.level, rule.quantity, rule.strict),
        )
    after = await get_rules(conn, actor, product_id)
    # in the product's owner's log, as its other rows are (a probe: a brand admin's change of a
    # factory's product's rules was out of the factory admin's sight)
    owner = await (
        await conn.execute("SELECT org_id FROM products WHERE id = %s", (product_id,))
    ).fetchone()
    await audit.record(
        conn,
        actor,
        "set_packing_rules",
        "product",
        product_id,
        before=before,
        after=after,
        org_id=owner["org_id"] if owner else None,
    )
    return after
