"""Campaign templates and campaigns (W4, seed 1.12): audience filters, opt-out, the marketing
interval, the send rate, idempotent client ids, permissions and scoping."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from app import idempotency
from app.sms import sender
from app.sms.gateway import Result, gateway_from_settings
from app.sms.schemas import CampaignIn
from tests import steady
from tests.helpers import assert_error, key_of
from tests.race_support import audit_rows, deleted_once, twice_held
from tests.rebates_support import user_id
from tests.sms_gateway import LocalGateway


def phone() -> str:
    return steady.phone("137")


async def _province_of_this_test(app: Any, brand: int, province: str) -> str:
    """A real province (a campaign refuses unknown ones) emptied of the brand's members of
    earlier tests in this database, so that the test's audience is its own members only."""
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE members SET province = NULL WHERE brand_id = %s AND province = %s",
            (brand, province),
        )
    return province


async def _template(client: Any, headers: dict[str, str]) -> int:
    name = f"promo_{secrets.token_hex(3)}"
    made = await client.post(
        "/sms/templates",
        headers=headers,
        json={"name": name, "body": "{season}新品上市，凭会员码到店享{discount}折。"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["placeholders"] == ["discount", "season"]
    return int(made.json()["id"])


async def test_templates_are_the_brands_and_need_the_permission(client: Any, login: Any) -> None:
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    listed = await client.get("/sms/templates", headers=marketer)
    assert template_id in [t["id"] for t in listed.json()["items"]]
    builtin = await client.post(
        "/sms/templates", headers=marketer, json={"name": "otp", "body": "x"}
    )
    assert_error(builtin, 409, "template_reserved")
    name = listed.json()["items"][0]["name"]
    again = await client.post("/sms/templates", headers=marketer, json={"name": name, "body": "x"})
    assert_error(again, 409, "template_exists")
    changed = await client.patch(
        f"/sms/templates/{template_id}", headers=marketer, json={"body": "{season}上新"}
    )
    assert changed.json()["placeholders"] == ["season"]
    # an agent or a store (sms.campaigns for their own campaigns) reads the brand's templates
    # but never rewrites or deletes them: an edit changed the brand's queued messages too
    for below in ("gd_admin", "store_manager"):
        headers = await login(below)
        listed = await client.get("/sms/templates", headers=headers)
        assert template_id in [t["id"] for t in listed.json()["items"]]
        for answer in (
            await client.patch(
                f"/sms/templates/{template_id}", headers=headers, json={"body": "pwned"}
            ),
            await client.delete(f"/sms/templates/{template_id}", headers=headers),
            await client.post(
                "/sms/templates", headers=headers, json={"name": f"x-{below}", "body": "x"}
            ),
        ):
            assert_error(answer, 403, "brand_only")
    kept = await client.get("/sms/templates", headers=marketer)
    [mine] = [t for t in kept.json()["items"] if t["id"] == template_id]
    assert mine["body"] == "{season}上新"
    analyst = await login("analyst")
    assert_error(await client.get("/sms/templates", headers=analyst), 403, "permission_denied")
    assert_error(
        await client.post(
            "/sms/campaigns",
            headers=analyst,
            json={"template_id": template_id, "audience": "members"},
        ),
        403,
        "permission_denied",
    )


async def test_a_template_and_a_campaign_made_through_an_api_key_name_its_maker(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the brand's CRM (an API key the admin made, ``sms.campaigns``) wrote a template
    and sent a campaign with it: both rows' ``created_by`` null (the key has no user), made by
    nobody. Both name the person behind the key now (``Principal.person``)."""
    key = await key_of(client, await login("admin"), ["sms.campaigns"])
    template_id = await _template(client, key)
    province = await _province_of_this_test(app, demo["BRAND-LUMI"], "青海省")
    made = await client.post(
        "/sms/campaigns",
        headers=key,
        json={
            "template_id": template_id,
            "audience": "members",
            "filter": {"provinces": [province]},
            "variables": {"season": "春季", "discount": "8"},
        },
    )
    assert made.status_code == 201, made.text
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT (SELECT created_by FROM sms_templates WHERE id = %s) AS template,
                          (SELECT created_by FROM sms_campaigns WHERE id = %s) AS campaign""",
                (template_id, made.json()["id"]),
            )
        ).fetchone()
        admin_id = await user_id(conn, "admin")
    assert row == {"template": admin_id, "campaign": admin_id}, row


async def test_a_member_campaign_reaches_its_filtered_audience_once_skipping_opt_outs(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    brand = demo["BRAND-LUMI"]
    province = await _province_of_this_test(app, brand, "西藏自治区")
    zj = [phone() for _ in range(3)]
    async with app.state.pool.connection() as conn:
        for i, p in enumerate(zj):
            await conn.execute(
                "INSERT INTO members (brand_id, phone, province, age_band, marketing_opt_out) "
                "VALUES (%s, %s, %s, %s, %s)",
                (brand, p, province, "25_34" if i else "55_plus", i == 2),
            )
    body = {
        "template_id": template_id,
        "audience": "members",
        "filter": {"provinces": [province]},
        "variables": {"season": "春季", "discount": "8"},
    }
    dry = await client.post("/sms/campaigns", headers=marketer, json={**body, "dry_run": True})
    assert dry.status_code == 201, dry.text
    assert (dry.json()["id"], dry.json()["recipients"], dry.json()["skipped"]) == (None, 2, 1)
    banded = {**body, "filter": {"provinces": [province], "age_bands": ["25_34"]}, "dry_run": True}
    assert (await client.post("/sms/campaigns", headers=marketer, json=banded)).json()[
        "recipients"
    ] == 1
    missing = await client.post(
        "/sms/campaigns", headers=marketer, json={**body, "variables": {"season": "春季"}}
    )
    assert_error(missing, 422, "missing_variables")

    key = secrets.token_hex(4)
    made = await client.post("/sms/campaigns", headers=marketer, json={**body, "client_id": key})
    assert made.status_code == 201, made.text
    campaign = made.json()
    assert (campaign["recipients"], campaign["skipped"], campaign["states"]) == (
        2,
        1,
        {"pending": 2},
    )
    repeat = await client.post("/sms/campaigns", headers=marketer, json={**body, "client_id": key})
    assert repeat.status_code == 200, repeat.text  # was 201: nothing new was made
    assert repeat.json()["id"] == campaign["id"] and repeat.json()["recipients"] == 2
    other = {**body, "variables": {"season": "夏季", "discount": "5"}, "client_id": key}
    assert_error(
        await client.post("/sms/campaigns", headers=marketer, json=other), 409, "client_id_reused"
    )
    # a second campaign inside the marketing interval reaches nobody
    second = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert (second.json()["recipients"], second.json()["skipped"]) == (0, 3)

    # sent through the gateway, with the brand's signature and the opt-out line
    gateway = LocalGateway().start()
    try:
        config = gateway.settings(settings)
        gw = gateway_from_settings(config)
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            await conn.execute(
                "UPDATE sms_outbox SET next_attempt_at = now() WHERE campaign_id = %s",
                (campaign["id"],),
            )
            await sender.drain(conn, gw, config)
        await gw.aclose()
        texts = {m["phone"]: m["text"] for m in gateway.messages()}
    finally:
        gateway.stop()
    assert set(texts) >= set(zj[:2]) and zj[2] not in texts
    assert texts[zj[0]].endswith("春季新品上市，凭会员码到店享8折。回复TD退订")
    shown = await client.get(f"/sms/campaigns/{campaign['id']}", headers=marketer)
    assert shown.json()["states"] == {"sent": 2}


async def test_campaign_messages_leave_at_the_configured_rate(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    province = await _province_of_this_test(app, demo["BRAND-LUMI"], "青海省")
    async with app.state.pool.connection() as conn:
        for _ in range(5):
            await conn.execute(
                "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s)",
                (demo["BRAND-LUMI"], phone(), province),
            )
    made = await client.post(
        "/sms/campaigns",
        headers=marketer,
        json={
            "template_id": template_id,
            "audience": "members",
            "filter": {"provinces": [province]},
            "variables": {"season": "夏季", "discount": "9"},
        },
    )
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            """SELECT extract(epoch FROM max(next_attempt_at) - min(next_attempt_at))::float8 AS span
                 FROM sms_outbox WHERE campaign_id = %s""",
            (made.json()["id"],),
        )
        span = (await cur.fetchone())["span"]
    rate = app.state.settings.sms_campaign_rate
    assert abs(span - 4 / rate) < 0.005, span  # five messages, 1/rate seconds apart


async def test_two_campaigns_queued_together_still_leave_at_the_configured_rate(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the marketer queues two campaigns a moment apart (two provinces, each its own
    audience). README "SMS": messages leave at most SMS_CAMPAIGN_RATE per second, the brand's
    rate (its gateway account's throughput). Each campaign spaced its rows from *now*, whatever
    the brand already had queued, so two campaigns left side by side at twice the rate. Now the
    second is queued after the first: 80 messages, 1/rate seconds apart."""
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    brand = demo["BRAND-LUMI"]
    campaigns = []
    for province in ("甘肃省", "宁夏回族自治区"):
        await _province_of_this_test(app, brand, province)
        async with app.state.pool.connection() as conn:
            for _ in range(40):
                await conn.execute(
                    "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s)",
                    (brand, phone(), province),
                )
    for province in ("甘肃省", "宁夏回族自治区"):
        made = await client.post(
            "/sms/campaigns",
            headers=marketer,
            json={
                "template_id": template_id,
                "audience": "members",
                "filter": {"provinces": [province]},
                "variables": {"season": "秋季", "discount": "8"},
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["recipients"] == 40
        campaigns.append(made.json()["id"])
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT campaign_id, extract(epoch FROM next_attempt_at)::float8 AS t FROM sms_outbox "
            "WHERE campaign_id = ANY(%s) ORDER BY next_attempt_at",
            (campaigns,),
        )
        rows = await cur.fetchall()
        await conn.execute(
            "UPDATE sms_outbox SET state = 'failed' WHERE campaign_id = ANY(%s)", (campaigns,)
        )
    rate = app.state.settings.sms_campaign_rate
    times = [r["t"] for r in rows]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / rate - 0.000_01, f"two messages {min(gaps):.6f} s apart at {rate}/s"
    assert [r["campaign_id"] for r in rows] == [campaigns[0]] * 40 + [campaigns[1]] * 40


async def test_store_manager_campaigns_stay_in_the_callers_subtree(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    marketer = await login("marketer")
    agent = await login("agent_admin")  # org_admin of the Zhejiang agent
    hz, sz = phone(), phone()
    async with app.state.pool.connection() as conn:
        await conn.execute("UPDATE users SET phone = %s WHERE username = 'store_clerk'", (hz,))
        await conn.execute(
            """INSERT INTO users (org_id, username, password_hash, phone)
               VALUES (%s, %s, 'x', %s) ON CONFLICT (username) DO UPDATE SET phone = EXCLUDED.phone""",
            (demo["STORE-SZ-01"], "sz_manager", sz),
        )
    template_id = await _template(client, marketer)
    body = {
        "template_id": template_id,
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "dry_run": True,
    }
    everyone = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert everyone.json()["recipients"] >= 2
    mine = await client.post("/sms/campaigns", headers=agent, json={**body, "dry_run": False})
    assert mine.status_code == 201, mine.text
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT phone FROM sms_outbox WHERE campaign_id = %s", (mine.json()["id"],)
        )
        phones = {r["phone"] for r in await cur.fetchall()}
    assert hz in phones and sz not in phones
    # members are the brand's: only brand staff message them
    members = await client.post(
        "/sms/campaigns", headers=agent, json={**body, "audience": "members"}
    )
    assert_error(members, 403, "brand_only")
    # another subtree neither sees the campaign nor targets the Zhejiang stores
    gd = await login("gd_admin")
    assert_error(await client.get(f"/sms/campaigns/{mine.json()['id']}", headers=gd), 404)
    outside = await client.post(
        "/sms/campaigns", headers=gd, json={**body, "filter": {"org_id": demo["AGENT-ZJ"]}}
    )
    assert_error(outside, 404)
    listed = await client.get("/sms/campaigns", headers=gd)
    assert mine.json()["id"] not in [c["id"] for c in listed.json()["items"]]
    wrong = await client.post(
        "/sms/campaigns", headers=marketer, json={**body, "filter": {"age_bands": ["18_24"]}}
    )
    assert_error(wrong, 422, "bad_filter")


async def test_campaigns_sent_at_once_still_reach_a_phone_once_per_interval(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Probe C: six campaigns at once sent each member five marketing messages (the interval
    check read the outbox without a lock)."""
    import asyncio

    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    province = await _province_of_this_test(app, demo["BRAND-LUMI"], "宁夏回族自治区")
    phones = [phone() for _ in range(4)]
    async with app.state.pool.connection() as conn:
        for p in phones:
            await conn.execute(
                "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s)",
                (demo["BRAND-LUMI"], p, province),
            )
    body = {
        "template_id": template_id,
        "audience": "members",
        "filter": {"provinces": [province]},
        "variables": {"season": "春季", "discount": "8"},
    }
    answers = await asyncio.gather(
        *(client.post("/sms/campaigns", headers=marketer, json=body) for _ in range(6))
    )
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    assert sorted(a.json()["recipients"] for a in answers) == [0] * 5 + [4]
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT phone, count(*) AS n FROM sms_outbox WHERE phone = ANY(%s) GROUP BY phone",
                (phones,),
            )
        ).fetchall()
    assert sorted((r["phone"], r["n"]) for r in rows) == sorted((p, 1) for p in phones)


async def test_last_claim_days_are_beijing_days(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Probe L: the audience's last-claim days were compared as UTC midnights: a member who
    claimed at 00:30 in Beijing on 4 December was "before the 4th"."""
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    brand = demo["BRAND-LUMI"]
    province = await _province_of_this_test(app, brand, "澳门特别行政区")
    async with app.state.pool.connection() as conn:
        product = await (
            await conn.execute("SELECT id FROM products WHERE org_id = %s LIMIT 1", (brand,))
        ).fetchone()
        for at in ("2026-12-03T16:30:00Z", "2026-12-03T15:30:00Z"):  # 00:30 on the 4th, 23:30
            member = await (
                await conn.execute(
                    "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s) "
                    "RETURNING id",
                    (brand, phone(), province),
                )
            ).fetchone()
            await conn.execute(
                "INSERT INTO point_claims (code_id, member_id, brand_id, product_id, points, "
                "client_id, event_id, claimed_at) VALUES (%s, %s, %s, %s, 1, 'c', 0, %s)",
                (secrets.randbelow(2**60) + 2**61, member["id"], brand, product["id"], at),
            )

    async def audience(**days: str) -> int:
        body = {
            "template_id": template_id,
            "audience": "members",
            "filter": {"provinces": [province], **days},
            "variables": {"season": "春季", "discount": "8"},
            "dry_run": True,
        }
        answer = await client.post("/sms/campaigns", headers=marketer, json=body)
        assert answer.status_code == 201, answer.text
        return int(answer.json()["recipients"])

    assert await audience(last_claim_after="2026-12-04") == 1
    assert await audience(last_claim_before="2026-12-04") == 1
    assert await audience(last_claim_after="2026-12-03", last_claim_before="2026-12-05") == 2
    # an empty or backwards range is a mistake, not an audience of none (probe P)
    for after, before in (
        ("2026-12-05", "2026-12-03"),
        ("2026-12-04", "2026-12-04"),
        ("2026-12-04", "0001-01-01"),  # review R3: a day before the first: 500
    ):
        body = {
            "template_id": template_id,
            "audience": "members",
            "filter": {"last_claim_after": after, "last_claim_before": before},
            "variables": {"season": "春季", "discount": "8"},
            "dry_run": True,
        }
        answer = await client.post("/sms/campaigns", headers=marketer, json=body)
        assert_error(answer, 400, "bad_period")


async def test_no_campaign_reaches_the_stores_of_an_inactive_agent(
    client: Any, login: Any, app: Any
) -> None:
    """Probe U: the store managers' audience checked the store's own status only; a store under
    a deactivated agent, where nobody can sign in, still got the campaign."""
    admin, marketer = await login("admin"), await login("marketer")
    n = secrets.token_hex(3).upper()
    brand = (await client.get("/auth/me", headers=admin)).json()["org_id"]

    async def org(kind: str, parent: int) -> int:
        body = {"kind": kind, "name": f"Quiet {kind} {n}", "erp_code": f"QUIET-{kind}-{n}"}
        made = await client.post("/orgs", headers=admin, json={**body, "parent_id": parent})
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    agent = await org("agent", brand)
    store = await org("store", agent)
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO users (org_id, username, password_hash, phone) VALUES (%s, %s, 'x', %s)",
            (store, f"quiet_{n}".lower(), phone()),
        )
    body = {
        "template_id": await _template(client, marketer),
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "dry_run": True,
        "filter": {"org_id": agent},
    }
    before = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert before.status_code == 201 and before.json()["recipients"] == 1, before.text
    assert (await client.post(f"/orgs/{agent}/deactivate", headers=admin)).status_code == 200
    after = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert after.status_code == 201 and after.json()["recipients"] == 0, after.text


async def test_a_campaign_s_client_id_is_its_organisation_s_own(
    client: Any, login: Any, app: Any
) -> None:
    """Two agents number their campaigns alike: Guangdong's campaign under the client id
    Zhejiang used is a campaign of its own (201), and a retry answers each its own. Before, the
    id was the brand's: Guangdong's was answered 404 (the same body) or 409 (probe)."""
    template_id = await _template(client, await login("marketer"))
    body = {
        "template_id": template_id,
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "client_id": f"c-{secrets.token_hex(4)}",
    }
    zj, gd = await login("agent_admin"), await login("gd_admin")
    first = await client.post("/sms/campaigns", headers=zj, json=body)
    assert first.status_code == 201, first.text
    theirs = await client.post("/sms/campaigns", headers=gd, json=body)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]
    for headers, made in ((zj, first), (gd, theirs)):
        again = await client.post("/sms/campaigns", headers=headers, json=body)
        assert again.status_code == 200 and again.json()["id"] == made.json()["id"], again.text
    other = {**body, "variables": {"season": "冬季", "discount": "8"}}
    assert_error(
        await client.post("/sms/campaigns", headers=gd, json=other), 409, "client_id_reused"
    )


async def test_a_campaign_retry_answers_the_first_after_its_template_changed(
    client: Any, login: Any
) -> None:
    """A probe: a marketing tool queues a campaign under a client id and loses the answer;
    meanwhile a colleague edits the template (a new placeholder for the next campaign). The
    retry, same client id and body, was 422 ``missing_variables``: the tool took the campaign
    for failed and sent it again under a new id, a second campaign to every phone. It is
    answered 200 with the campaign already queued, as README says of a repeated client id."""
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    body = {
        "template_id": template_id,
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "client_id": f"c-{secrets.token_hex(4)}",
    }
    first = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert first.status_code == 201, first.text
    edited = await client.patch(
        f"/sms/templates/{template_id}",
        headers=marketer,
        json={"body": "{season}新品上市，{name}凭会员码到店享{discount}折。"},
    )
    assert edited.status_code == 200, edited.text
    again = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]


async def test_a_campaign_client_id_is_checked_as_every_other_client_id(
    client: Any, login: Any
) -> None:
    """A probe: every client id of the API (sales, documents, inspections, check-ins,
    allocations, claims, redemptions) is 1–64 printable ASCII characters, else 400. A
    campaign's was taken with blanks, a trailing line feed, zero-width marks or Chinese:
    ``"c-1"``, ``"c-1\\n"`` and ``"c-1\\u200b"`` are three keys that look alike in every list
    and audit row, so a marketer's retry typed or pasted from one of them queued a second
    campaign to every phone (201) instead of answering the first. Such a key is 400."""
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    base = f"c-{secrets.token_hex(4)}"
    body = {
        "template_id": template_id,
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "dry_run": True,
    }
    for hostile in (f"{base}\n", f"{base}\u200b", " ", "活动一"):
        answer = await client.post(
            "/sms/campaigns", headers=marketer, json={**body, "client_id": hostile}
        )
        assert answer.status_code == 400, (hostile, answer.status_code, answer.text)


async def test_a_campaign_names_provinces_as_the_member_list_does(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``Zhejiang`` (which the member list and the profile take for 浙江省) reached no
    member, and a misspelt province a campaign of no one, without a word."""
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    brand = demo["BRAND-LUMI"]
    province = await _province_of_this_test(app, brand, "甘肃省")
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s)",
            (brand, phone(), province),
        )
    body = {
        "template_id": template_id,
        "audience": "members",
        "variables": {"season": "春季", "discount": "8"},
        "dry_run": True,
    }
    for name in ("甘肃省", "甘肃", "Gansu", " GANSU "):  # the short name too (a probe)
        dry = await client.post(
            "/sms/campaigns", headers=marketer, json={**body, "filter": {"provinces": [name]}}
        )
        assert dry.status_code == 201, dry.text
        assert dry.json()["recipients"] == 1, name
    for name in ("甘", "Gansu Province"):
        refused = await client.post(
            "/sms/campaigns", headers=marketer, json={**body, "filter": {"provinces": [name]}}
        )
        assert_error(refused, 400, "validation_failed")
        assert refused.json()["error"]["details"][0]["field"] == "filter.provinces[0]"
    # store managers alike (organisations' provinces are stored by their full names, 0147):
    # a misspelt one reached no store, without a word (a review)
    managers = {**body, "audience": "store_managers", "filter": {"provinces": ["Gansu Province"]}}
    refused = await client.post("/sms/campaigns", headers=marketer, json=managers)
    assert_error(refused, 400, "validation_failed")


async def _store_with_manager(client: Any, admin: dict[str, str], manager_phone: str) -> int:
    """A fresh agent and store of the demo brand, the store with one active user of the phone
    as entered; the agent's id (a campaign's ``filter.org_id``)."""
    n = secrets.token_hex(3).upper()
    brand = (await client.get("/auth/me", headers=admin)).json()["org_id"]
    agent = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "agent", "name": f"Agent {n}", "erp_code": f"AG-{n}", "parent_id": brand},
    )
    assert agent.status_code == 201, agent.text
    store = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": f"Store {n}",
            "erp_code": f"ST-{n}",
            "parent_id": agent.json()["id"],
        },
    )
    assert store.status_code == 201, store.text
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": store.json()["id"],
            "username": f"mgr_{n}".lower(),
            "password": "Manager-pass-12345",
            "roles": ["store_clerk"],
            "phone": manager_phone,
        },
    )
    assert made.status_code == 201, made.text
    return int(agent.json()["id"])


async def test_a_store_manager_s_opt_out_counts_whatever_form_their_phone_was_saved_in(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: a store manager saved with the country code (``86137…``, as POST /users takes
    it) opted out (PUT /sms/opt-outs, stored ``137…``); the audience compared the raw user's
    phone, and the next campaign still texted the phone that said stop."""
    admin, marketer = await login("admin"), await login("marketer")
    for form in ("86{0}", "+86 {1}-{2}-{3}"):
        mobile = phone()
        saved = form.format(mobile, mobile[:3], mobile[3:7], mobile[7:])
        agent = await _store_with_manager(client, admin, saved)
        body = {
            "template_id": await _template(client, marketer),
            "audience": "store_managers",
            "variables": {"season": "秋季", "discount": "7"},
            "filter": {"org_id": agent},
            "dry_run": True,
        }
        reached = await client.post("/sms/campaigns", headers=marketer, json=body)
        assert reached.status_code == 201 and reached.json()["recipients"] == 1, reached.text
        assert (await client.put(f"/sms/opt-outs/{mobile}", headers=marketer)).status_code == 204
        made = await client.post(
            "/sms/campaigns", headers=marketer, json={**body, "dry_run": False}
        )
        assert made.status_code == 201, made.text
        assert made.json()["recipients"] == 0 and made.json()["skipped"] == 1, made.text
        async with app.state.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT phone FROM sms_outbox WHERE campaign_id = %s", (made.json()["id"],)
            )
            assert await cur.fetchall() == [], saved


async def test_a_store_manager_saved_with_brackets_who_opted_out_is_not_texted(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: a store manager's phone saved as ``+86 (137) 1234-5678`` (POST /users takes
    brackets) was made ``8613712345678`` by ``outbox_phone`` — brackets, ``(+86)`` or a spaced
    ``+ 86`` kept the country code — not the mobile ``137…``: the manager's opt-out of the mobile
    (stored ``137…``) missed it and the next campaign still texted the phone that said stop.
    Every spelling of a mainland mobile is the mobile now."""
    from app.sms.outbox import outbox_phone

    admin, marketer = await login("admin"), await login("marketer")
    mobile = phone()
    a, b, c = mobile[:3], mobile[3:7], mobile[7:]
    for form in (f"+86 ({a}) {b}-{c}", f"+ 86 {mobile}", f"(+86){mobile}", f"0086 {a}.{b}.{c}"):
        assert outbox_phone(form) == mobile, form
    saved = f"+86 ({a}) {b}-{c}"
    agent = await _store_with_manager(client, admin, saved)
    body = {
        "template_id": await _template(client, marketer),
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "filter": {"org_id": agent},
    }
    dry = await client.post("/sms/campaigns", headers=marketer, json={**body, "dry_run": True})
    assert dry.status_code == 201 and dry.json()["recipients"] == 1, dry.text
    assert (await client.put(f"/sms/opt-outs/{mobile}", headers=marketer)).status_code == 204
    made = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert made.status_code == 201, made.text
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT phone FROM sms_outbox WHERE campaign_id = %s", (made.json()["id"],)
        )
        queued = [r["phone"] for r in await cur.fetchall()]
    assert queued == [], f"{saved!r} opted out as {mobile} but was queued as {queued}"
    assert (made.json()["recipients"], made.json()["skipped"]) == (0, 1), made.text


async def test_phones_kept_with_their_country_code_become_the_mobile(
    app: Any, demo: Any, settings: Any
) -> None:
    """Rows the SMS code kept before the fix above (``86`` or ``0086`` + a mobile) are rewritten
    by migration 0091: an opt-out of the mobile matches them again, kept once per brand (the
    first) when two forms, or the mobile itself, were there; a foreign number is left alone."""
    from app.db import migrations

    [sql] = [text for version, _, text in migrations() if version == 91]
    brand = demo["BRAND-LUMI"]
    one, two, three, foreign = phone(), phone(), phone(), "4915112345678"
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, row_factory=dict_row
    ) as conn:
        await conn.execute(
            "INSERT INTO sms_opt_outs (brand_id, phone, source, at) VALUES "
            "(%(b)s, '86' || %(one)s, 'api', now() - interval '1 day'), "
            "(%(b)s, '0086' || %(one)s, 'reply', now()), (%(b)s, '86' || %(two)s, 'api', now()), "
            "(%(b)s, %(two)s, 'member', now()), (%(b)s, %(f)s, 'api', now())",
            {"b": brand, "one": one, "two": two, "f": foreign},
        )
        cur = await conn.execute(
            "INSERT INTO sms_outbox (brand_id, phone, template, variables, purpose) "
            "VALUES (%s, '86' || %s, 'otp', '{}', 'notice') RETURNING id",
            (brand, three),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(sql)  # type: ignore[arg-type]
        cur = await conn.execute(
            "SELECT phone, source FROM sms_opt_outs WHERE brand_id = %s AND phone = ANY(%s) "
            "ORDER BY phone",
            (brand, [one, two, foreign, "86" + one, "0086" + one, "86" + two]),
        )
        kept = {r["phone"]: r["source"] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT phone FROM sms_outbox WHERE id = %s", (row["id"],))
        outbox = await cur.fetchone()
        await conn.rollback()
    assert kept == {one: "api", two: "member", foreign: "api"}, kept
    assert outbox == {"phone": three}


async def test_phones_kept_with_the_trunk_zero_become_the_mobile(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """Rows the SMS code kept before ``0137…``, ``+86 (0)137…``, ``+0086 137…`` and ``086 137…``
    were the mobile (their digits: ``0137…``, ``86013…``, ``008613…``, ``08613…``) matched
    nothing after (a review probe: an opt-out of a store manager saved as ``0137…`` no longer
    stopped the campaign, a "TD" to a message sent so found no brand, staff could not delete
    the opt-out). Migration 0144 makes them the mobile, a brand's opt-out kept once (the first)
    and its member switched off; a foreign number kept as ``00`` + its digits is left alone."""
    from app.db import migrations
    from app.sms.schemas import RepliesIn, Reply
    from app.sms.service import replies

    [sql] = [text for version, _, text in migrations() if version == 144]
    admin, marketer = await login("admin"), await login("marketer")
    brand = demo["BRAND-LUMI"]
    one, two, three, foreign = phone(), phone(), phone(), "001" + phone()  # +1 37…
    agent = await _store_with_manager(client, admin, "0" + one)
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, row_factory=dict_row
    ) as conn:
        await conn.execute(
            "INSERT INTO sms_opt_outs (brand_id, phone, source, at) VALUES "
            "(%(b)s, '0' || %(one)s, 'api', now() - interval '1 day'), "
            "(%(b)s, '860' || %(one)s, 'reply', now()), "
            "(%(b)s, '0086' || %(three)s, 'api', now()), "
            "(%(b)s, %(f)s, 'api', now())",
            {"b": brand, "one": one, "three": three, "f": foreign},
        )
        cur = await conn.execute(
            "INSERT INTO members (brand_id, phone) VALUES (%s, %s) RETURNING id", (brand, three)
        )
        member = await cur.fetchone()
        cur = await conn.execute(
            "INSERT INTO sms_outbox (brand_id, phone, template, variables, purpose) "
            "VALUES (%(b)s, '086' || %(two)s, 'otp', '{}', 'notice'), "
            "(%(b)s, %(f)s, 'otp', '{}', 'notice') RETURNING id",
            {"b": brand, "two": two, "f": foreign},
        )
        outbox = [r["id"] for r in await cur.fetchall()]
        await conn.commit()
        await conn.execute(sql)  # type: ignore[arg-type]
        await conn.commit()
        cur = await conn.execute(
            "SELECT phone, source FROM sms_opt_outs WHERE brand_id = %s AND phone = ANY(%s)",
            (brand, [one, "0" + one, "860" + one, three, "0086" + three, foreign]),
        )
        kept = {r["phone"]: r["source"] for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT phone FROM sms_outbox WHERE id = ANY(%s) ORDER BY id", (outbox,)
        )
        sent = [r["phone"] for r in await cur.fetchall()]
        assert member is not None
        cur = await conn.execute(
            "SELECT marketing_opt_out FROM members WHERE id = %s", (member["id"],)
        )
        switch = await cur.fetchone()
    assert kept == {one: "api", three: "api", foreign: "api"}, kept
    assert sent == [two, foreign] and switch == {"marketing_opt_out": True}, (sent, switch)
    made = await client.post(
        "/sms/campaigns",
        headers=marketer,
        json={
            "template_id": await _template(client, marketer),
            "audience": "store_managers",
            "filter": {"org_id": agent},
            "variables": {"season": "秋季", "discount": "7"},
            "dry_run": True,
        },
    )
    assert made.status_code == 201, made.text
    assert (made.json()["recipients"], made.json()["skipped"]) == (0, 1), made.text
    async with app.state.pool.connection() as conn:
        data = RepliesIn(replies=[Reply(phone=f"+86 (0){two}", text="TD")])
        out = await replies(conn, data, app.state.settings)
    assert out.opted_out == 1, out
    gone = await client.delete(f"/sms/opt-outs/0{three}", headers=marketer)
    assert gone.status_code == 204, gone.text
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT phone FROM sms_opt_outs WHERE brand_id = %s AND phone = ANY(%s) ORDER BY phone",
            (brand, sorted([two, three])),
        )
        assert [r["phone"] for r in await cur.fetchall()] == [two]


async def test_a_store_manager_s_td_reply_finds_the_brands_that_wrote_to_them(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: the store manager above (saved ``86137…``) got a campaign and replied "TD",
    naming no brand; the reply looked up the brands that wrote to ``137…`` while the outbox
    held ``86137…``, and was ignored. The outbox holds the phone as opt-outs do now."""
    from app.sms.schemas import RepliesIn, Reply
    from app.sms.service import replies

    admin, marketer = await login("admin"), await login("marketer")
    mobile = phone()
    agent = await _store_with_manager(client, admin, "86" + mobile)
    body = {
        "template_id": await _template(client, marketer),
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "filter": {"org_id": agent},
    }
    made = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert made.status_code == 201 and made.json()["recipients"] == 1, made.text
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT phone FROM sms_outbox WHERE campaign_id = %s", (made.json()["id"],)
        )
        assert [r["phone"] for r in await cur.fetchall()] == [mobile]
        data = RepliesIn(replies=[Reply(phone=f"+86 {mobile}", text="TD")])
        out = await replies(conn, data, app.state.settings)
    assert out.opted_out == 1, out


async def test_an_opt_out_while_a_message_is_in_flight_stops_its_retry(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: a campaign message was claimed (``sending``) when its member opted out;
    ``drop_marketing`` fails pending rows only, the gateway answered 5xx, the row went back to
    ``pending`` and the next attempt delivered it to the phone that had said stop. The sender
    now fails such a row when it claims it again, as the opt-out fails a pending one."""
    marketer = await login("marketer")
    brand = demo["BRAND-LUMI"]
    mobile = phone()
    province = await _province_of_this_test(app, brand, "西藏自治区")
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s)",
            (brand, mobile, province),
        )
    made = await client.post(
        "/sms/campaigns",
        headers=marketer,
        json={
            "template_id": await _template(client, marketer),
            "audience": "members",
            "filter": {"provinces": [province]},
            "variables": {"season": "冬季", "discount": "8"},
        },
    )
    assert made.status_code == 201 and made.json()["recipients"] == 1, made.text
    gateway = LocalGateway().start()
    try:
        config = gateway.settings(settings)
        gw = gateway_from_settings(config)
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            cur = await conn.execute(
                "UPDATE sms_outbox SET next_attempt_at = now() WHERE campaign_id = %s RETURNING id",
                (made.json()["id"],),
            )
            ids = [r["id"] for r in await cur.fetchall()]
            [row] = await sender.claim(conn, ids=ids)  # a sender has it in flight
            opted = await client.put(f"/sms/opt-outs/{mobile}", headers=marketer)
            assert opted.status_code == 204
            # the gateway answered 5xx for this attempt: a retry
            await sender.record(conn, "http", config, [(row, Result("retry", error="503"))])
            await conn.execute(
                "UPDATE sms_outbox SET next_attempt_at = now() WHERE id = ANY(%s)", (ids,)
            )
            stats = await sender.drain(conn, gw, config, ids=ids)
            cur = await conn.execute(
                "SELECT state, last_error, attempts FROM sms_outbox WHERE id = ANY(%s)", (ids,)
            )
            rows = await cur.fetchall()
        await gw.aclose()
        delivered = [m for m in gateway.messages() if m["phone"] == mobile]
    finally:
        gateway.stop()
    assert delivered == [], "a campaign message reached a phone after it opted out"
    assert stats.claimed == 0
    assert rows == [{"state": "failed", "last_error": "opted out of marketing", "attempts": 1}]


async def test_editing_a_template_does_not_spoil_a_campaign_already_queued(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: the marketer queued a campaign (it leaves at SMS_CAMPAIGN_RATE per second, so a
    big one takes a while), then edited its template for next month's campaign, adding a
    placeholder. The sender rendered the queued messages with the template as edited, and every
    one failed as not renderable. A campaign now goes out with the body it was accepted with."""
    marketer = await login("marketer")
    made = await client.post(
        "/sms/templates",
        headers=marketer,
        json={"name": f"edited_{secrets.token_hex(3)}", "body": "{season}新品上市。"},
    )
    assert made.status_code == 201, made.text
    template_id = made.json()["id"]
    brand = demo["BRAND-LUMI"]
    province = await _province_of_this_test(app, brand, "江西省")
    phones = [phone() for _ in range(2)]
    async with app.state.pool.connection() as conn:
        for p in phones:
            await conn.execute(
                "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s)",
                (brand, p, province),
            )
    campaign = await client.post(
        "/sms/campaigns",
        headers=marketer,
        json={
            "template_id": template_id,
            "audience": "members",
            "filter": {"provinces": [province]},
            "variables": {"season": "春季"},
        },
    )
    assert campaign.status_code == 201, campaign.text
    assert campaign.json()["recipients"] == 2
    edited = await client.patch(
        f"/sms/templates/{template_id}",
        headers=marketer,
        json={"body": "{season}新品上市，凭{code_word}到店领取。"},
    )
    assert edited.status_code == 200, edited.text
    gateway = LocalGateway().start()
    try:
        config = gateway.settings(settings)
        gw = gateway_from_settings(config)
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            await conn.execute(
                "UPDATE sms_outbox SET next_attempt_at = now() WHERE campaign_id = %s",
                (campaign.json()["id"],),
            )
            await sender.drain(conn, gw, config)
        await gw.aclose()
        texts = {m["phone"]: m["text"] for m in gateway.messages() if m["phone"] in phones}
    finally:
        gateway.stop()
    shown = await client.get(f"/sms/campaigns/{campaign.json()['id']}", headers=marketer)
    assert shown.json()["states"] == {"sent": 2}, shown.json()["states"]
    assert set(texts) == set(phones)
    assert all("春季新品上市。" in t and "领取" not in t for t in texts.values()), texts


async def test_an_sms_template_deleted_twice_at_once_is_deleted_once(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two deletions of one SMS template at once both read it before either deleted
    it, and both answered 204 with an ``sms.template.delete`` audit row each. The template's
    row is locked before the in-use check now: one 204, one 404, one audit row."""
    marketer = await login("marketer")
    made = await client.post(
        "/sms/templates",
        headers=marketer,
        json={"name": f"race_{secrets.token_hex(3)}", "body": "hello {x}"},
    )
    assert made.status_code == 201, made.text
    tid = made.json()["id"]
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM sms_templates WHERE id = %s FOR UPDATE",
        (tid,),
        "DELETE",
        f"/sms/templates/{tid}",
        marketer,
    )
    await deleted_once(app, answers, "sms_template", tid, "sms.template.delete")


async def test_an_sms_template_patch_of_its_own_body_writes_no_audit_row(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: ``PATCH /sms/templates/{id}`` with the body (and provider id) it already has
    wrote an ``sms.template.update`` audit row and moved ``updated_at``: ``update_template``
    audited whatever fields were sent. README: a call that changes nothing answers 200 with
    the entity as it is and writes no row."""
    marketer = await login("marketer")
    made = await client.post(
        "/sms/templates",
        headers=marketer,
        json={"name": f"same_{secrets.token_hex(3)}", "body": "{season}新品上市"},
    )
    assert made.status_code == 201, made.text
    kept = made.json()
    template_id = kept["id"]
    for body in ({}, {"body": kept["body"]}, {"provider_template_id": None}):
        same = await client.patch(f"/sms/templates/{template_id}", headers=marketer, json=body)
        assert same.status_code == 200, same.text
        assert same.json() == kept, body
    assert await audit_rows(app, "sms_template", template_id, "sms.template.update") == []
    changed = await client.patch(
        f"/sms/templates/{template_id}", headers=marketer, json={"body": "{season}上新"}
    )
    assert changed.status_code == 200 and changed.json()["body"] == "{season}上新", changed.text
    (row,) = await audit_rows(app, "sms_template", template_id, "sms.template.update")
    assert row["after"] == {"body": "{season}上新"}


async def test_staff_below_the_brand_list_only_their_store_managers_opt_outs(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``GET /sms/opt-outs`` listed the whole brand's opt-out list to every holder of
    ``sms.campaigns`` — an agent's and a store's ``org_admin`` included — with each member's
    phone (``136****1234``), ``source: member`` and when the member switched marketing off (or
    erased the membership: the number stays on the list), though staff below the brand see no
    member (README "Who sees members"). Below the brand the list holds what its own campaigns
    reach: its store managers' opt-outs, never a member's."""
    from tests.points_support import member_client
    from tests.test_members_auth import new_phone, sign_in

    brand, member_phone = demo["BRAND-LUMI"], new_phone("136")
    headers, _ = await sign_in(client, app, brand, member_phone)
    switched = await client.patch("/members/me", headers=headers, json={"marketing_opt_out": True})
    assert switched.status_code == 200, switched.text
    async with member_client(app) as mc:  # the erasure keeps the member's "stop" on the list
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    # a manager of the Hangzhou store (the Zhejiang agent's), saved as POST /users takes it
    manager = phone()
    made = await client.post(
        "/users",
        headers=await login("admin"),
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": f"mgr_{secrets.token_hex(3)}",
            "password": "Manager-pass-12345",
            "roles": ["store_clerk"],
            "phone": f"86{manager}",
        },
    )
    assert made.status_code == 201, made.text
    agent = await login("agent_admin")
    assert (await client.put(f"/sms/opt-outs/{manager}", headers=agent)).status_code == 204

    def masked(number: str) -> str:
        return number[:3] + "****" + number[-4:]

    async def listed(user: str) -> list[dict[str, Any]]:
        answer = await client.get(
            "/sms/opt-outs", headers=await login(user), params={"per_page": 200}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]  # type: ignore[no-any-return]

    brand_view = {i["phone"]: i["source"] for i in await listed("marketer")}
    assert brand_view[masked(member_phone)] == "member"
    assert brand_view[masked(manager)] == "api"
    # other tests opt out managers' and store contacts' phones of these stores too: which of
    # the list is this test's manager, and never a member
    for user in ("agent_admin", "store_manager"):
        items = await listed(user)
        assert [i for i in items if i["source"] == "member"] == [], user
        ours = [(i["phone"], i["source"]) for i in items if i["phone"] == masked(manager)]
        assert ours == [(masked(manager), "api")], user
    theirs = await listed("gd_admin")  # another agent's stores: none of its managers
    assert [i for i in theirs if i["source"] == "member" or i["phone"] == masked(manager)] == []


async def test_a_store_managers_campaign_reaches_the_stores_contact(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: seed 1.12 "短信形式向门店负责人发送促销活动通知". A store's person in charge is
    recorded on the store itself (``contact_phone`` of ``POST /orgs`` and of the ERP's
    ``/orgs/import``, which brings stores without any user), but the store-manager audience
    was only the stores' *users* with a phone: such a store's notice reached nobody (dry run: 0
    recipients). The contact phone is in the audience, the dry run's count and the opt-out
    scope, in the outbox's form, and once when a user of the store has it too."""
    admin, marketer, agent = (
        await login("admin"),
        await login("marketer"),
        await login("agent_admin"),
    )
    n, contact = secrets.token_hex(3), phone()
    store = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": f"Contact store {n}",
            "erp_code": f"CONTACT-ST-{n}",
            "parent_id": demo["AGENT-ZJ"],
            "contact_name": "王店长",
            "contact_phone": f"+86 {contact[:3]} {contact[3:7]} {contact[7:]}",
        },
    )
    assert store.status_code == 201, store.text
    body = {
        "template_id": await _template(client, marketer),
        "audience": "store_managers",
        "filter": {"org_id": store.json()["id"]},
        "variables": {"season": "秋季", "discount": "7"},
        "dry_run": True,
    }
    dry = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert dry.status_code == 201 and dry.json()["recipients"] == 1, dry.text
    async with app.state.pool.connection() as conn:  # the manager's user has the phone too
        await conn.execute(
            "INSERT INTO users (org_id, username, password_hash, phone) VALUES (%s, %s, 'x', %s)",
            (store.json()["id"], f"contact_{n}", f"86{contact}"),
        )
    sent = await client.post("/sms/campaigns", headers=agent, json={**body, "dry_run": False})
    assert sent.status_code == 201 and sent.json()["recipients"] == 1, sent.text
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT phone FROM sms_outbox WHERE campaign_id = %s", (sent.json()["id"],)
        )
        assert [r["phone"] for r in await cur.fetchall()] == [contact]
    assert (await client.put(f"/sms/opt-outs/{contact}", headers=agent)).status_code == 204
    listed = await client.get("/sms/opt-outs", headers=agent, params={"per_page": 200})
    assert listed.status_code == 200, listed.text
    assert f"{contact[:3]}****{contact[-4:]}" in [i["phone"] for i in listed.json()["items"]]


async def test_a_campaign_retry_with_its_variables_in_another_order_answers_the_first(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: a marketing tool re-sent a campaign whose answer was lost, its body kept as JSON
    (a jsonb column sorts an object's keys), so ``variables`` came back in another order — the
    same request (a JSON object has no order), yet 409 ``client_id_reused``: the fingerprint
    hashed the object in the order sent. A campaign kept before (its fingerprint of the
    variables as sent) is still answered for its retry; another value is still 409."""
    marketer = await login("marketer")
    template_id = await _template(client, marketer)
    body = {
        "template_id": template_id,
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7"},
        "client_id": f"c-{secrets.token_hex(4)}",
    }
    first = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert first.status_code == 201, first.text
    swapped = {**body, "variables": {"discount": "7", "season": "秋季"}}
    again = await client.post("/sms/campaigns", headers=marketer, json=swapped)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    other = {**body, "variables": {"discount": "8", "season": "秋季"}}
    assert_error(
        await client.post("/sms/campaigns", headers=marketer, json=other), 409, "client_id_reused"
    )
    # kept before: the fingerprint of the variables in the order they were sent
    legacy = msgspec.json.decode(msgspec.json.encode(body), type=CampaignIn)
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE sms_campaigns SET client_hash = %s WHERE id = %s",
            (idempotency.fingerprint(legacy, order=None), first.json()["id"]),
        )
    assert idempotency.fingerprint(legacy) != idempotency.fingerprint(legacy, order=None)
    retried = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert retried.status_code == 200 and retried.json()["id"] == first.json()["id"], retried.text


async def test_a_store_manager_saved_with_a_trunk_zero_or_0086_is_the_mobile(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: a store manager's phone saved as ``+86 (0)137…`` (the trunk zero in brackets),
    ``+0086 137…`` or ``086 137…`` was made ``86013…``, ``008613…``, ``08613…`` by
    ``outbox_phone`` (``normalise_phone`` knew none of them): the manager's opt-out of the mobile
    missed it and the next campaign still texted them. They are the mobile now, for members
    too; a number written with China's country code that is no mobile is no phone (400
    ``invalid_phone``), never its bare digits."""
    from app.errors import ValidationFailed
    from app.members.phones import normalise_phone
    from app.sms.outbox import outbox_phone

    admin, marketer = await login("admin"), await login("marketer")
    mobile = phone()
    for form in ("+86 (0){m}", "+0086 {m}", "086 {m}", "+86 0{m}", "0086-0{m}", "0{m}"):
        assert outbox_phone(form.format(m=mobile)) == mobile, form
    for form in ("+0086 {m}", "086-{m}", "+860{m}", "８６０{m}"):
        assert normalise_phone(form.format(m=mobile)) == mobile, form
    for landline in ("+86 (0)755 8888 1234", "0086 10 6552 9988", "+86 0{m}1"):
        with pytest.raises(ValidationFailed):
            outbox_phone(landline.format(m=mobile))
    template_id = await _template(client, marketer)
    for form in ("+86 (0){m}", "+0086 {m}", "086 {m}"):
        mobile = phone()
        agent = await _store_with_manager(client, admin, form.format(m=mobile))
        assert (await client.put(f"/sms/opt-outs/{mobile}", headers=marketer)).status_code == 204
        made = await client.post(
            "/sms/campaigns",
            headers=marketer,
            json={
                "template_id": template_id,
                "audience": "store_managers",
                "filter": {"org_id": agent},
                "variables": {"season": "秋季", "discount": "7"},
            },
        )
        assert made.status_code == 201, made.text
        assert (made.json()["recipients"], made.json()["skipped"]) == (0, 1), (form, made.text)


async def test_braces_that_are_no_placeholder_are_refused(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: variables are named ``[A-Za-z0-9_.-]``, placeholders ``[A-Za-z_][A-Za-z0-9_]``:
    a body ``会员专享{discount-rate}折优惠`` or ``{季节}新品上市`` was taken with no placeholder,
    a campaign giving ``discount-rate`` was accepted and every SMS went out with the braces. A
    template body (created or edited) with braces that are no placeholder is 400
    ``validation_failed`` naming them; a campaign variable no placeholder takes is 400 (but
    ``lang``); a template saved before with such braces is 422 ``missing_variables``."""
    marketer = await login("marketer")
    for body in (
        "会员专享{discount-rate}折优惠",
        "{季节}新品上市",
        "满{}减",
        "满100减{20",
        "{{season}}",
    ):
        refused = await client.post(
            "/sms/templates",
            headers=marketer,
            json={"name": f"br_{secrets.token_hex(3)}", "body": body},
        )
        error = assert_error(refused, 400, "validation_failed")
        assert error["details"][0]["field"] == "body", error
    error = assert_error(
        await client.post(
            "/sms/templates",
            headers=marketer,
            json={"name": f"br_{secrets.token_hex(3)}", "body": "{季节}新品{discount-rate}"},
        ),
        400,
        "validation_failed",
    )
    assert "{季节}" in error["message"] and "{discount-rate}" in error["message"], error
    template_id = await _template(client, marketer)
    edited = await client.patch(
        f"/sms/templates/{template_id}", headers=marketer, json={"body": "{季节}上新{season}"}
    )
    assert_error(edited, 400, "validation_failed")
    body = {
        "template_id": template_id,
        "audience": "store_managers",
        "variables": {"season": "秋季", "discount": "7", "discount-rate": "8"},
        "dry_run": True,
    }
    error = assert_error(
        await client.post("/sms/campaigns", headers=marketer, json=body), 400, "validation_failed"
    )
    assert error["details"][0]["field"] == "variables.discount-rate", error
    lang = {**body, "variables": {"season": "autumn", "discount": "7", "lang": "en"}}
    assert (await client.post("/sms/campaigns", headers=marketer, json=lang)).status_code == 201
    async with app.state.pool.connection() as conn:  # saved before braces were checked
        await conn.execute(
            "UPDATE sms_templates SET body = '{季节}上新{season}' WHERE id = %s", (template_id,)
        )
    error = assert_error(
        await client.post(
            "/sms/campaigns", headers=marketer, json={**body, "variables": {"season": "秋季"}}
        ),
        422,
        "missing_variables",
    )
    assert error["details"]["missing"] == ["{季节}"], error


async def test_a_blank_campaign_variable_is_a_missing_one(client: Any, login: Any) -> None:
    """A probe: a variable given as ``""`` (or ``" "``) filled its placeholder with nothing,
    ``凭会员码到店享折。`` went out. A blank value (spaces, zero-width marks only) is no value:
    422 ``missing_variables`` naming the placeholders."""
    marketer = await login("marketer")
    body = {
        "template_id": await _template(client, marketer),
        "audience": "store_managers",
        "dry_run": True,
    }
    for season, discount, missing in (
        ("", " ", ["discount", "season"]),
        ("\u3000", "7", ["season"]),
        ("秋季", "\u200b", ["discount"]),
    ):
        answer = await client.post(
            "/sms/campaigns",
            headers=marketer,
            json={**body, "variables": {"season": season, "discount": discount}},
        )
        error = assert_error(answer, 422, "missing_variables")
        assert error["details"]["missing"] == missing, error
    given = {**body, "variables": {"season": "秋季", "discount": "7"}}
    assert (await client.post("/sms/campaigns", headers=marketer, json=given)).status_code == 201
