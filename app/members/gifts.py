"""Gifts a brand offers for points (M3): managed by the brand (``gifts.write``), listed to
members.

A member sees a gift while it is valid (inside its window), in stock and offered in the member's
province (a gift with no provinces is offered everywhere; the names are compared as written, the
way ``members.province`` spells them, e.g. 浙江省). A deleted gift disappears from every list but
stays behind its redemptions.

A gift's ``picture_url`` naming a catalogue medium of this server (its ``absolute_url``) names
an image of the brand's own (400 ``unknown_catalog_media`` otherwise, as the brand story:
``app.catalog.service.check_brand_urls``); the medium is then in use while a gift not withdrawn
shows it (``DELETE /media/catalog/{id}``: 409 ``in_use``).
"""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.catalog.service import check_brand_urls
from app.db import Conn, changed, changes_of, update_row
from app.errors import NotFound, Unprocessable
from app.members.points import balance
from app.members.principal import Member, brand_of_staff
from app.members.profile import member_provinces
from app.members.schemas_points import Gift, GiftIn, GiftOut, GiftPatch
from app.paging import Page, fetch_page

_GIFT = """id, brand_id, name, picture_url, description, points_cost, kind, stock, valid_from,
           valid_to, provinces, display_order, collect_days, how_to_collect, created_at,
           updated_at"""
_PICTURE = {"picture_url": "image"}  # a catalogue medium it names: an image of the brand's

# Offered to a member now: in the window, in stock, in the member's province.
OFFERED = """g.brand_id = %(brand)s AND g.deleted_at IS NULL AND g.stock > 0
    AND (g.valid_from IS NULL OR g.valid_from <= now())
    AND (g.valid_to IS NULL OR g.valid_to > now())
    AND (g.provinces = '{}' OR %(province)s::text = ANY (g.provinces))"""


def _window(valid_from: Any, valid_to: Any) -> None:
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise Unprocessable(
            "valid_to must be after valid_from", code="bad_window", details={"field": "valid_to"}
        )


async def _get(conn: Conn, actor: Principal, gift_id: int, lock: bool = False) -> GiftOut:
    row = await (
        await conn.execute(
            f"SELECT {_GIFT} FROM gifts WHERE id = %s AND brand_id = %s AND deleted_at IS NULL"
            + (" FOR UPDATE" if lock else ""),
            (gift_id, actor.brand_id),
        )
    ).fetchone()
    if row is None:
        raise NotFound("gift not found")
    return GiftOut(**row)


async def create_gift(conn: Conn, actor: Principal, data: GiftIn, *, origin: str) -> GiftOut:
    """A gift of the caller's brand; ``origin``: this server's public URL (``check_brand_urls``)."""
    brand_id = brand_of_staff(actor, "gifts.write")
    _window(data.valid_from, data.valid_to)
    await check_brand_urls(conn, brand_id, {"picture_url": data.picture_url}, _PICTURE, origin)
    row = await (
        await conn.execute(
            f"""INSERT INTO gifts (brand_id, name, picture_url, description, points_cost, kind,
                                   stock, valid_from, valid_to, provinces, display_order,
                                   collect_days, how_to_collect, created_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                RETURNING {_GIFT}""",
            (
                actor.brand_id,
                data.name,
                data.picture_url,
                data.description,
                data.points_cost,
                data.kind,
                data.stock,
                data.valid_from,
                data.valid_to,
                sorted(set(member_provinces(data.provinces, "provinces"))),
                data.display_order,
                data.collect_days,
                data.how_to_collect,
                actor.person,
            ),
        )
    ).fetchone()
    assert row is not None
    out = GiftOut(**row)
    await audit.record(conn, actor, "create", "gift", out.id, after=out, org_id=actor.brand_id)
    return out


async def update_gift(
    conn: Conn, actor: Principal, gift_id: int, patch: GiftPatch, *, origin: str
) -> GiftOut:
    """Change a gift; the values it has already change nothing (no write, no audit row)."""
    brand_id = brand_of_staff(actor, "gifts.write")
    before = await _get(conn, actor, gift_id, lock=True)
    changes = changes_of(patch)
    if "provinces" in changes:
        changes["provinces"] = sorted(set(member_provinces(changes["provinces"], "provinces")))
    _window(changes.get("valid_from", before.valid_from), changes.get("valid_to", before.valid_to))
    changes = changed(before, changes)
    if not changes:  # saved unchanged (a form, a retry): no write and no row, as PATCH /orgs/{id}
        # {} (a probe: an ``update`` row, before and after the same, and updated_at moved)
        return before
    await check_brand_urls(conn, brand_id, changes, _PICTURE, origin)
    await update_row(conn, "gifts", gift_id, changes)
    after = await _get(conn, actor, gift_id)
    await audit.record(
        conn, actor, "update", "gift", gift_id, before=before, after=after, org_id=actor.brand_id
    )
    return after


async def delete_gift(conn: Conn, actor: Principal, gift_id: int) -> None:
    """Withdraw a gift: gone from every list; its redemptions keep it (codes stay valid)."""
    brand_of_staff(actor, "gifts.write")
    before = await _get(conn, actor, gift_id, lock=True)
    await conn.execute("UPDATE gifts SET deleted_at = now() WHERE id = %s", (gift_id,))
    await audit.record(conn, actor, "delete", "gift", gift_id, before=before, org_id=actor.brand_id)


async def get_gift(conn: Conn, actor: Principal, gift_id: int) -> GiftOut:
    actor.require_any("gifts.write", "redemptions.read", "redemptions.fulfil")
    return await _get(conn, actor, gift_id)


async def list_gifts(
    conn: Conn, actor: Principal, kind: str | None, page: int, per_page: int
) -> Page[GiftOut]:
    """The brand's gifts (all, valid or not), in display order."""
    actor.require_any("gifts.write", "redemptions.read", "redemptions.fulfil")
    where = ["brand_id = %(brand)s", "deleted_at IS NULL"]
    if kind is not None:
        where.append("kind = %(kind)s")
    return await fetch_page(
        conn,
        columns=_GIFT,
        source="gifts",
        where=where,
        params={"brand": actor.brand_id, "kind": kind},
        order="display_order, id",
        page=page,
        per_page=per_page,
        make=lambda row: GiftOut(**row),
    )


_MEMBER_GIFT = """g.id, g.name, g.picture_url, g.description, g.points_cost, g.kind, g.stock,
                  g.valid_to, g.collect_days, g.how_to_collect"""


async def _province(conn: Conn, member_id: int) -> str | None:
    row = await (
        await conn.execute("SELECT province FROM members WHERE id = %s", (member_id,))
    ).fetchone()
    return row["province"] if row else None


async def member_gifts(conn: Conn, member: Member, page: int, per_page: int) -> Page[Gift]:
    """The gifts offered to the member now, in display order, each saying whether the member's
    balance covers it."""
    points = await balance(conn, member.id)
    return await fetch_page(
        conn,
        columns=_MEMBER_GIFT,
        source="gifts g",
        where=[OFFERED],
        params={"brand": member.brand_id, "province": await _province(conn, member.id)},
        order="g.display_order, g.id",
        page=page,
        per_page=per_page,
        make=lambda row: Gift(**row, affordable=row["points_cost"] <= points),
    )


async def cheapest_affordable(conn: Conn, member: Member) -> Gift | None:
    """The cheapest gift offered to the member now that its balance covers (None: none)."""
    points = await balance(conn, member.id)
    row = await (
        await conn.execute(
            f"""SELECT {_MEMBER_GIFT} FROM gifts g WHERE {OFFERED}
                  AND g.points_cost <= %(points)s
                ORDER BY g.points_cost, g.display_order, g.id LIMIT 1""",
            {
                "brand": member.brand_id,
                "province": await _province(conn, member.id),
                "points": points,
            },
        )
    ).fetchone()
    return Gift(**row, affordable=True) if row else None
