"""Claims served in rounds (issue 15 target: claims/s): the member looked up with the round's
other members instead of on a pooled connection, and the whole credit — claims, ledger,
balances, the claiming events and their code rows — in ONE statement. These tests prove that
nothing was lost on the way: a freeze or a sign-out still holds at once, a member frozen while
its claim is in flight is not credited, and the event is the one ``builders.observe`` makes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from app.auth import tokens
from app.claims import Pending
from app.errors import AppError
from app.members import erasure, points
from app.members.principal import MEMBER_TOKEN, issue_token
from tests.helpers import assert_error, code_of
from tests.points_support import (
    claim_body,
    into_channel,
    member_client,
    new_member,
    set_rule,
    shipped_goods,
)


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> AsyncIterator[dict[str, Any]]:
    """Seven points a unit, at the units' agent too: another module's agent rule for the same
    product (tests/test_points.py sets 25) would otherwise win when it ran first — deleted after
    the module, as the others are now. All three cases shipped to AGENT-ZJ: a unit never shipped
    earns no points (422 ``not_shipped``)."""
    goods = await shipped_goods(client, login, app, demo)
    await into_channel(client, login, demo, goods["cases"][2:], stocked=True)  # case 2 as well
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 7)
    zj = await set_rule(client, admin, goods["product_id"], 7, demo["AGENT-ZJ"])
    yield goods
    gone = await client.delete(f"/points/rules/{zj['id']}", headers=await login("admin"))
    assert gone.status_code in (204, 404), gone.text


def pending_claim(app: Any, member_id: int, brand: int, serial: str) -> Pending[Any]:
    """A verified claim of ``serial`` by the member, as a round receives it."""
    client_id = f"t-{secrets.token_hex(4)}"
    return Pending(
        member_id, brand, None, code_of(app, serial), serial, client_id, datetime.now(UTC)
    )


async def test_freeze_and_sign_out_hold_for_the_next_claim(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """The token is remembered once checked, the member is not: a claim after a freeze answers
    403 member_frozen, after an unfreeze it is credited again, after a sign-out 401
    token_revoked; a token of no member, an expired or a staff token: 401."""
    scheme, units = app.state.scheme, goods["units"]
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    admin = await login("admin")
    async with member_client(app) as mc:

        async def claim(serial: str, who: dict[str, str] = headers) -> Any:
            return await mc.post("/members/me/claims", headers=who, json=claim_body(scheme, serial))

        assert (await claim(units[0])).status_code == 201
        frozen = await client.post(
            f"/members/{member_id}/freeze", headers=admin, json={"reason": "test"}
        )
        assert frozen.status_code == 200, frozen.text
        assert_error(await claim(units[1]), 403, "member_frozen")
        thawed = await client.post(
            f"/members/{member_id}/unfreeze", headers=admin, json={"reason": "test"}
        )
        assert thawed.status_code == 200, thawed.text
        credited = await claim(units[1])
        assert credited.status_code == 201, credited.text
        assert credited.json()["balance"] == 14
        out = await mc.post("/members/logout", headers=headers)
        assert out.status_code == 204, out.text
        assert_error(await claim(units[2]), 401, "token_revoked")
        # a well-signed token of no member; an expired one; a staff token; no bearer
        nobody, _ = issue_token(app.state.settings, 9_000_000_000_000)
        assert_error(
            await claim(units[2], {"Authorization": f"Bearer {nobody}"}), 401, "invalid_token"
        )
        expired, _ = tokens.issue(app.state.settings.jwt_key(), member_id, MEMBER_TOKEN, -10)
        assert_error(
            await claim(units[2], {"Authorization": f"Bearer {expired}"}), 401, "token_expired"
        )
        assert_error(await claim(units[2], admin), 401, "invalid_token")
        assert_error(await claim(units[2], {"Authorization": "Basic abc"}), 401, "unauthorized")


async def test_a_member_frozen_in_flight_is_not_credited(
    app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """Frozen after its look-up but before its round: the round credits active members only,
    and the claim is answered 403 member_frozen; the active member of the same round is
    credited."""
    frozen_id, _, _ = await new_member(app, demo["BRAND-LUMI"], status="frozen")
    active_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    serials = goods["units"][3:5]
    url = app.state.pool.conninfo
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        now = datetime.now(UTC)
        group = [
            Pending(  # a member as looked up before
                member_id,
                demo["BRAND-LUMI"],
                None,
                code_of(app, serial),
                serial,
                f"fz-{secrets.token_hex(4)}",
                now,
            )
            for member_id, serial in ((frozen_id, serials[0]), (active_id, serials[1]))
        ]
        credited = await points.credit(conn, group)
        assert list(credited) == [id(group[1])]
        await points.explain(conn, [group[0]])
        with pytest.raises(AppError) as refused:
            await group[0].done
        assert (refused.value.status, refused.value.code) == (403, "member_frozen")
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM point_claims WHERE code_id = %s",
                (code_of(app, serials[0]),),
            )
        ).fetchone()
        assert row is not None and row["n"] == 0


async def test_a_unit_held_by_other_work_fails_only_its_own_claim(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A round that waits out its time for a unit another transaction holds: that unit's claim
    fails (503 query_timeout), the round's other claim is credited — the whole round failed
    before. Once the holder lets go, the unit is claimed as usual."""
    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    mine = await shipped_goods(client, login, app, demo)  # units of its own, at the agent
    assert mine["product_id"] == goods["product_id"]  # seven points a unit (``goods``)
    held, free = mine["units"][:2]
    claimer = points.Claimer(app.state.pool, app.state.verifier, app.state.scheme)
    claimer.settings = msgspec.structs.replace(claimer.settings, db_round_timeout=0.5)

    def pending(serial: str) -> Pending[Any]:
        return pending_claim(app, member_id, demo["BRAND-LUMI"], serial)

    group = [pending(held), pending(free)]
    try:
        async with await psycopg.AsyncConnection.connect(app.state.pool.conninfo) as holder:
            await holder.execute(
                "SELECT 1 FROM unit_state WHERE code = %s FOR UPDATE", (code_of(app, held),)
            )
            await claimer._round_of(group)
            await holder.rollback()
        with pytest.raises(psycopg.errors.QueryCanceled):
            await group[0].done
        credited, created = await group[1].done
        assert created and credited.serial == free and credited.points == 7
        again = [pending(held)]
        await claimer._round_of(again)
        credited, created = await again[0].done
        assert created and credited.serial == held
    finally:
        await claimer.close()


async def test_a_first_claim_in_flight_during_the_member_s_erasure_earns_nothing(
    app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """An erasure under way (its transaction open) holds the member: the credit round of the
    member's first claim waits for it, then finds the member erased — no claim, no balance.
    Before, the round read the member as active and gave it points the erasure never saw (no
    balance row yet for the erasure to wait on)."""
    brand = demo["BRAND-LUMI"]
    member_id, _, _ = await new_member(app, brand)
    serial = goods["units"][26]
    group = [pending_claim(app, member_id, brand, serial)]
    url = app.state.pool.conninfo
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        async with app.state.pool.connection() as eraser, eraser.transaction():
            await erasure.erase(eraser, None, brand, member_id)
            crediting = asyncio.ensure_future(points.credit(conn, group))
            await asyncio.sleep(0.5)
            assert not crediting.done()  # the member is held
        assert await crediting == {}
        await points.explain(conn, group)
        with pytest.raises(AppError) as refused:
            await group[0].done
        assert refused.value.code == "member_erased"
        row = await (
            await conn.execute(
                """SELECT (SELECT count(*) FROM point_claims WHERE member_id = %(m)s) AS claims,
                          (SELECT coalesce(sum(balance), 0) FROM point_balances
                            WHERE member_id = %(m)s) AS balance""",
                {"m": member_id},
            )
        ).fetchone()
    assert row == {"claims": 0, "balance": 0}


async def test_a_credit_waits_for_an_erasure_that_has_only_taken_its_member(
    app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """The erasure's first step holds the member row (FOR NO KEY UPDATE, as ``erase`` takes it);
    its balance is forfeited before the row changes. A credit round that came then must wait for
    it — a lock that let it through (KEY SHARE) credited points the forfeit had not seen."""
    brand = demo["BRAND-LUMI"]
    member_id, _, _ = await new_member(app, brand)
    serial = goods["units"][28]
    group = [pending_claim(app, member_id, brand, serial)]
    url = app.state.pool.conninfo
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        async with await psycopg.AsyncConnection.connect(url) as eraser:
            await eraser.execute(
                "SELECT 1 FROM members WHERE id = %s FOR NO KEY UPDATE", (member_id,)
            )
            crediting = asyncio.ensure_future(points.credit(conn, group))
            await asyncio.sleep(0.5)
            assert not crediting.done()  # held back by the erasure's first lock
            await eraser.rollback()
        assert list(await crediting) == [id(group[0])]  # an erasure that did not happen


async def test_the_claiming_event_is_the_builders_one(
    app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """Written in SQL, the event has every column ``builders.observe`` + ``write_events`` give
    it, and one code row: the unit."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    serial = goods["units"][5]
    async with member_client(app) as mc:
        done = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert done.status_code == 201, done.text
    claim = done.json()
    async with app.state.pool.connection() as conn:
        event = await (
            await conn.execute(
                """SELECT e.*, (SELECT array_agg(ec.code || ':' || ec.kind::text) FROM event_codes ec
                                WHERE ec.event_id = e.id) AS codes
                   FROM point_claims c JOIN events e ON e.id = c.event_id WHERE c.id = %s""",
                (claim["claim_id"],),
            )
        ).fetchone()
    assert event is not None
    assert (event["event_type"], event["action"], event["biz_step"]) == (
        "ObjectEvent",
        "OBSERVE",
        "claiming",
    )
    assert event["disposition"] is None and event["tz_offset"] == "+00:00"
    assert event["brand_id"] == demo["BRAND-LUMI"] and event["child_count"] == 1
    assert event["event_uuid"] is not None and event["event_time"].isoformat().startswith(
        claim["claimed_at"][:19]
    )
    assert event["details"] == {
        "member_id": member_id,
        "claim_id": claim["claim_id"],
        "points": 7,
        "product_id": goods["product_id"],
        "agent_id": claim["agent_id"],
    }
    assert event["codes"] == [f"{code_of(app, serial)}:u"]
    for column in ("read_point", "biz_location", "source_org", "destination_org", "parent_code"):
        assert event[column] is None


async def test_many_claims_at_once_are_all_credited_in_rounds(
    app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """20 claims of distinct codes by 4 members at once: every one 201, each balance the sum of
    its member's claims, the ledger and the balances agree."""
    scheme = app.state.scheme
    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(4)]
    serials = goods["units"][6:26]
    async with member_client(app) as mc:
        answers = await asyncio.gather(
            *[
                mc.post(
                    "/members/me/claims",
                    headers=members[i % 4][1],
                    json=claim_body(scheme, serial),
                )
                for i, serial in enumerate(serials)
            ]
        )
    assert [a.status_code for a in answers] == [201] * 20, [a.text for a in answers]
    for i in range(len(members)):
        mine = [a.json() for j, a in enumerate(answers) if j % 4 == i]
        assert max(a["balance"] for a in mine) == sum(a["points"] for a in mine)
    async with app.state.pool.connection() as conn:
        assert await points.check_balances(conn) == []


async def test_the_plain_asgi_claim_handler_answers_like_the_others(
    client: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """POST only (405 with Allow), 16 KB at most (413, connection closed), JSON errors 400 —
    malformed, nested too deep — as JSON errors; and the operation is in the OpenAPI schema with
    its member token, its answers and its errors."""
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        wrong = await mc.get("/members/me/claims", headers=headers)
        assert_error(wrong, 405)
        assert wrong.headers["allow"] == "POST"
        big = {**claim_body(app.state.scheme, goods["units"][27]), "serial": "A" * 17_000}
        huge = await mc.post("/members/me/claims", headers=headers, json=big)
        assert_error(huge, 413)
        assert huge.headers["connection"] == "close"
        as_json = {**headers, "content-type": "application/json"}
        assert_error(
            await mc.post("/members/me/claims", headers=as_json, content=b"{not json"), 400
        )
        deep = b'{"serial":' + b"[" * 100 + b"]" * 100 + b"}"
        assert_error(
            await mc.post("/members/me/claims", headers=as_json, content=deep), 400, "too_deep"
        )
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/members/me/claims"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert {"200", "201", "400", "401", "403", "409", "413", "422", "429"} <= set(
        operation["responses"]
    )
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ClaimIn"
    )


async def test_a_member_of_a_deactivated_brand_claims_nothing(
    client: Any, login: Any, app: Any
) -> None:
    """A brand turned off turns its members off (README): a claim is 401 invalid_token, as
    every other member endpoint answers. Before, the claims' own look-up of the member skipped
    the brand's status and the claim went on (a probe had one credited)."""
    platform = await login("platform")
    tag = secrets.token_hex(3).upper()
    brand = await client.post(
        "/orgs",
        headers=platform,
        json={"kind": "brand", "name": f"Off {tag}", "erp_code": f"OFF-{tag}"},
    )
    assert brand.status_code == 201, brand.text
    _, member, _ = await new_member(app, brand.json()["id"])
    off = await client.post(f"/orgs/{brand.json()['id']}/deactivate", headers=platform)
    assert off.status_code == 200, off.text
    assert_error(await client.get("/members/me", headers=member), 401, "invalid_token")
    async with member_client(app) as mc:
        claim = await mc.post(
            "/members/me/claims",
            headers=member,
            json={"serial": "X", "pin": "0000", "client_id": "abcd1234"},
        )
    assert_error(claim, 401, "invalid_token")
