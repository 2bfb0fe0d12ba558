"""Lucky draws and the code's other owners (SPEC B4: one owner per code): a draw and another
member's points claim of the same code at the same moment leave exactly one owner; a consumer's
return withdraws the unit's draw (a points prize taken back as the points claim's are, a pending
voucher or gift cancelled, a fulfilled one kept but marked withdrawn); a held member's draw takes
the code and is drawn on the hold's release, rejected on its confirmation.

The module's goods are lipsticks (LM-LS-01) packed on a line of their own, so its campaigns cover
no product of ``tests.test_draws`` (whose fixture withdraws its own campaigns before each test)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers import assert_error, issue_cases, issue_units
from tests.points_support import claim_body, into_channel, member_client, new_member, set_rule
from tests.test_draws import Units, campaign_body, code_of, draw, new_campaign, prize
from tests.test_logistics import confirm, document

CLAIM = "/members/me/claims"
ROUNDS = 40  # races of a draw and a points claim, each on a fresh code
_ids = itertools.count(1)


async def _pack(client: Any, login: Any, app: Any, demo: Any, cases: int) -> dict[str, Any]:
    """As ``tests.test_logistics.pack``, for the lipstick on line LDRAW."""
    batch_no, product_id = await issue_units(client, login, demo, cases * 10, "LM-LS-01")
    ssccs = await issue_cases(client, login, demo, "inner", cases)
    operator = await login("operator")
    context = {"product_id": product_id, "lot": "LIP1", "production_date": "2026-11-10"}
    response = await client.put("/lines/LDRAW/context", headers=operator, json=context)
    assert response.status_code == 200, response.text
    units = [app.state.scheme.serial(batch_no, i) for i in range(cases * 10)]
    scans = []
    tag = secrets.token_hex(4)
    for c in range(cases):
        for serial in [*units[c * 10 : c * 10 + 10], ssccs[c]]:
            scans.append(
                {"id": f"ow{tag}{next(_ids)}", "code": serial, "at": "2026-11-10T08:00:00Z"}
            )
    body = (await client.post("/lines/LDRAW/scans", headers=operator, json={"scans": scans})).json()
    assert body["rejected"] == 0, body
    return {"units": units, "cases": ssccs, "product_id": product_id}


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """80 lipsticks in 8 cases, all shipped to AGENT-ZJ (浙江省); cases 6 and 7 (units 60–79)
    then delivered to STORE-HZ-01, whose till sells them (a consumer returns a sold unit)."""
    goods = await _pack(client, login, app, demo, 8)
    await into_channel(client, login, demo, goods["cases"])
    agent, store = await login("agent_clerk"), await login("store_clerk")
    ship = await document(
        client, agent, goods["cases"][6:], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, ship)).status_code == 200
    received = await document(client, store, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, store, received)).status_code == 200
    return goods


@pytest.fixture(scope="module")
def units(goods: dict[str, Any]) -> Units:
    """Units at AGENT-ZJ (0–59)."""
    taken = Units(goods)
    taken.free = list(goods["units"][:60])
    return taken


@pytest.fixture(scope="module")
def shelf(goods: dict[str, Any]) -> Units:
    """Units at STORE-HZ-01 (60–79)."""
    taken = Units(goods)
    taken.free = list(goods["units"][60:])
    return taken


@pytest.fixture(autouse=True)
async def own_campaign_only(app: Any, demo: Any, goods: dict[str, Any]) -> None:
    """Each test's draws go to its own campaign: the module's earlier ones are withdrawn."""
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE draw_campaigns SET deleted_at = now() WHERE brand_id = %s "
            "AND deleted_at IS NULL AND %s = ANY(product_ids)",
            (demo["BRAND-LUMI"], goods["product_id"]),
        )


async def claim(app: Any, headers: dict[str, str], serial: str) -> Any:
    async with member_client(app) as mc:
        return await mc.post(CLAIM, headers=headers, json=claim_body(app.state.scheme, serial))


async def _owners(app: Any, serial: str) -> set[tuple[str, int]]:
    """The live owners of a code: (draw | claim, member)."""
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT 'draw' AS kind, member_id FROM draws
                    WHERE code_id = %(code)s AND withdrawn_at IS NULL
                   UNION ALL
                   SELECT 'claim', member_id FROM point_claims
                    WHERE code_id = %(code)s AND withdrawn_at IS NULL""",
                {"code": code_of(app, serial)},
            )
        ).fetchall()
    return {(r["kind"], r["member_id"]) for r in rows}


async def test_a_draw_and_another_members_points_claim_at_once_leave_one_owner(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A review: the draw checked another member's points claim (and the points claim another
    member's draw) in the statement that waited for the unit's lock, with the snapshot it took
    before waiting — READ COMMITTED rechecks only the locked row, so neither saw the other's
    committed row and both owned the code. ``ROUNDS`` races over HTTP of a draw by A and a points
    claim by B on fresh codes: each ends with one owner, the other answered 409
    ``claimed_by_another``."""
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 5)
    await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Race gift", quantity=1000)])
    )
    a_id, a, _ = await new_member(app, demo["BRAND-LUMI"])
    b_id, b, _ = await new_member(app, demo["BRAND-LUMI"])
    doubled: list[str] = []
    for serial in units.take(ROUNDS):
        drawn, claimed = await asyncio.gather(draw(app, a, serial), claim(app, b, serial))
        owners = await _owners(app, serial)
        assert len({m for _, m in owners}) >= 1, (drawn.text, claimed.text)
        if len({m for _, m in owners}) > 1:
            doubled.append(serial)
            continue
        answers = sorted([drawn.status_code, claimed.status_code])
        assert answers == [201, 409], (drawn.text, claimed.text)
        loser = drawn if drawn.status_code == 409 else claimed
        assert_error(loser, 409, "claimed_by_another")
        assert owners in ({("draw", a_id)}, {("claim", b_id)}), owners
    assert doubled == [], f"{len(doubled)} of {ROUNDS} codes ended with two owners"


# -- a consumer's return ---------------------------------------------------------------------


async def _sell(client: Any, login: Any, serial: str) -> None:
    sold = await client.post("/sales", headers=await login("store_clerk"), json={"codes": [serial]})
    assert sold.status_code in (200, 201), sold.text


async def _return(client: Any, login: Any, serial: str) -> dict[str, Any]:
    back = await client.post(
        "/returns", headers=await login("store_clerk"), json={"code": serial, "reason": "other"}
    )
    assert back.status_code == 200, back.text
    return back.json()  # type: ignore[no-any-return]


async def _won(
    client: Any, login: Any, app: Any, headers: dict[str, str], *serials: str
) -> dict[str, int]:
    """Each of ``serials`` sold, then drawn by the member of ``headers``, winning a prize still
    to be handed over: the draw ids by serial."""
    drawn = {}
    for serial in serials:
        await _sell(client, login, serial)
        won = await draw(app, headers, serial)
        assert won.status_code == 201 and won.json()["fulfil_status"] == "pending", won.text
        drawn[serial] = won.json()["draw_id"]
    return drawn


async def _draw_row(app: Any, draw_id: int) -> dict[str, Any]:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT d.fulfil_status, d.withdrawn_at, d.hold_state, d.prize_id,
                          p.remaining, p.quantity
                   FROM draws d LEFT JOIN draw_prizes p ON p.id = d.prize_id WHERE d.id = %s""",
                (draw_id,),
            )
        ).fetchone()
    assert row is not None
    return dict(row)


async def test_a_return_takes_a_draws_points_back_as_a_points_claims_and_frees_the_code(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], shelf: Units
) -> None:
    """A review: ``POST /returns`` withdrew the points claim but not the draw — the refunded
    buyer kept a draw's points. Now the draw is withdrawn and its points taken back exactly as a
    withdrawn claim's: an adjustment of what the balance holds, the rest owed; the prize's stock
    does not come back. The unit sold again is drawn again, by the next buyer."""
    from app.members.points import check_balances
    from app.members.returns import DRAW_WITHDRAWN

    admin = await login("admin")
    campaign = await new_campaign(
        client,
        admin,
        campaign_body(goods["product_id"], [prize("50 points", "points", 10, 1, points=50)]),
    )
    (serial,) = shelf.take()
    await _sell(client, login, serial)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    won = await draw(app, headers, serial)
    assert won.status_code == 201 and won.json()["balance"] == 50, won.text
    spent = await client.post(  # 45 of them spent meanwhile: 5 left to take back, 45 owed
        "/points/adjustments",
        headers=admin,
        json={"member_id": member_id, "points": -45, "reason": "spent", "client_id": "dw-1"},
    )
    assert spent.status_code == 201, spent.text
    back = await _return(client, login, serial)
    assert back["draw_withdrawn"] == won.json()["draw_id"]
    row = await _draw_row(app, won.json()["draw_id"])
    assert row["withdrawn_at"] is not None and row["fulfil_status"] == "credited"
    assert (row["remaining"], row["quantity"]) == (9, 10)  # a points prize's stock stays given
    async with app.state.pool.connection() as conn:
        held = await (
            await conn.execute(
                "SELECT balance, owed FROM point_balances WHERE member_id = %s", (member_id,)
            )
        ).fetchone()
        last = await (
            await conn.execute(
                "SELECT kind, points, reason FROM points_ledger WHERE member_id = %s "
                "ORDER BY id DESC LIMIT 1",
                (member_id,),
            )
        ).fetchone()
        assert await check_balances(conn) == []
    assert (held["balance"], held["owed"]) == (0, 45)
    assert (last["kind"], last["points"], last["reason"]) == ("adjustment", -5, DRAW_WITHDRAWN)
    # the refunded buyer's draw again: the unit waits for its next sale
    assert_error(await draw(app, headers, serial), 409, "not_sold_again")
    await _sell(client, login, serial)
    _, buyer, _ = await new_member(app, demo["BRAND-LUMI"])
    again = await draw(app, buyer, serial)
    assert again.status_code == 201 and again.json()["prize"]["points"] == 50, again.text
    got = (await client.get(f"/draws/{campaign['id']}/results", headers=admin)).json()
    assert [r["withdrawn_at"] is not None for r in got["items"]] == [False, True]


async def test_a_return_cancels_a_pending_prize_and_keeps_a_fulfilled_one(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], shelf: Units
) -> None:
    """A pending gift of a returned unit is cancelled — no longer handed over (409
    ``prize_not_pending``) — and its stock comes back (it never left); a gift handed over before
    the return stays fulfilled, the draw marked withdrawn. No points move."""
    admin = await login("admin")
    campaign = await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Mirror", "gift", 5, 1)])
    )
    cid = campaign["id"]
    pending, handed = shelf.take(2)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    drawn = await _won(client, login, app, headers, pending, handed)
    fulfil = f"/draws/{cid}/results/{drawn[handed]}/fulfil"
    assert (await client.post(fulfil, headers=admin, json={"note": "SF-1"})).status_code == 200
    assert (await client.get(f"/draws/{cid}", headers=admin)).json()["prizes"][0]["remaining"] == 3
    for serial in (pending, handed):
        assert (await _return(client, login, serial))["draw_withdrawn"] == drawn[serial]
    cancelled, kept = await _draw_row(app, drawn[pending]), await _draw_row(app, drawn[handed])
    assert cancelled["fulfil_status"] == "cancelled" and cancelled["withdrawn_at"] is not None
    assert kept["fulfil_status"] == "fulfilled" and kept["withdrawn_at"] is not None
    shown = (await client.get(f"/draws/{cid}", headers=admin)).json()
    assert shown["prizes"][0]["remaining"] == 4
    assert (shown["draws"], shown["winners"]) == (2, 1)  # the cancelled gift is no win
    late = await client.post(
        f"/draws/{cid}/results/{drawn[pending]}/fulfil", headers=admin, json={"note": "SF-2"}
    )
    assert_error(late, 409, "prize_not_pending")
    assert late.json()["error"]["details"]["fulfil_status"] == "cancelled"
    pending_list = await client.get(
        f"/draws/{cid}/results", headers=admin, params={"outcome": "pending"}
    )
    assert pending_list.json()["total"] == 0
    async with app.state.pool.connection() as conn:
        moved = await (
            await conn.execute(
                "SELECT count(*) AS n FROM points_ledger WHERE member_id = %s", (member_id,)
            )
        ).fetchone()
    assert moved["n"] == 0


async def test_the_won_results_are_the_campaign_s_winners(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], shelf: Units
) -> None:
    """A review: ``outcome=won`` listed every draw with a prize, those whose prize a consumer's
    return cancelled too, while the campaign's ``winners`` counted them out. Three gifts won: one
    kept, one handed over then returned (still a win), one returned while pending (cancelled: no
    win). The won list, its CSV and ``winners`` name the same two draws."""
    admin = await login("admin")
    campaign = await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Comb", "gift", 5, 1)])
    )
    cid = campaign["id"]
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    kept, handed, cancelled = shelf.take(3)
    drawn = await _won(client, login, app, headers, kept, handed, cancelled)
    fulfil = f"/draws/{cid}/results/{drawn[handed]}/fulfil"
    assert (await client.post(fulfil, headers=admin, json={"note": "SF-9"})).status_code == 200
    for serial in (handed, cancelled):
        assert (await _return(client, login, serial))["draw_withdrawn"] == drawn[serial]
    url = f"/draws/{cid}/results"
    listed = (await client.get(url, headers=admin, params={"outcome": "won"})).json()
    shown = (await client.get(f"/draws/{cid}", headers=admin)).json()
    expected = sorted([drawn[kept], drawn[handed]])
    assert sorted(r["id"] for r in listed["items"]) == expected, listed
    assert listed["total"] == shown["winners"] == 2
    csv = await client.get(url, headers=admin, params={"outcome": "won", "format": "csv"})
    ids = sorted(int(line.split(",")[0]) for line in csv.text.splitlines()[1:] if line)
    assert ids == expected, csv.text


async def test_a_cancelled_prize_leaves_room_in_its_days_cap(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], shelf: Units
) -> None:
    """A left-out of the return's withdrawal: a gift cancelled by a return came back to stock
    but still counted toward its day's cap, so nobody else could win it that day. The day's
    wins count the prizes not cancelled."""
    admin = await login("admin")
    body = campaign_body(goods["product_id"], [prize("Lamp", "gift", 5, 1, daily_cap=1)])
    await new_campaign(client, admin, body)
    first, second = shelf.take(2)
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await _sell(client, login, first)
    won = await draw(app, headers, first)
    assert won.status_code == 201 and won.json()["fulfil_status"] == "pending", won.text
    await _return(client, login, first)
    await _sell(client, login, second)
    again = await draw(app, headers, second)
    assert again.status_code == 201, again.text
    assert again.json()["fulfil_status"] == "pending" and again.json()["prize"], again.json()


async def test_the_answer_page_offers_no_draw_for_a_returned_unit_until_it_is_sold_again(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], shelf: Units
) -> None:
    """A review: once a return withdrew the draw, the answer page's link (``running_for``)
    showed again for the returned unit, and the draw it led to was refused (409
    ``not_sold_again``). The link follows the draw's own unit rules now."""
    from app.draws.service import running_for

    admin = await login("admin")
    await new_campaign(client, admin, campaign_body(goods["product_id"], [prize("Cap")]))
    (serial,) = shelf.take()
    batch_no, index, _ = app.state.scheme.verify(serial)
    code = batch_no << 32 | index
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])

    async def offered() -> bool:
        async with app.state.pool.connection() as conn:
            return (await running_for(conn, code)).campaign_id is not None

    await _sell(client, login, serial)
    assert (await draw(app, headers, serial)).status_code == 201
    assert not await offered()  # drawn
    await _return(client, login, serial)
    assert not await offered()  # back on the shelf: no draw until it is sold again
    assert_error(await draw(app, headers, serial), 409, "not_sold_again")
    await _sell(client, login, serial)
    assert await offered()


# -- a member on a fraud hold ----------------------------------------------------------------


async def _hold(client: Any, admin: dict[str, str], member_id: int) -> int:
    made = await client.post(
        "/forensics/holds", headers=admin, json={"party_kind": "member", "party_id": member_id}
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def test_a_held_members_draws_are_drawn_once_on_release_with_the_stock_then(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A held member's three draws take their codes (201 ``under_review``, no prize, no stock,
    no points). Two releases and two sweeps at once draw them exactly once, from the stock at
    that time: the prize's quantity cut to 2 meanwhile, two win (one ledger row each), the third
    draws no prize, the stock ends at 0 — never below."""
    from app.forensics.holds import settle
    from app.members.points import check_balances

    admin = await login("admin")
    campaign = await new_campaign(
        client,
        admin,
        campaign_body(goods["product_id"], [prize("20 points", "points", 10, 1, points=20)]),
    )
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    hold_id = await _hold(client, admin, member_id)
    serials, tag = units.take(3), secrets.token_hex(4)
    answers = [await draw(app, headers, s, f"{tag}-{i}") for i, s in enumerate(serials)]
    for answer in answers:
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert (body["status"], body["prize"], body["balance"]) == ("under_review", None, None)
    prize_id = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()["prizes"][0]
    assert prize_id["remaining"] == 10
    cut = await client.patch(
        f"/draws/{campaign['id']}/prizes/{prize_id['id']}", headers=admin, json={"quantity": 2}
    )
    assert cut.status_code == 200, cut.text

    async def sweep() -> int:
        async with await psycopg.AsyncConnection.connect(
            app.state.pool.conninfo, autocommit=True, row_factory=dict_row
        ) as conn:
            async with conn.transaction():
                return await settle(conn, None)

    release = f"/forensics/holds/{hold_id}/release"
    done = await asyncio.gather(
        client.post(release, headers=admin, json={}),
        client.post(release, headers=admin, json={}),
        sweep(),
        sweep(),
    )
    assert [r.status_code for r in done[:2]] == [200, 200], [r.text for r in done[:2]]
    assert done[1].json()["claims"] == {"held": 0, "released": 3, "rejected": 0}
    got = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert got["prizes"][0]["remaining"] == 0 and got["winners"] == 2
    async with app.state.pool.connection() as conn:
        ledger = await (
            await conn.execute(
                "SELECT count(*) AS n, sum(points) AS total FROM points_ledger "
                "WHERE member_id = %s AND kind = 'draw'",
                (member_id,),
            )
        ).fetchone()
        assert await check_balances(conn) == []
    assert (ledger["n"], ledger["total"]) == (2, 40)
    replays = [await draw(app, headers, s, f"{tag}-{i}") for i, s in enumerate(serials)]
    assert [r.status_code for r in replays] == [200] * 3
    assert {r.json()["status"] for r in replays} == {"drawn"}
    assert sorted(bool(r.json()["prize"]) for r in replays) == [False, True, True]


async def test_a_confirmed_hold_rejects_the_draw_and_keeps_the_code_taken(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """Confirmed, the hold's draw is ``rejected``: no prize ever (its stock untouched), the code
    still the member's — another member neither draws it nor claims its points; the results
    list it rejected. A held draw withdrawn by a return before its release draws no prize."""
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 5)
    campaign = await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Held mirror", "gift", 5, 1)])
    )
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    hold_id = await _hold(client, admin, member_id)
    (serial,) = units.take()
    held = await draw(app, headers, serial, "rej-1")
    assert held.status_code == 201 and held.json()["status"] == "under_review", held.text
    confirmed = await client.post(f"/forensics/holds/{hold_id}/confirm", headers=admin, json={})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["claims"] == {"held": 0, "released": 0, "rejected": 1}
    again = await draw(app, headers, serial, "rej-1")
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["prize"]) == ("rejected", None)
    _, other, _ = await new_member(app, demo["BRAND-LUMI"])
    assert_error(await draw(app, other, serial), 409, "already_drawn")
    assert_error(await claim(app, other, serial), 409, "claimed_by_another")
    got = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert got["prizes"][0]["remaining"] == 5 and got["winners"] == 0
    results = (await client.get(f"/draws/{campaign['id']}/results", headers=admin)).json()
    assert [(r["status"], r["prize_id"]) for r in results["items"]] == [("rejected", None)]
    assert await _owners(app, serial) == {("draw", member_id)}


async def test_a_held_draw_returned_before_its_release_draws_no_prize(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], shelf: Units
) -> None:
    admin = await login("admin")
    campaign = await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Held lamp", "gift", 5, 1)])
    )
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    hold_id = await _hold(client, admin, member_id)
    (serial,) = shelf.take()
    await _sell(client, login, serial)
    held = await draw(app, headers, serial)
    assert held.status_code == 201 and held.json()["status"] == "under_review", held.text
    assert (await _return(client, login, serial))["draw_withdrawn"] == held.json()["draw_id"]
    released = await client.post(f"/forensics/holds/{hold_id}/release", headers=admin, json={})
    assert released.status_code == 200, released.text
    row = await _draw_row(app, held.json()["draw_id"])
    assert (row["hold_state"], row["prize_id"]) == ("released", None)
    got = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert got["prizes"][0]["remaining"] == 5 and got["winners"] == 0


@pytest.mark.parametrize("other", ["yesterday", "today", "at_once"])
async def test_a_draw_held_yesterday_and_released_today_counts_on_today_s_daily_cap(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    goods: dict[str, Any],
    units: Units,
    monkeypatch: Any,
    other: str,
) -> None:
    """A probe: a held draw is drawn on its release "with the prizes' stock at that time", but
    its day stayed the scan's: drawn yesterday (Beijing) and released today it counted on
    yesterday's daily cap — two prizes of a cap of 1 went out today when another member had won
    today's, and none when yesterday's was used. A prize of cap 1; another member wins it
    ``yesterday``, ``today`` before the release, or ``at_once`` with it: one prize goes out
    today, and the held draw is recorded on the release's day."""
    import app.claims as claims_mod
    from app.localtime import ZONE

    admin = await login("admin")
    start = datetime.now(UTC) - timedelta(days=3)
    body = campaign_body(goods["product_id"], [prize("Cap lamp", "gift", 10, 1, daily_cap=1)])
    campaign = await new_campaign(client, admin, {**body, "starts_at": start.isoformat()})
    held_id, held, _ = await new_member(app, demo["BRAND-LUMI"])
    hold_id = await _hold(client, admin, held_id)
    _, rival, _ = await new_member(app, demo["BRAND-LUMI"])
    real, yesterday = claims_mod.datetime, datetime.now(UTC) - timedelta(days=1)

    class Yesterday(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return yesterday.astimezone(tz or UTC)

    h_serial, r_serial = units.take(2)
    monkeypatch.setattr(claims_mod, "datetime", Yesterday)
    h = await draw(app, held, h_serial)
    assert h.status_code == 201 and h.json()["status"] == "under_review", h.text
    if other == "yesterday":
        assert (await draw(app, rival, r_serial)).json()["prize"] is not None
    monkeypatch.setattr(claims_mod, "datetime", real)
    release = f"/forensics/holds/{hold_id}/release"
    if other == "today":
        assert (await draw(app, rival, r_serial)).json()["prize"] is not None
    if other == "at_once":
        r, released = await asyncio.gather(
            draw(app, rival, r_serial), client.post(release, headers=admin, json={})
        )
        assert r.status_code == 201, r.text
    else:
        released = await client.post(release, headers=admin, json={})
    assert released.status_code == 200, released.text
    today = datetime.now(ZONE).date()
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT member_id, day, prize_id FROM draws WHERE campaign_id = %s",
                (campaign["id"],),
            )
        ).fetchall()
    held_row = next(r for r in rows if r["member_id"] == held_id)
    won_yesterday = other == "yesterday"
    if other != "at_once":  # today's cap free (yesterday's used), or used before the release
        assert (held_row["prize_id"] is not None) == won_yesterday, rows
    got = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert got["winners"] == 1 + won_yesterday, got  # at once: the release or the rival
    assert got["prizes"][0]["remaining"] == 10 - got["winners"]
    assert held_row["day"] == today
    assert sum(r["prize_id"] is not None for r in rows if r["day"] == today) == 1, rows


# -- a relabel (P5) -------------------------------------------------------------------------


def _relabel(client: Any, headers: dict[str, str], old: str, new: str) -> Any:
    async def relabel() -> Any:
        body = {"old": old, "new": new, "reason": "torn label"}
        return await client.post("/packing/replace", headers=headers, json=body)

    return relabel


def _drawing(app: Any, headers: dict[str, str], serial: str) -> Any:
    async def drawing() -> Any:
        return await draw(app, headers, serial)

    return drawing


async def test_a_draw_and_a_relabel_of_its_unit_at_once_never_both_win(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A probe: a drawn unit (a draw sells nothing: it stays on hand at the agent) relabelled
    by the brand (P5, ``POST /packing/replace``: the new code takes the old one's place) was
    drawn again under its new label — one unit, two prizes. A code that earned its reward is
    not relabelled (409 ``already_drawn``), checked under the unit's lock every draw and claim
    round takes: a draw and a relabel at once, in either order, never both win — the first
    to the unit's row does, the other is refused."""
    from tests.race_support import held_in_turn

    admin = await login("admin")
    await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Relabel comb", quantity=100)])
    )
    labels, _ = await issue_units(client, login, demo, 2, "LM-LS-01")
    lock = "SELECT 1 FROM unit_state WHERE code = %s FOR UPDATE"
    for n, serial in enumerate(units.take(2)):
        _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
        drawing = _drawing(app, headers, serial)
        relabel = _relabel(client, admin, serial, app.state.scheme.serial(labels, n))
        first, second = (drawing, relabel) if n == 0 else (relabel, drawing)
        one, two = await held_in_turn(app, lock, (code_of(app, serial),), first, second)
        drawn, relabelled = (one, two) if n == 0 else (two, one)
        if n == 0:  # the draw first: the unit is drawn and keeps its label
            assert drawn.status_code == 201, drawn.text
            assert_error(relabelled, 409, "already_drawn")  # was 200
        else:  # the relabel first: the old label is void, drawn by nobody
            assert relabelled.status_code == 200, relabelled.text
            assert drawn.status_code >= 400, drawn.text
            assert await _owners(app, serial) == set()
