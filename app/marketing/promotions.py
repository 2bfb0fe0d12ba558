"""Promotions per province (SPEC W2; seed 1.10.2 "针对不同的区域(省份),设置促销信息。消费者在不同
的区域登陆仅能看到该区域的促销活动信息").

The brand's own staff holding ``promotions.write`` write them (403 ``brand_staff_only`` below
the brand, as gifts): a title, a plain-text body (its line breaks kept; the pages escape it), an
optional https picture and link, a window (``starts_at``/``ends_at``, either open) and the
provinces it is shown in — named as a gift's (``浙江省``, ``浙江``, ``Zhejiang``; an unknown one is
400 on ``provinces[i]``), none meaning every province — and ``published``. Every change is
audited; a PATCH of the values already set writes nothing. A picture or link naming a catalogue
medium of this server (its ``absolute_url``) names one of the brand's own, an image for the
picture (400 ``unknown_catalog_media`` otherwise, as a gift's: ``check_brand_urls``); the medium
is then in use while a promotion not withdrawn names it (``DELETE /media/catalog/{id}``: 409).

A member sees the published promotions of its brand whose window holds now and whose provinces
include the member's own (``members.province``); a member without a province sees only those
shown in every province. Another brand's promotion is 404 to staff and never listed to members.
"""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.catalog.service import check_brand_urls
from app.db import Conn, changed, changes_of, update_row
from app.errors import NotFound, Unprocessable
from app.marketing.schemas import Promotion, PromotionIn, PromotionOut, PromotionPatch
from app.members.principal import Member, brand_of_staff
from app.members.profile import member_provinces
from app.paging import Page, fetch_page
from app.provinces import query_province

WRITE = "promotions.write"
_COLUMNS = """id, brand_id, title, body, image_url, link_url, starts_at, ends_at, provinces,
              published, created_at, updated_at"""
# the catalogue media its URLs may name: the brand's, an image for the picture
_MEDIA = {"image_url": "image", "link_url": None}

# Shown to a member now: published, in its window, in the member's province (or everywhere).
CURRENT = """p.brand_id = %(brand)s AND p.deleted_at IS NULL AND p.published
    AND (p.starts_at IS NULL OR p.starts_at <= now())
    AND (p.ends_at IS NULL OR p.ends_at > now())
    AND (p.provinces = '{}' OR %(province)s::text = ANY (p.provinces))"""


def _brand(actor: Principal) -> int:
    return brand_of_staff(actor, WRITE, "promotions are managed")


def _window(starts_at: Any, ends_at: Any) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise Unprocessable(
            "ends_at must be after starts_at", code="bad_window", details={"field": "ends_at"}
        )


def _provinces(names: list[str]) -> list[str]:
    return sorted(set(member_provinces(names, "provinces")))


async def _get(conn: Conn, brand: int, promotion_id: int, lock: bool = False) -> PromotionOut:
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM promotions WHERE id = %s AND brand_id = %s "
            "AND deleted_at IS NULL" + (" FOR NO KEY UPDATE" if lock else ""),
            (promotion_id, brand),
        )
    ).fetchone()
    if row is None:
        raise NotFound("promotion not found")
    return PromotionOut(**row)


async def create(conn: Conn, actor: Principal, data: PromotionIn, *, origin: str) -> PromotionOut:
    """A new promotion of the caller's brand (audited); ``origin``: this server's public URL."""
    brand = _brand(actor)
    _window(data.starts_at, data.ends_at)
    urls = {"image_url": data.image_url, "link_url": data.link_url}
    await check_brand_urls(conn, brand, urls, _MEDIA, origin)
    row = await (
        await conn.execute(
            f"""INSERT INTO promotions (brand_id, title, body, image_url, link_url, starts_at,
                                        ends_at, provinces, published, created_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (
                brand,
                data.title.strip(),
                data.body,
                data.image_url,
                data.link_url,
                data.starts_at,
                data.ends_at,
                _provinces(data.provinces),
                data.published,
                actor.person,
            ),
        )
    ).fetchone()
    assert row is not None
    out = PromotionOut(**row)
    await audit.record(conn, actor, "create", "promotion", out.id, after=out, org_id=brand)
    return out


async def update(
    conn: Conn, actor: Principal, promotion_id: int, patch: PromotionPatch, *, origin: str
) -> PromotionOut:
    """Change a promotion; the values it has already change nothing (no write, no audit row)."""
    brand = _brand(actor)
    before = await _get(conn, brand, promotion_id, lock=True)
    changes = changes_of(patch)
    if "provinces" in changes:
        changes["provinces"] = _provinces(changes["provinces"])
    if "title" in changes:
        changes["title"] = changes["title"].strip()
    _window(changes.get("starts_at", before.starts_at), changes.get("ends_at", before.ends_at))
    changes = changed(before, changes)
    if not changes:
        return before
    await check_brand_urls(conn, brand, changes, _MEDIA, origin)
    await update_row(conn, "promotions", promotion_id, changes)
    after = await _get(conn, brand, promotion_id)
    await audit.record(
        conn, actor, "update", "promotion", promotion_id, before=before, after=after, org_id=brand
    )
    return after


async def delete(conn: Conn, actor: Principal, promotion_id: int) -> None:
    """Withdraw a promotion: gone from every list (its row stays, audited)."""
    brand = _brand(actor)
    before = await _get(conn, brand, promotion_id, lock=True)
    await conn.execute("UPDATE promotions SET deleted_at = now() WHERE id = %s", (promotion_id,))
    await audit.record(
        conn, actor, "delete", "promotion", promotion_id, before=before, org_id=brand
    )


async def get(conn: Conn, actor: Principal, promotion_id: int) -> PromotionOut:
    """One promotion of the caller's brand (withdrawn ones are 404)."""
    return await _get(conn, _brand(actor), promotion_id)


async def list_promotions(
    conn: Conn,
    actor: Principal,
    published: bool | None,
    province: str | None,
    page: int,
    per_page: int,
) -> Page[PromotionOut]:
    """The brand's promotions (any window), newest first; ``province``: those shown there
    (named as on the way in; every-province ones included)."""
    brand = _brand(actor)
    where = ["brand_id = %(brand)s", "deleted_at IS NULL"]
    params: dict[str, Any] = {"brand": brand}
    if published is not None:
        where.append("published = %(published)s")
        params["published"] = published
    if province is not None:
        where.append("(provinces = '{}' OR %(province)s::text = ANY (provinces))")
        params["province"] = query_province(province)
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source="promotions",
        where=where,
        params=params,
        order="id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: PromotionOut(**row),
    )


async def _province(conn: Conn, member_id: int) -> str | None:
    row = await (
        await conn.execute("SELECT province FROM members WHERE id = %s", (member_id,))
    ).fetchone()
    return row["province"] if row else None


async def member_promotions(
    conn: Conn, member: Member, page: int, per_page: int
) -> Page[Promotion]:
    """The promotions shown to the member now (``CURRENT``), the latest started first."""
    return await fetch_page(
        conn,
        columns="p.id, p.title, p.body, p.image_url, p.link_url, p.starts_at, p.ends_at",
        source="promotions p",
        where=[CURRENT],
        params={"brand": member.brand_id, "province": await _province(conn, member.id)},
        order="coalesce(p.starts_at, p.created_at) DESC, p.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: Promotion(**row),
    )
