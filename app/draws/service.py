"""Lucky draw campaigns (扫码抽奖, SPEC B4), as the brand's marketing staff run them
(``draws.write``, brand staff only, every change audited).

A campaign has a name, a period (``starts_at`` ≤ now < ``ends_at``), the products it covers,
optionally the provinces it runs in (the province of the unit's channel organisation — where the
brand shipped it — as written in ``orgs.province_name``, e.g. 浙江省; none: everywhere), a "no
prize" weight and its prizes: name, kind (``points`` credited to the member's ledger, an e-shop
``voucher``, a physical ``gift``), quantity (stock), weight (odds) and an optional daily cap. A
campaign is running while it is ``active`` and inside its period; ``stopped`` pauses it.

The draws themselves are ``app.draws.claims`` (the claim mechanism of ``app.claims``). Here: the
campaigns' CRUD, the results list (paged, or CSV), the fulfilment of voucher and gift prizes
(pending → fulfilled with the staff's note), and ``running_for`` (the H5 answer page's link).

A prize's quantity can change: its remaining stock moves by the difference, under the prize's
row lock (the lock a draw round takes to give it), and never below what was already given (409
``quantity_below_given``). A campaign is deleted softly: gone from the lists and from drawing,
its results kept. A change or deletion holds the campaign's row ``FOR UPDATE``, which a draw
round locks ``FOR SHARE`` after its units (``app.draws.claims``): a round waits for it and reads
it, so it must take no lock a round holds (units, members, prizes) while it holds the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app import audit, tabular
from app.auth.principal import Principal
from app.db import Conn, changed, changes_of, update_row
from app.draws.schemas import (
    MAX_PRIZES,
    RESULT_FILTER,
    DrawCampaignIn,
    DrawCampaignOut,
    DrawCampaignPatch,
    DrawFulfilIn,
    DrawPrizeIn,
    DrawPrizeOut,
    DrawPrizePatch,
    DrawResultOut,
    DrawRunningOut,
    draw_status,
)
from app.errors import Conflict, NotFound, Unprocessable
from app.locks import Lock, xact_lock
from app.members.mask import sees_phones, shown_phone
from app.members.principal import brand_of_staff
from app.members.profile import member_provinces
from app.paging import Page, fetch_page

PERMISSION = "draws.write"
MAX_CSV = 200_000  # rows of one results file

# A won draw (alias ``d``), as the campaign's ``winners`` count it and the results' ``won`` list
# it (a review: the list took every draw with a prize, those a return took back or cancelled
# too): a prize a return took back or cancelled is no win; one handed over stays one.
WON = "d.prize_id IS NOT NULL AND (d.withdrawn_at IS NULL OR d.fulfil_status = 'fulfilled')"
_CAMPAIGN = f"""c.id, c.brand_id, c.name, c.starts_at, c.ends_at, c.product_ids, c.provinces,
    c.no_prize_weight, c.status, c.created_at, c.updated_at,
    (c.status = 'active' AND c.starts_at <= now() AND now() < c.ends_at) AS running,
    (SELECT count(*) FROM draws d WHERE d.campaign_id = c.id) AS draws,
    (SELECT count(*) FROM draws d WHERE d.campaign_id = c.id AND {WON}) AS winners"""
_PRIZE = "id, campaign_id, name, kind, points, quantity, remaining, weight, daily_cap, position"

# The campaign (alias ``c``) covers the unit (``unit_state`` alias ``u``, its channel
# organisation ``ch``): its product, and its channel's province where the campaign names some.
COVERS = """c.deleted_at IS NULL AND u.product_id = ANY (c.product_ids)
    AND (c.provinces = '{}' OR ch.province_name = ANY (c.provinces))"""
# … and runs at ``at``.
RUNS_AT = "c.status = 'active' AND c.starts_at <= {at} AND {at} < c.ends_at"


def _staff(actor: Principal) -> int:
    return brand_of_staff(actor, PERMISSION, "draws are run")


def _period(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise Unprocessable(
            "ends_at must be after starts_at", code="bad_window", details={"field": "ends_at"}
        )


def _prize_points(kind: str, points: int | None) -> None:
    if (kind == "points") != (points is not None):
        raise Unprocessable(
            "a points prize names its points; a voucher or a gift has none",
            code="bad_prize_points",
            details={"field": "points"},
        )


async def _products(conn: Conn, brand_id: int, product_ids: list[int]) -> list[int]:
    """The products, each the brand's (422 ``unknown_product``), deduplicated and sorted.
    Checked under the brand's lock (``Lock.DRAW_PRODUCTS``, to the end of the transaction;
    ``product_ids`` has no foreign key): a product's deletion in flight is waited for and the
    product then found gone, and one that comes after waits for this campaign and sees it (409
    ``in_use``, ``app.catalog.service.delete_product``) — a probe: a product a campaign named
    was deleted. The products' rows are read with no lock: ``FOR KEY SHARE`` of them (in id
    order) deadlocked with an ERP import renumbering them (in file order; a review)."""
    wanted = sorted(set(product_ids))
    await xact_lock(conn, Lock.DRAW_PRODUCTS, brand_id)
    rows = await (
        await conn.execute(
            "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
            "WHERE p.id = ANY(%s) AND o.path LIKE %s",
            (wanted, f"/{brand_id}/%"),
        )
    ).fetchall()
    found = {r["id"] for r in rows}
    missing = [p for p in wanted if p not in found]
    if missing:
        raise Unprocessable(
            "no such product in this brand",
            code="unknown_product",
            details={"field": "product_ids", "product_id": missing[0]},
        )
    return wanted


async def _prizes(conn: Conn, campaign_ids: list[int]) -> dict[int, list[DrawPrizeOut]]:
    rows = await (
        await conn.execute(
            f"SELECT {_PRIZE} FROM draw_prizes WHERE campaign_id = ANY(%s) "
            "ORDER BY campaign_id, position, id",
            (campaign_ids,),
        )
    ).fetchall()
    out: dict[int, list[DrawPrizeOut]] = {i: [] for i in campaign_ids}
    for row in rows:
        out[row["campaign_id"]].append(DrawPrizeOut(**row))
    return out


def _campaign(row: dict[str, Any], prizes: list[DrawPrizeOut]) -> DrawCampaignOut:
    return DrawCampaignOut(**{k: v for k, v in row.items() if k != "page_total__"}, prizes=prizes)


async def _get(
    conn: Conn, brand_id: int, campaign_id: int, lock: bool = False, deleted: bool = False
) -> DrawCampaignOut:
    """The brand's campaign (404 otherwise); a deleted one only with ``deleted``: its results,
    their CSV and the fulfilment of its pending prizes stay reachable after a deletion."""
    row = await (
        await conn.execute(
            f"SELECT {_CAMPAIGN} FROM draw_campaigns c WHERE c.id = %s AND c.brand_id = %s"
            + ("" if deleted else " AND c.deleted_at IS NULL")
            + (" FOR UPDATE OF c" if lock else ""),
            (campaign_id, brand_id),
        )
    ).fetchone()
    if row is None:
        raise NotFound("draw campaign not found")
    return _campaign(row, (await _prizes(conn, [campaign_id]))[campaign_id])


async def _insert_prize(
    conn: Conn, campaign_id: int, data: DrawPrizeIn, position: int
) -> DrawPrizeOut:
    _prize_points(data.kind, data.points)
    row = await (
        await conn.execute(
            f"""INSERT INTO draw_prizes (campaign_id, name, kind, points, quantity, remaining,
                                         weight, daily_cap, position)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_PRIZE}""",
            (
                campaign_id,
                data.name,
                data.kind,
                data.points,
                data.quantity,
                data.quantity,
                data.weight,
                data.daily_cap,
                position,
            ),
        )
    ).fetchone()
    assert row is not None
    return DrawPrizeOut(**row)


async def create_campaign(conn: Conn, actor: Principal, data: DrawCampaignIn) -> DrawCampaignOut:
    """A campaign and its prizes (stock = quantity), audited."""
    brand_id = _staff(actor)
    _period(data.starts_at, data.ends_at)
    products = await _products(conn, brand_id, data.product_ids)
    provinces = sorted(set(member_provinces(data.provinces, "provinces")))
    row = await (
        await conn.execute(
            """INSERT INTO draw_campaigns (brand_id, name, starts_at, ends_at, product_ids,
                                           provinces, no_prize_weight, created_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                brand_id,
                data.name,
                data.starts_at,
                data.ends_at,
                products,
                provinces,
                data.no_prize_weight,
                actor.person,
            ),
        )
    ).fetchone()
    assert row is not None
    for position, prize in enumerate(data.prizes):
        await _insert_prize(conn, row["id"], prize, position)
    out = await _get(conn, brand_id, row["id"])
    await audit.record(conn, actor, "create", "draw_campaign", out.id, after=out, org_id=brand_id)
    return out


async def list_campaigns(
    conn: Conn, actor: Principal, running: bool | None, page: int, per_page: int
) -> Page[DrawCampaignOut]:
    """The brand's campaigns, newest first, with their prizes and remaining stock."""
    brand_id = _staff(actor)
    where = ["c.brand_id = %(brand)s", "c.deleted_at IS NULL"]
    if running is not None:
        where.append(
            ("" if running else "NOT ")
            + "(c.status = 'active' AND c.starts_at <= now() AND now() < c.ends_at)"
        )
    rows = await fetch_page(
        conn,
        columns=_CAMPAIGN,
        source="draw_campaigns c",
        where=where,
        params={"brand": brand_id},
        order="c.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: row,
    )
    prizes = await _prizes(conn, [r["id"] for r in rows.items])
    return Page(
        items=[_campaign(r, prizes[r["id"]]) for r in rows.items],
        page=rows.page,
        per_page=rows.per_page,
        total=rows.total,
    )


async def get_campaign(conn: Conn, actor: Principal, campaign_id: int) -> DrawCampaignOut:
    return await _get(conn, _staff(actor), campaign_id)


async def update_campaign(
    conn: Conn, actor: Principal, campaign_id: int, patch: DrawCampaignPatch
) -> DrawCampaignOut:
    """Change a campaign (its prizes: ``add_prize``, ``update_prize``); the values it has
    already change nothing (no write, no audit row)."""
    brand_id = _staff(actor)
    before = await _get(conn, brand_id, campaign_id, lock=True)
    changes = changes_of(patch)
    if "product_ids" in changes:
        changes["product_ids"] = await _products(conn, brand_id, changes["product_ids"])
    if "provinces" in changes:
        changes["provinces"] = sorted(set(member_provinces(changes["provinces"], "provinces")))
    _period(changes.get("starts_at", before.starts_at), changes.get("ends_at", before.ends_at))
    changes = changed(before, changes)
    if not changes:
        return before
    await update_row(conn, "draw_campaigns", campaign_id, changes)
    after = await _get(conn, brand_id, campaign_id)
    await audit.record(
        conn,
        actor,
        "update",
        "draw_campaign",
        campaign_id,
        before=before,
        after=after,
        org_id=brand_id,
    )
    return after


async def delete_campaign(conn: Conn, actor: Principal, campaign_id: int) -> None:
    """Withdraw a campaign: no more draws, gone from the lists; its results stay."""
    brand_id = _staff(actor)
    before = await _get(conn, brand_id, campaign_id, lock=True)
    await conn.execute(
        "UPDATE draw_campaigns SET deleted_at = now(), updated_at = now() WHERE id = %s",
        (campaign_id,),
    )
    await audit.record(
        conn, actor, "delete", "draw_campaign", campaign_id, before=before, org_id=brand_id
    )


async def add_prize(
    conn: Conn, actor: Principal, campaign_id: int, data: DrawPrizeIn
) -> DrawPrizeOut:
    """A prize more for the campaign, at most ``MAX_PRIZES`` in all (422 ``too_many_prizes``):
    the campaign's row lock first, so two additions at once count one after the other (each
    statement after the lock reads what the other committed)."""
    brand_id = _staff(actor)
    before = await _get(conn, brand_id, campaign_id, lock=True)
    if len(before.prizes) >= MAX_PRIZES:
        raise Unprocessable(
            f"a campaign has at most {MAX_PRIZES} prizes",
            code="too_many_prizes",
            details={"max": MAX_PRIZES},
        )
    position = max((p.position for p in before.prizes), default=-1) + 1
    out = await _insert_prize(conn, campaign_id, data, position)
    await audit.record(conn, actor, "create", "draw_prize", out.id, after=out, org_id=brand_id)
    return out


async def update_prize(
    conn: Conn, actor: Principal, campaign_id: int, prize_id: int, patch: DrawPrizePatch
) -> DrawPrizeOut:
    """Change a prize under its row lock (a draw round giving it waits, or is waited for); a
    new quantity moves the remaining stock by the difference, never below zero."""
    brand_id = _staff(actor)
    await _get(conn, brand_id, campaign_id)
    row = await (
        await conn.execute(
            f"SELECT {_PRIZE} FROM draw_prizes WHERE id = %s AND campaign_id = %s FOR UPDATE",
            (prize_id, campaign_id),
        )
    ).fetchone()
    if row is None:
        raise NotFound("prize not found")
    before = DrawPrizeOut(**row)
    changes = changed(before, changes_of(patch))
    if "points" in changes:
        _prize_points(before.kind, changes["points"])
    if "quantity" in changes:
        remaining = before.remaining + changes["quantity"] - before.quantity
        if remaining < 0:
            raise Conflict(
                "the quantity is below what was already given",
                code="quantity_below_given",
                details={"given": before.quantity - before.remaining},
            )
        changes["remaining"] = remaining
    if not changes:
        return before
    await update_row(conn, "draw_prizes", prize_id, changes)
    row = await (
        await conn.execute(f"SELECT {_PRIZE} FROM draw_prizes WHERE id = %s", (prize_id,))
    ).fetchone()
    assert row is not None  # locked above (FOR UPDATE); prizes are never deleted
    after = DrawPrizeOut(**row)
    await audit.record(
        conn, actor, "update", "draw_prize", prize_id, before=before, after=after, org_id=brand_id
    )
    return after


# -- results -----------------------------------------------------------------------------------

_RESULT = """d.id, d.campaign_id, d.member_id, m.phone, d.product_id, d.channel_org_id,
    d.prize_id, d.prize_name, d.prize_kind, d.points, d.verify_result, d.verify_reason,
    d.drawn_at, d.fulfil_status, d.fulfilled_at, d.fulfil_note, d.hold_state, d.withdrawn_at"""
_RESULTS = "draws d JOIN members m ON m.id = d.member_id"
RESULT_COLUMNS = [
    "id",
    "campaign_id",
    "member_id",
    "phone",
    "product_id",
    "channel_org_id",
    "prize_id",
    "prize_name",
    "prize_kind",
    "points",
    "verify_result",
    "verify_reason",
    "drawn_at",
    "fulfil_status",
    "fulfilled_at",
    "fulfil_note",
    "status",
    "withdrawn_at",
]
_FILTERS = {
    "won": WON,
    "lost": "d.prize_id IS NULL",
    "pending": "d.fulfil_status = 'pending'",
}


def _result(actor: Principal, row: dict[str, Any]) -> DrawResultOut:
    return DrawResultOut(
        **{k: row[k] for k in RESULT_COLUMNS if k not in ("phone", "status")},
        phone=shown_phone(actor, row["phone"]),
        status=draw_status(row["hold_state"]),
    )


async def results(
    conn: Conn,
    actor: Principal,
    campaign_id: int,
    outcome: RESULT_FILTER | None,
    page: int,
    per_page: int,
) -> Page[DrawResultOut]:
    """The campaign's draws, newest first (phones masked unless ``members.read_phone``)."""
    brand_id = _staff(actor)
    await _get(conn, brand_id, campaign_id, deleted=True)
    where = ["d.campaign_id = %(campaign)s"]
    if outcome is not None:
        where.append(_FILTERS[outcome])
    return await fetch_page(
        conn,
        columns=_RESULT,
        source=_RESULTS,
        where=where,
        params={"campaign": campaign_id},
        order="d.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: _result(actor, row),
    )


async def results_csv(
    conn: Conn,
    actor: Principal,
    campaign_id: int,
    outcome: RESULT_FILTER | None,
    *,
    audited: bool = True,
) -> Any:
    """The campaign's draws as CSV (``app.tabular``: formula-guarded), oldest first; more than
    ``MAX_CSV`` is 422 ``too_many_rows`` before the file starts (as every export read whole:
    the file was cut at ``MAX_CSV`` with a 200 — a probe). The export is audited ``export`` on
    the ``draw_campaign``: its outcome filter, its rows, whether the phones were whole
    (``audited=False``: a HEAD) — a probe: a file of members' whole phones left unrecorded."""
    brand_id = _staff(actor)
    await _get(conn, brand_id, campaign_id, deleted=True)
    where = "d.campaign_id = %(campaign)s" + (f" AND {_FILTERS[outcome]}" if outcome else "")
    rows = await (
        await conn.execute(
            f"SELECT {_RESULT} FROM {_RESULTS} WHERE {where} ORDER BY d.id LIMIT %(limit__)s",
            {"campaign": campaign_id, "limit__": MAX_CSV + 1},
        )
    ).fetchall()
    if len(rows) > MAX_CSV:
        raise Unprocessable(
            f"more than {MAX_CSV} draws: narrow them by outcome", code="too_many_rows"
        )
    if audited:
        exported = {"outcome": outcome, "rows": len(rows), "whole_phones": sees_phones(actor)}
        await audit.record(
            conn, actor, "export", "draw_campaign", campaign_id, after=exported, org_id=brand_id
        )
    table = [[getattr(out, c) for c in RESULT_COLUMNS] for out in (_result(actor, r) for r in rows)]
    return tabular.csv_chunks(RESULT_COLUMNS, tabular.one_batch(table))


async def fulfil(
    conn: Conn, actor: Principal, campaign_id: int, draw_id: int, data: DrawFulfilIn
) -> DrawResultOut:
    """Mark a voucher or gift prize handed over, with the staff's note; the same note again
    answers the fulfilled draw (a retry). 409 ``prize_not_pending`` for a draw with nothing to
    fulfil (no prize, points credited) or fulfilled with another note; 409 ``member_frozen``
    for a frozen member's (left pending until unfrozen, as a gift redemption's). An erased
    member's prize is marked handed over without the note (``membership erased`` in its
    place). Who handed it over: the user, or the person behind an API key (its maker)."""
    # imported here: the erasure imports the points, which import the forensics and the draws
    from app.members.erasure import ERASED

    brand_id = _staff(actor)
    await _get(conn, brand_id, campaign_id, deleted=True)
    # the member's row first, as its erasure takes it before the draws; an erased member's draw
    # keeps no note (a probe: a gift handed over as or after the erasure kept the address)
    member = await (
        await conn.execute(
            """SELECT m.status FROM draws d JOIN members m ON m.id = d.member_id
                WHERE d.id = %s AND d.campaign_id = %s FOR SHARE OF m""",
            (draw_id, campaign_id),
        )
    ).fetchone()
    if member is None:
        raise NotFound("draw not found")
    note = ERASED if member["status"] == "erased" else data.note
    row = await (
        await conn.execute(
            f"SELECT {_RESULT} FROM {_RESULTS} WHERE d.id = %s FOR UPDATE OF d", (draw_id,)
        )
    ).fetchone()
    assert row is not None  # the draw found above (draws are never deleted)
    before = _result(actor, row)
    if row["fulfil_status"] == "fulfilled" and row["fulfil_note"] == note:
        return before
    if row["fulfil_status"] != "pending":
        raise Conflict(
            "this draw has no prize waiting to be handed over",
            code="prize_not_pending",
            details={"fulfil_status": row["fulfil_status"]},
        )
    if member["status"] == "frozen":  # locked FOR SHARE above: it stays so meanwhile (a probe:
        # the parcel of a prize won just before the freeze still went out to the member)
        raise Conflict("this membership is frozen", code="member_frozen")
    await conn.execute(
        """UPDATE draws SET fulfil_status = 'fulfilled', fulfilled_at = now(), fulfilled_by = %s,
                            fulfil_note = %s WHERE id = %s""",
        (actor.person, note, draw_id),
    )
    row = await (
        await conn.execute(f"SELECT {_RESULT} FROM {_RESULTS} WHERE d.id = %s", (draw_id,))
    ).fetchone()
    assert row is not None  # locked above (FOR UPDATE OF d)
    after = _result(actor, row)
    await audit.record(
        conn, actor, "fulfil", "draw", draw_id, before=_audited(before), after=_audited(after),
        org_id=brand_id,
    )  # fmt: skip
    return after


def _audited(draw: DrawResultOut) -> dict[str, Any]:
    """The draw as its audit row records it: without the member's phone and the fulfilment's
    note (a parcel's address, a voucher sent to the phone), which an erasure clears from the
    draw and could not from the audit log (a probe read both there after the erasure)."""
    out: dict[str, Any] = msgspec.to_builtins(draw)
    return {k: v for k, v in out.items() if k not in ("phone", "fulfil_note")}


# -- for the member pages ------------------------------------------------------------------------


async def running_for(conn: Conn, code: int) -> DrawRunningOut:
    """The campaign a draw of unit ``code`` would go to now (none: no link on the answer page):
    a unit shipped into the channel, not drawn yet (or its draw withdrawn by a return), neither
    returned damaged or expired nor returned and not sold since (a review: the link was offered,
    and the draw refused), covered by a running one of its brand — an active brand: one turned
    off has no members to draw (a probe: the answer page linked to its draw)."""
    # imported here: app.members.points imports the forensics, which import the draws' prizes
    from app.members.points import RETURNED_UNSOLD, SPOILT

    row = await (
        await conn.execute(
            f"""SELECT c.id, c.name, c.brand_id FROM unit_state u
                JOIN orgs ch ON ch.id = u.channel_org_id
                JOIN draw_campaigns c ON c.brand_id = u.brand_id
                JOIN orgs b ON b.id = u.brand_id AND b.status = 'active'
                WHERE u.code = %(code)s
                  AND u.status IN ('active', 'sold')
                  AND NOT {SPOILT} AND NOT {RETURNED_UNSOLD}
                  AND NOT EXISTS (SELECT 1 FROM draws d WHERE d.code_id = u.code
                                     AND d.withdrawn_at IS NULL)
                  AND {COVERS} AND {RUNS_AT.format(at="now()")}
                ORDER BY c.starts_at, c.id LIMIT 1""",
            {"code": code},
        )
    ).fetchone()
    if row is None:
        return DrawRunningOut(campaign_id=None, campaign_name=None)
    return DrawRunningOut(
        campaign_id=row["id"], campaign_name=row["name"], brand_id=row["brand_id"]
    )
