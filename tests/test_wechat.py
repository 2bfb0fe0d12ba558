"""WeChat service accounts (SPEC W5), app/wechat/ and app/web/wechat_pages.py, against a real
local WeChat (tests/wechat_server.py: an HTTP server speaking WeChat's protocol) and the real
PostgreSQL and Redis.

The brand's account: write-only secret (sealed, never answered, logged or audited), brand
staff only, another brand's never reachable. Sign-in: the whole OAuth round (authorize →
WeChat's redirect with a code → callback → signed in), the state bound to the browser and used
once, an openid bound by the SMS sign-in that follows, unbound by the member, gone with an
erasure, never crossing brands. Template messages: queued once per cause for bound members of
a brand with a template, sent with one access token for many, refreshed on 40001, each errcode
class (sent, failed for good, retried, dead), a record that cannot be made failed while the
others go, two senders never sending one message twice, the brand's delivery log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import psycopg
import pytest
from Crypto.Cipher import AES
from psycopg.rows import dict_row

from app.members.principal import issue_token
from app.web import session, wechat_pages
from app.webhooks import signing
from app.wechat import account, bindings, outbox, sender
from app.wechat.account import unseal
from app.wechat.gateway import Outcome, TemplateMessage, WechatGateway
from tests import steady
from tests.helpers import assert_error, onboarded_brand
from tests.points_support import member_client, new_member
from tests.race_support import lock_waiters
from tests.sms_gateway import sms_gateway  # noqa: F401 (a fixture)
from tests.test_h5_members import code_for, field, give, new_gift, send_code
from tests.wechat_server import FakeWechat, running_wechat

TEMPLATES = {
    "redemption": "TPL_redeem",
    "points_reminder": "TPL_points",
    "complaint_reply": "TPL_c",
}


@pytest.fixture
def wechat(app: Any, client: Any) -> Iterator[FakeWechat]:
    """The local WeChat, and the app pointed at it (fast retries) for the test."""
    original = app.state.settings
    with running_wechat() as fake:
        app.state.settings = msgspec.structs.replace(
            original,
            wechat_api_url=fake.base,
            wechat_open_url=fake.base,
            wechat_timeout=1.0,
            wechat_backoff_seconds=0.01,
            wechat_backoff_max_seconds=0.02,
            wechat_lease_seconds=10,
        )
        try:
            yield fake
        finally:
            app.state.settings = original


@pytest.fixture
async def aconn(settings: Any) -> AsyncIterator[Any]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        yield conn


async def _account(
    client: Any, headers: dict[str, str], fake: FakeWechat, **fields: Any
) -> tuple[str, str]:
    """A fresh account of the caller's brand, known to the fake: (app id, secret)."""
    app_id, secret = "wx" + secrets.token_hex(8), secrets.token_hex(16)
    fake.add_app(app_id, secret)
    body = {"app_id": app_id, "app_secret": secret, "templates": TEMPLATES, "enabled": True}
    saved = await client.put("/wechat/account", headers=headers, json={**body, **fields})
    assert saved.status_code == 200, saved.text
    return app_id, secret


async def _bind(app: Any, brand: int, member: int, openid: str) -> None:
    """``openid`` of the brand's account's app bound to the member."""
    async with app.state.pool.connection() as conn:
        app_id = await account.app_id_of(conn, brand)
        assert app_id is not None
        assert await bindings.bind(conn, brand, member, openid, app_id=app_id)


async def _enqueue(app: Any, brand: int, member: int, cause: str, **data: str) -> int:
    async with app.state.pool.connection() as conn:
        made = await outbox.enqueue(
            conn,
            brand_id=brand,
            member_id=member,
            kind="redemption",
            cause_key=cause,
            data=data or {"first": "hello", "keyword1": "Thermos"},
            url="https://example.com/member/codes",
        )
        outbox.discard(conn)  # no job: the test drains
    return made


async def _drain(app: Any, conn: Any) -> sender.Stats:
    settings = app.state.settings
    gateway = WechatGateway(settings, app.state.redis)
    try:
        return await sender.drain(conn, gateway, settings)
    finally:
        await gateway.aclose()


async def _row(app: Any, message_id: int) -> dict[str, Any]:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT * FROM wechat_messages WHERE id = %s", (message_id,))
        ).fetchone()
    assert row is not None
    return row  # type: ignore[no-any-return]


async def _bound_member(app: Any, brand: int, fake: FakeWechat, **fields: Any) -> tuple[int, str]:
    member, _, _ = await new_member(app, brand, **fields)
    openid = fake.user("o" + secrets.token_hex(12))
    await _bind(app, brand, member, openid)
    return member, openid


async def _oauth(h5: httpx.AsyncClient, fake: FakeWechat, brand: int, openid: str) -> str:
    """Tap "sign in with WeChat", let WeChat's page answer: the callback's path and query."""
    started = await h5.get("/member/wechat", params={"brand": brand})
    assert started.status_code == 303, started.text
    to = started.headers["location"]
    assert to.startswith(fake.base + "/connect/oauth2/authorize?") and to.endswith(
        "#wechat_redirect"
    )
    query = parse_qs(urlsplit(to).query)
    assert query["scope"] == ["snsapi_base"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/member/wechat/callback"]
    async with httpx.AsyncClient() as browser:  # WeChat's own page, inside WeChat
        answer = await browser.get(to.partition("#")[0], headers={"X-Wechat-User": openid})
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert parse_qs(back.query)["state"] == query["state"]
    return f"{back.path}?{back.query}"


# -- the account -------------------------------------------------------------------------------


async def test_the_account_s_secret_is_write_only_and_changes_are_audited(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await login("admin")
    app_id, secret = await _account(client, admin, wechat)
    shown = await client.get("/wechat/account", headers=admin)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["app_id"] == app_id and body["secret_set"] is True and body["enabled"] is True
    assert body["templates"] == TEMPLATES and secret not in shown.text
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT secret_sealed, templates::text AS t FROM wechat_accounts "
                "WHERE brand_id = %s",
                (demo["BRAND-LUMI"],),
            )
        ).fetchone()
        audits = await (
            await conn.execute(
                "SELECT before::text AS b, after::text AS a FROM audit_log "
                "WHERE entity = 'wechat_account' AND entity_id = %s",
                (str(demo["BRAND-LUMI"]),),
            )
        ).fetchall()
    assert secret.encode() not in bytes(row["secret_sealed"])
    assert unseal(app.state.settings, bytes(row["secret_sealed"])) == secret
    assert audits and all(secret not in (a["a"] or "") + (a["b"] or "") for a in audits)
    # a later save without the secret keeps it; with a new app id it is required
    kept = await client.put(
        "/wechat/account",
        headers=admin,
        json={"app_id": app_id, "templates": {"redemption": "T2"}, "enabled": False},
    )
    assert kept.status_code == 200 and kept.json()["secret_set"] is True
    assert kept.json()["templates"] == {"redemption": "T2", "points_reminder": None,
                                        "complaint_reply": None}  # fmt: skip
    other = {"app_id": "wx" + secrets.token_hex(8), "enabled": True}
    error = assert_error(await client.put("/wechat/account", headers=admin, json=other), 400)
    assert error["code"] == "validation_failed" and "app_secret" in error["message"]
    for bad in (
        {"app_id": "wx12", "app_secret": secret},
        {"app_id": "WX" + "a" * 16, "app_secret": secret},
        {"app_id": app_id, "app_secret": "short"},
        {"app_id": app_id, "templates": {"unknown": "x"}},
        {"app_id": app_id, "templates": {"redemption": "bad id!"}},
        {"app_id": app_id, "extra": 1},
    ):
        assert_error(await client.put("/wechat/account", headers=admin, json=bad), 400)
    assert all(secret not in record.getMessage() for record in caplog.records)
    # who may: brand staff with wechat.manage (the marketer too), nobody else
    assert (await client.get("/wechat/account", headers=await login("marketer"))).status_code == 200
    assert_error(await client.get("/wechat/account"), 401)
    assert_error(await client.get("/wechat/account", headers=await login("clerk")), 403)
    manager = await login("store_manager")
    assert_error(await client.put("/wechat/account", headers=manager, json=other), 403)
    removed = await client.delete("/wechat/account", headers=admin)
    assert removed.status_code == 204, removed.text
    assert (await client.get("/wechat/account", headers=admin)).json()["configured"] is False
    assert_error(
        await client.delete("/wechat/account", headers=admin), 404, "wechat_not_configured"
    )


async def _account_audits(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    got = await client.get("/audit", headers=headers, params={"entity": "wechat_account"})
    assert got.status_code == 200, got.text
    return got.json()["items"]  # type: ignore[no-any-return]


async def test_an_account_saved_unchanged_is_neither_written_nor_audited(
    client: Any, login: Any
) -> None:
    """README: a call that changes nothing writes no audit row (a probe: saving the account
    page again as it was wrote a second ``update`` row, and moved ``updated_at`` and
    ``updated_by``). The same values, without a secret or with the one stored, change nothing;
    a new secret, a template or ``enabled`` does, and is audited."""
    _, admin = await onboarded_brand(client, login)
    secret = secrets.token_hex(16)
    body = {"app_id": "wx" + secrets.token_hex(8), "templates": TEMPLATES, "enabled": True}
    first = await client.put("/wechat/account", headers=admin, json={**body, "app_secret": secret})
    assert first.status_code == 200, first.text
    for same in (body, {**body, "app_secret": secret}, {**body, "templates": {**TEMPLATES}}):
        again = await client.put("/wechat/account", headers=admin, json=same)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()  # updated_at, updated_by kept
    assert [r["action"] for r in await _account_audits(client, admin)] == ["create"]
    for changed in (
        {**body, "app_secret": secrets.token_hex(16)},
        {**body, "templates": {"redemption": "TPL_other"}},
        {**body, "enabled": False},
    ):
        saved = await client.put("/wechat/account", headers=admin, json=changed)
        assert saved.status_code == 200, saved.text
    rows = await _account_audits(client, admin)
    assert [r["action"] for r in rows] == ["update"] * 3 + ["create"]
    assert rows[2]["after"]["secret_changed"] is True
    assert rows[1]["after"]["templates"]["redemption"] == "TPL_other"
    assert rows[0]["before"]["enabled"] is True and rows[0]["after"]["enabled"] is False


async def test_first_saves_at_once_audit_one_create(client: Any, login: Any) -> None:
    """A probe: ``FOR UPDATE`` locks no account before the first save — saves sent at once each
    read none and each audited a ``create`` (the later ones hiding what they overwrote). The
    brand's lock comes first: the same values saved four times at once are one ``create``."""
    _, admin = await onboarded_brand(client, login)
    body = {"app_id": "wx" + secrets.token_hex(8), "app_secret": secrets.token_hex(16)}
    saves = await asyncio.gather(
        *(client.put("/wechat/account", headers=admin, json=body) for _ in range(4))
    )
    assert all(r.status_code == 200 for r in saves), [r.text for r in saves]
    assert [r["action"] for r in await _account_audits(client, admin)] == ["create"]


async def test_a_new_app_id_unbinds_the_old_app_s_openids(
    client: Any, login: Any, app: Any, wechat: FakeWechat, aconn: Any
) -> None:
    """A probe: an openid is one app's, and after the brand connected another service account
    the old app's openids still counted — the profile said "linked", messages were queued and
    sent to openids the new app does not know, WeChat sign-in through it found nobody. A new
    app id deletes the brand's bindings (audited as a count, no openid); the messages waiting
    for them fail as a member's who unbound. The same app id set again keeps them; another one,
    set after the account was removed, does not."""
    brand, admin = await onboarded_brand(client, login)
    await _account(client, admin, wechat)
    (member, old), (_, other) = [await _bound_member(app, brand["id"], wechat) for _ in range(2)]
    waiting = await _enqueue(app, brand["id"], member, f"old-{secrets.token_hex(4)}")
    assert waiting
    app_id, secret = await _account(client, admin, wechat)  # another service account
    async with app.state.pool.connection() as conn:
        assert [await bindings.member_of(conn, brand["id"], o) for o in (old, other)] == [None] * 2
    assert await _enqueue(app, brand["id"], member, f"new-{secrets.token_hex(4)}") == 0
    [changed, *_] = await _account_audits(client, admin)
    assert (changed["action"], changed["after"]["bindings_removed"]) == ("update", 2), changed
    assert old not in json.dumps(changed) and other not in json.dumps(changed)
    await _drain(app, aconn)
    row = await _row(app, waiting)
    assert row["state"] == "failed" and "not bound" in row["last_error"], row
    assert wechat.sent_to(old) == []
    # bound through the new app; the account removed and set again: the same app keeps it
    new = wechat.user("o" + secrets.token_hex(12))
    await _bind(app, brand["id"], member, new)
    body = {"app_id": app_id, "app_secret": secret, "templates": TEMPLATES, "enabled": True}
    assert (await client.delete("/wechat/account", headers=admin)).status_code == 204
    assert (await client.put("/wechat/account", headers=admin, json=body)).status_code == 200
    async with app.state.pool.connection() as conn:
        assert await bindings.member_of(conn, brand["id"], new) == member
    again = await _enqueue(app, brand["id"], member, f"again-{secrets.token_hex(4)}")
    await _drain(app, aconn)
    assert (await _row(app, again))["state"] == "sent" and len(wechat.sent_to(new)) == 1
    # removed, then another app id set: its bindings are the old app's
    assert (await client.delete("/wechat/account", headers=admin)).status_code == 204
    await _account(client, admin, wechat)
    async with app.state.pool.connection() as conn:
        assert await bindings.member_of(conn, brand["id"], new) is None
    [created, *_] = await _account_audits(client, admin)
    assert (created["action"], created["after"]["bindings_removed"]) == ("create", 1), created


async def test_another_brand_never_reads_or_changes_the_account_or_its_log(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat
) -> None:
    admin = await login("admin")
    app_id, _ = await _account(client, admin, wechat)
    member, _ = await _bound_member(app, demo["BRAND-LUMI"], wechat)
    made = await _enqueue(app, demo["BRAND-LUMI"], member, f"iso-{secrets.token_hex(4)}")
    assert made
    brand_b, other = await onboarded_brand(client, login)
    theirs = await client.get("/wechat/account", headers=other)
    assert theirs.status_code == 200 and theirs.json()["configured"] is False
    assert theirs.json()["brand_id"] == brand_b["id"]
    b_app, _ = await _account(client, other, wechat)  # their own, beside ours
    assert (await client.get("/wechat/account", headers=admin)).json()["app_id"] == app_id
    assert (await client.get("/wechat/account", headers=other)).json()["app_id"] == b_app
    log = await client.get("/wechat/messages", headers=other, params={"per_page": 200})
    assert log.status_code == 200 and made not in {m["id"] for m in log.json()["items"]}
    ours = await client.get("/wechat/messages", headers=admin, params={"per_page": 200})
    assert made in {m["id"] for m in ours.json()["items"]}
    assert (await client.delete("/wechat/account", headers=other)).status_code == 204
    assert (await client.get("/wechat/account", headers=admin)).json()["app_id"] == app_id


# -- signing in --------------------------------------------------------------------------------


async def test_a_bound_member_is_signed_in_by_the_whole_oauth_round(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    brand = demo["BRAND-LUMI"]
    _, secret = await _account(client, await login("admin"), wechat)
    member, openid = await _bound_member(app, brand, wechat)
    async with member_client(app) as h5:
        page = await h5.get("/member/login", params={"brand": brand})
        assert page.status_code == 200 and 'id="wechat-sign-in"' in page.text
        back = await _oauth(h5, wechat, brand, openid)
        signed = await h5.get(back)
        assert signed.status_code == 303 and signed.headers["location"] == "/member"
        assert h5.cookies.get("tc_member")
        home = await h5.get("/member")
        assert home.status_code == 200 and 'id="balance"' in home.text
        again = await h5.get(back)  # the same answer once more: the state is spent
        assert again.status_code == 400 and "tc_member" not in again.headers.get("set-cookie", "")
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT last_login_at FROM members WHERE id = %s", (member,))
        ).fetchone()
    assert row["last_login_at"] is not None
    assert all(secret not in record.getMessage() for record in caplog.records)


async def test_the_state_is_this_browser_s_used_once_and_short_lived(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat
) -> None:
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    _, openid = await _bound_member(app, brand, wechat)
    async with member_client(app) as h5, member_client(app) as attacker:
        back = await _oauth(h5, wechat, brand, openid)
        stolen = await attacker.get(back)  # another browser: no state cookie of this one
        assert stolen.status_code == 400 and not attacker.cookies.get("tc_member")
        state = parse_qs(urlsplit(back).query)["state"][0]
        other = ("A" if state[0] != "A" else "B") + state[1:]
        forged = await h5.get(back.replace(state, other))
        assert forged.status_code == 400
        # expired: the state left Redis
        back = await _oauth(h5, wechat, brand, openid)
        state = parse_qs(urlsplit(back).query)["state"][0]
        digest = hashlib.sha256(state.encode()).hexdigest()
        await app.state.redis.pexpire(
            f"{app.state.settings.redis_namespace}:wechat:oauth:{digest}", 1
        )
        await asyncio.sleep(0.01)
        assert (await h5.get(back)).status_code == 400
        # a code WeChat does not know: refused, nobody signed in
        back = await _oauth(h5, wechat, brand, openid)
        code = parse_qs(urlsplit(back).query)["code"][0]
        refused = await h5.get(back.replace(code, "f" * 32))
        assert refused.status_code == 400 and not h5.cookies.get("tc_member")
        no_code = await h5.get("/member/wechat/callback", params={"state": "abc"})
        assert no_code.status_code == 400


async def test_starting_a_sign_in_keeps_only_a_real_claim_ticket_and_is_limited_per_address(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat
) -> None:
    """A probe: ``GET /member/wechat?claim=…`` kept up to 2,000 characters of anything in Redis
    for minutes, for anyone, as often as asked. Now a ``claim`` that is no claim ticket of ours
    is not carried, and one address starts ``member_wechat_ip_max`` sign-ins an hour (429 with
    Retry-After beyond; another address is not held up)."""
    brand = demo["BRAND-LUMI"]
    settings = app.state.settings
    await _account(client, await login("admin"), wechat)
    ticket = session.issue_ticket(settings, "SERIAL0000000000", "12345678", brand)

    async def kept_claim(h5: httpx.AsyncClient, claim: str) -> str:
        started = await h5.get("/member/wechat", params={"brand": brand, "claim": claim})
        assert started.status_code == 303, started.text
        state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
        kept = await app.state.redis.get(wechat_pages._state_key(settings, state))
        return str(json.loads(kept)["claim"])

    async with member_client(app) as h5:
        assert await kept_claim(h5, ticket) == ticket
        assert await kept_claim(h5, "x" * 2000) == ""
        assert await kept_claim(h5, ticket[:-4] + "AAAA") == ""  # not sealed by us
    ip = "203.0.113." + str(secrets.randbelow(250) + 1)
    key = f"{settings.redis_namespace}:member:wechat-ip:{ip}"
    await app.state.redis.set(key, settings.member_wechat_ip_max, ex=600)
    try:
        async with member_client(app, ip) as crowded, member_client(app) as elsewhere:
            refused = await crowded.get("/member/wechat", params={"brand": brand})
            assert refused.status_code == 429, refused.text
            assert 0 < int(refused.headers["retry-after"]) <= 600
            assert "wechat" not in refused.headers.get("location", "")
            fine = await elsewhere.get("/member/wechat", params={"brand": brand})
            assert fine.status_code == 303, fine.text
    finally:
        await app.state.redis.delete(key)


async def test_an_unbound_wechat_is_bound_by_the_sms_sign_in_that_follows(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    wechat: FakeWechat,
    sms_gateway: Any,  # noqa: F811
) -> None:
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    openid = wechat.user("o" + secrets.token_hex(12))
    phone = steady.phone("137")
    async with member_client(app) as h5:
        back = await _oauth(h5, wechat, brand, openid)
        answer = await h5.get(back)
        assert answer.status_code == 303 and not h5.cookies.get("tc_member")
        assert answer.headers["location"].startswith(f"/member/login?brand={brand}")
        page = await send_code(h5, brand, phone)
        login_page = await h5.get("/member/login", params={"brand": brand})
        assert 'id="wechat-bind"' in login_page.text
        body = {"csrf": field(page, "csrf"), "brand": brand, "phone": phone,
                "code": await code_for(phone), "claim": ""}  # fmt: skip
        signed = await h5.post("/member/login", data=body)
        assert signed.status_code == 303, signed.text
        async with app.state.pool.connection() as conn:
            member = await (
                await conn.execute("SELECT id FROM members WHERE phone = %s", (phone,))
            ).fetchone()
            assert await bindings.member_of(conn, brand, openid) == member["id"]
        profile = await h5.get("/member/profile")
        assert 'data-bound="true"' in profile.text
        # the member's copy lists it
        export = await client.get(
            "/members/me/export",
            headers={"Authorization": "Bearer " + str(h5.cookies.get("tc_member"))},
        )
        assert export.json()["wechat_binding"]["openid"] == openid
    async with member_client(app) as phone2:  # next time, WeChat alone signs in
        signed = await phone2.get(await _oauth(phone2, wechat, brand, openid))
        assert signed.status_code == 303 and signed.headers["location"] == "/member"
        profile = await phone2.get("/member/profile")
        unbound = await phone2.post(
            "/member/wechat/unbind", data={"csrf": field(profile.text, "csrf")}
        )
        assert unbound.status_code == 200, unbound.text
        forged = await phone2.post("/member/wechat/unbind", data={"csrf": "x"})
        assert forged.status_code == 403
    async with app.state.pool.connection() as conn:
        assert await bindings.member_of(conn, brand, openid) is None


async def _sign_in_by_sms(h5: httpx.AsyncClient, brand: int, phone: str) -> None:
    page = await send_code(h5, brand, phone)
    body = {"csrf": field(page, "csrf"), "brand": brand, "phone": phone,
            "code": await code_for(phone), "claim": ""}  # fmt: skip
    signed = await h5.post("/member/login", data=body)
    assert signed.status_code == 303, signed.text
    assert "tc_wx_bind" not in h5.cookies  # spent, bound or not


async def test_an_openid_waiting_from_the_old_app_is_not_bound_after_an_app_change(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    wechat: FakeWechat,
    sms_gateway: Any,  # noqa: F811
) -> None:
    """A review: a new app id deletes the brand's bindings (an openid is one app's), but the
    openid an OAuth round through the old app left waiting in ``tc_wx_bind`` (15 minutes) was
    bound by the SMS sign-in that followed the switch: the old app's openid under the new app
    (messages to it fail 40003, the profile said linked). The cookie carries the app id; the
    member is signed in, not linked, and the sign-in page offers WeChat (the new app), not the
    "your phone links your WeChat" note. A cookie sealed before it carried the app id binds
    nothing."""
    brand = demo["BRAND-LUMI"]
    admin = await login("admin")
    await _account(client, admin, wechat)  # app A
    openid = wechat.user("o" + secrets.token_hex(12))
    async with member_client(app) as h5:
        answer = await h5.get(await _oauth(h5, wechat, brand, openid))  # through app A
        assert answer.status_code == 303 and not h5.cookies.get("tc_member")
        await _account(client, admin, wechat)  # the brand switches to app B
        page = await h5.get("/member/login", params={"brand": brand})
        assert 'id="wechat-sign-in"' in page.text and 'id="wechat-bind"' not in page.text
        await _sign_in_by_sms(h5, brand, steady.phone("137"))
        profile = await h5.get("/member/profile")
        assert 'data-bound="false"' in profile.text
    async with app.state.pool.connection() as conn:
        assert await bindings.member_of(conn, brand, openid) is None, "app A's openid bound"
    settings = app.state.settings
    old = session.seal(settings, "wechat-bind", [brand, openid, None, int(time.time()) + 600])
    async with member_client(app) as h5:  # sealed before the app id was in it
        h5.cookies.set("tc_wx_bind", old, domain="testserver.local")
        page = await h5.get("/member/login", params={"brand": brand})
        assert 'id="wechat-sign-in"' in page.text and 'id="wechat-bind"' not in page.text
        await _sign_in_by_sms(h5, brand, steady.phone("137"))
    async with app.state.pool.connection() as conn:
        assert await bindings.member_of(conn, brand, openid) is None


async def test_a_bind_and_a_save_with_another_app_id_at_once_leave_no_old_openid(
    client: Any, login: Any, app: Any, demo: Any, settings: Any, wechat: FakeWechat
) -> None:
    """A review: ``bind`` took neither the account's lock nor its row. A bind of app A's openid
    not yet committed when a save switched to app B stayed (the save's DELETE did not see it);
    a bind that read app A while the save was writing B bound it after. The bind holds the
    account's row FOR SHARE: the save waits for it and deletes its binding, or the bind waits
    for the save and refuses."""
    brand = demo["BRAND-LUMI"]
    admin = await login("admin")
    app_a, _ = await _account(client, admin, wechat)
    first, _, _ = await new_member(app, brand)
    second, _, _ = await new_member(app, brand)
    one, two = "o" + secrets.token_hex(12), "o" + secrets.token_hex(12)
    connect = psycopg.AsyncConnection.connect
    async with (
        await connect(settings.database_url, row_factory=dict_row) as mine,
        await connect(settings.database_url, row_factory=dict_row) as saving,
        await connect(settings.database_url, autocommit=True, row_factory=dict_row) as look,
    ):
        assert await bindings.bind(mine, brand, first, one, app_id=app_a)  # not committed yet
        save = asyncio.create_task(_account(client, admin, wechat))  # app B
        assert await lock_waiters(look, 1), "the save never waited for the bind"
        await mine.commit()
        app_b, _ = await save
        assert await bindings.member_of(look, brand, one) is None
        # a save holding the account's row (app C written, not committed): the bind waits
        app_c = "wx" + secrets.token_hex(8)
        await saving.execute(
            "UPDATE wechat_accounts SET app_id = %s WHERE brand_id = %s", (app_c, brand)
        )
        task = asyncio.create_task(bindings.bind(mine, brand, second, two, app_id=app_b))
        assert await lock_waiters(look, 1), "the bind never waited for the save"
        await saving.commit()
        assert await task is False
        await mine.commit()
        assert await bindings.member_of(look, brand, two) is None


async def test_a_binding_never_crosses_brands_and_goes_with_an_erasure(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat
) -> None:
    brand_a = demo["BRAND-LUMI"]
    app_a, _ = await _account(client, await login("admin"), wechat)
    member, openid = await _bound_member(app, brand_a, wechat, status="frozen")
    brand_b, other = await onboarded_brand(client, login)
    await _account(client, other, wechat)
    async with member_client(app) as h5:  # the same WeChat user at brand B: not A's member
        answer = await h5.get(await _oauth(h5, wechat, brand_b["id"], openid))
        assert answer.status_code == 303 and not h5.cookies.get("tc_member")
        assert answer.headers["location"].startswith(f"/member/login?brand={brand_b['id']}")
    async with member_client(app) as h5:  # frozen at A: signed in, as with a code, and told
        answer = await h5.get(await _oauth(h5, wechat, brand_a, openid))
        assert answer.status_code == 303 and answer.headers["location"] == "/member"
        home = await h5.get("/member")
        assert 'id="frozen"' in home.text
        token = h5.cookies.get("tc_member")
        erased = await client.delete("/members/me", headers={"Authorization": f"Bearer {token}"})
        assert erased.status_code == 204, erased.text
    async with app.state.pool.connection() as conn:
        assert await bindings.member_of(conn, brand_a, openid) is None
        assert not await bindings.bind(conn, brand_a, member, openid, app_id=app_a)  # erased
    async with member_client(app) as h5:
        answer = await h5.get(await _oauth(h5, wechat, brand_a, openid))
        assert answer.status_code == 303 and not h5.cookies.get("tc_member")


async def test_two_binds_at_once_make_exactly_one_binding(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat
) -> None:
    brand = demo["BRAND-LUMI"]
    app_id, _ = await _account(client, await login("admin"), wechat)
    first, _, _ = await new_member(app, brand)
    second, _, _ = await new_member(app, brand)
    openid = "o" + secrets.token_hex(12)

    async def bind(member: int, oid: str) -> bool:
        async with app.state.pool.connection() as conn:
            done = await bindings.bind(conn, brand, member, oid, app_id=app_id)
            await asyncio.sleep(0.05)  # both in flight before either commits
            return done

    results = await asyncio.gather(bind(first, openid), bind(second, openid))
    assert sorted(results) == [False, True]
    third, _, _ = await new_member(app, brand)  # one member, two openids at once: one kept
    two = ["o" + secrets.token_hex(12), "o" + secrets.token_hex(12)]
    assert all(await asyncio.gather(bind(third, two[0]), bind(third, two[1])))
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT member_id, openid FROM wechat_bindings WHERE openid = ANY(%s)",
                ([openid, *two],),
            )
        ).fetchall()
    assert len([r for r in rows if r["openid"] == openid]) == 1
    assert len([r for r in rows if r["member_id"] == third]) == 1


# -- template messages -------------------------------------------------------------------------


async def test_a_cause_is_queued_once_and_only_for_a_bound_member_with_a_template(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat
) -> None:
    brand, admin = demo["BRAND-LUMI"], await login("admin")
    app_id, _ = await _account(client, admin, wechat)
    member, _ = await _bound_member(app, brand, wechat)
    cause = f"once-{secrets.token_hex(4)}"
    assert await _enqueue(app, brand, member, cause)
    assert await _enqueue(app, brand, member, cause) == 0
    lonely, _, _ = await new_member(app, brand)
    assert await _enqueue(app, brand, lonely, f"x-{secrets.token_hex(4)}") == 0  # not bound
    put = {"app_id": app_id, "templates": {"complaint_reply": "T"}, "enabled": True}
    assert (await client.put("/wechat/account", headers=admin, json=put)).status_code == 200
    assert await _enqueue(app, brand, member, f"y-{secrets.token_hex(4)}") == 0  # no template
    put = {"app_id": app_id, "templates": TEMPLATES, "enabled": False}
    assert (await client.put("/wechat/account", headers=admin, json=put)).status_code == 200
    assert await _enqueue(app, brand, member, f"z-{secrets.token_hex(4)}") == 0  # turned off


async def test_a_redemption_and_a_complaint_reply_are_messaged_to_a_bound_member(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    member, openid = await _bound_member(app, brand, wechat)
    _, headers, phone = await new_member(app, brand)  # unbound: SMS only
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT phone FROM members WHERE id = %s", (member,))
        ).fetchone()
    bound_headers = {"Authorization": f"Bearer {issue_token(app.state.settings, member)[0]}"}
    gift = await new_gift(client, login, points_cost=10)
    await give(client, login, app, row["phone"], 50)
    await give(client, login, app, phone, 50)
    for who in (bound_headers, headers):
        made = await client.post(
            "/members/me/redemptions", headers=who,
            json={"gift_id": gift["id"], "client_id": secrets.token_hex(6)},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        if who is bound_headers:
            redemption = made.json()
    filed = await client.post(
        "/members/me/complaints", headers=bound_headers, json={"kind": "complaint", "body": "leaks"}
    )
    assert filed.status_code == 201, filed.text
    service = await login("service")
    replied = await client.post(
        f"/complaints/{filed.json()['id']}/reply", headers=service, json={"reply": "Sorry, sent"}
    )
    assert replied.status_code == 200, replied.text
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT kind, cause_key, data FROM wechat_messages WHERE member_id = %s ORDER BY id",
                (member,),
            )
        ).fetchall()
    assert [r["kind"] for r in rows] == ["redemption", "complaint_reply"]
    assert rows[0]["cause_key"] == f"redemption:{redemption['id']}"
    assert redemption["code"] not in str(rows[0]["data"])  # the code stays in the SMS
    stats = await _drain(app, aconn)
    assert stats.sent >= 2
    sent = wechat.sent_to(openid)
    assert {m["template_id"] for m in sent} == {"TPL_redeem", "TPL_c"}
    assert sent[0]["data"]["keyword1"] == {"value": gift["name"][:20]} or sent[0]["data"]


async def test_one_token_serves_many_sends_and_is_refreshed_on_40001(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    app_id, secret = await _account(client, await login("admin"), wechat)
    members = [await _bound_member(app, brand, wechat) for _ in range(5)]
    ids = [await _enqueue(app, brand, m, f"tok-{secrets.token_hex(4)}") for m, _ in members]
    await _drain(app, aconn)
    assert [(await _row(app, i))["state"] for i in ids] == ["sent"] * 5
    calls = [c for c in wechat.token_calls if c["appid"] == app_id]
    assert len(calls) == 1 and calls[0]["force_refresh"] is False
    wechat.expire_tokens()  # the cached token stops working: 40001
    again = await _enqueue(app, brand, members[0][0], f"tok-{secrets.token_hex(4)}")
    await _drain(app, aconn)
    row = await _row(app, again)
    assert row["state"] == "sent" and row["attempts"] == 1 and row["msgid"]
    calls = [c for c in wechat.token_calls if c["appid"] == app_id]
    assert [c["force_refresh"] for c in calls] == [False, True]
    assert all(secret not in str(c) for c in calls)


async def test_each_errcode_class_is_sent_failed_retried_or_dead(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    gone, gone_id = await _bound_member(app, brand, wechat)
    refusing, refusing_id = await _bound_member(app, brand, wechat)
    stranger, _, _ = await new_member(app, brand)
    await _bind(app, brand, stranger, "o-never-issued-" + secrets.token_hex(4))
    wechat.unsubscribed.add(gone_id)
    wechat.refusing.add(refusing_id)
    permanent = {
        await _enqueue(app, brand, gone, f"e-{secrets.token_hex(4)}"): 43004,
        await _enqueue(app, brand, refusing, f"e-{secrets.token_hex(4)}"): 43101,
        await _enqueue(app, brand, stranger, f"e-{secrets.token_hex(4)}"): 40003,
    }
    await _drain(app, aconn)
    for message, errcode in permanent.items():
        row = await _row(app, message)
        assert (row["state"], row["errcode"], row["attempts"]) == ("failed", errcode, 1)
    # busy, rate-limited, HTTP 503, a time-out: tried again, then sent
    member, _ = await _bound_member(app, brand, wechat)
    for trouble in ({"send_errors": [-1]}, {"send_errors": [45009]}, {"http_status": [503]},
                    {"delay": 1.5}):  # fmt: skip
        with wechat.lock:
            for name, value in trouble.items():
                setattr(wechat, name, value)
        message = await _enqueue(app, brand, member, f"r-{secrets.token_hex(4)}")
        await _drain(app, aconn)
        row = await _row(app, message)
        assert row["state"] == "pending" and row["attempts"] == 1, (trouble, row)
        wechat.delay = 0
        await asyncio.sleep(0.05)
        await _drain(app, aconn)
        row = await _row(app, message)
        assert row["state"] == "sent" and row["attempts"] == 2, (trouble, row)
    # out of attempts: dead
    app.state.settings = msgspec.structs.replace(app.state.settings, wechat_max_attempts=2)
    wechat.send_errors = [-1, -1]
    message = await _enqueue(app, brand, member, f"d-{secrets.token_hex(4)}")
    await _drain(app, aconn)
    await asyncio.sleep(0.05)
    await _drain(app, aconn)
    row = await _row(app, message)
    assert (row["state"], row["attempts"], row["errcode"]) == ("dead", 2, -1)
    # a last-review find: the dead message was in no dead letter (/health counted none)
    letters = await _letters(aconn, message)
    assert letters == [
        (
            {"message_id": message, "brand_id": brand, "kind": "redemption", "attempts": 2,
             "errcode": -1},
            "out of attempts: " + row["last_error"],
        )
    ], letters  # fmt: skip
    health = (await client.get("/health")).json()
    assert health["dead_letters"]["wechat_messages"] >= 1


async def _letters(aconn: Any, message: int) -> list[tuple[Any, str]]:
    """The dead letters of WeChat message ``message``: (payload, reason)."""
    rows = await (
        await aconn.execute(
            "SELECT payload, reason FROM dead_letters WHERE queue = 'wechat_messages'"
            " AND (convert_from(payload, 'UTF8')::jsonb ->> 'message_id')::bigint = %s",
            (message,),
        )
    ).fetchall()
    return [(json.loads(r["payload"]), r["reason"]) for r in rows]


async def test_a_message_that_cannot_be_made_is_failed_and_the_others_are_sent(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    brand, admin = demo["BRAND-LUMI"], await login("admin")
    app_id, _ = await _account(client, admin, wechat)
    good, _ = await _bound_member(app, brand, wechat)
    unbound, _ = await _bound_member(app, brand, wechat)
    bad_data = await _enqueue(app, brand, good, f"p-{secrets.token_hex(4)}")
    nested = await _enqueue(app, brand, good, f"p-{secrets.token_hex(4)}")
    late_unbind = await _enqueue(app, brand, unbound, f"p-{secrets.token_hex(4)}")
    fine = await _enqueue(app, brand, good, f"p-{secrets.token_hex(4)}")
    async with app.state.pool.connection() as conn:
        await conn.execute(
            'UPDATE wechat_messages SET data = \'{"bad key!": "x"}\' WHERE id = %s', (bad_data,)
        )
        await conn.execute(
            'UPDATE wechat_messages SET data = \'{"first": {"deep": [1]}}\' WHERE id = %s',
            (nested,),
        )
        await bindings.unbind(conn, brand, unbound)
    await _drain(app, aconn)
    assert (await _row(app, fine))["state"] == "sent"
    for message, why in ((bad_data, "bad data"), (nested, "bad data"),
                         (late_unbind, "not bound")):  # fmt: skip
        row = await _row(app, message)
        assert row["state"] == "failed" and why in row["last_error"], row
    # the template unmapped, then the account removed, while messages wait
    unmapped = await _enqueue(app, brand, good, f"p-{secrets.token_hex(4)}")
    put = {"app_id": app_id, "templates": {"complaint_reply": "T"}, "enabled": True}
    assert (await client.put("/wechat/account", headers=admin, json=put)).status_code == 200
    await _drain(app, aconn)
    assert "no template" in (await _row(app, unmapped))["last_error"]
    mapped = {**put, "templates": TEMPLATES}  # the same app: its bindings stay
    assert (await client.put("/wechat/account", headers=admin, json=mapped)).status_code == 200
    orphan = await _enqueue(app, brand, good, f"p-{secrets.token_hex(4)}")
    assert (await client.delete("/wechat/account", headers=admin)).status_code == 204
    await _drain(app, aconn)
    row = await _row(app, orphan)
    assert row["state"] == "failed" and "no enabled WeChat account" in row["last_error"]


def _answering(fake: FakeWechat, openid: str, answer: dict[str, Any]) -> None:
    """From now on the local WeChat answers a template send to ``openid`` with ``answer`` (its
    send counted as every other: ``sent_to``)."""
    assert fake.server is not None
    base: Any = fake.server.RequestHandlerClass

    class Hostile(base):  # type: ignore[misc,valid-type]
        touser: Any = None

        def _body(self) -> Any:
            body = super()._body()
            self.touser = body.get("touser") if isinstance(body, dict) else None
            return body

        def _json(self, body: Any, status: int = 200) -> None:
            if self.touser == openid and self.path.startswith("/cgi-bin/message/template/send"):
                body = answer
            super()._json(body, status)

    fake.server.RequestHandlerClass = Hostile


@pytest.mark.parametrize(
    ("answer", "state", "errcode", "stored"),
    [
        ({"errcode": 40003, "errmsg": "invalid openid \u0000 hint: [x]"}, "failed", 40003,
         ("last_error", "invalid openid   hint: [x]")),
        ({"errcode": 0, "msgid": "id\u0000"}, "sent", None, ("msgid", "id ")),
        ({"errcode": 2**40, "errmsg": "system error"}, "pending", None,
         ("last_error", "WeChat's errcode is out of range")),
        ({"errcode": True, "errmsg": "system error"}, "pending", None,
         ("last_error", "WeChat's errcode is not a number")),
    ],
    ids=["nul-in-errmsg", "nul-in-msgid", "errcode-beyond-int4", "errcode-true"],
)  # fmt: skip
async def test_an_answer_that_cannot_be_stored_as_is_never_resends_the_others(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    wechat: FakeWechat,
    aconn: Any,
    answer: dict[str, Any],
    state: str,
    errcode: int | None,
    stored: tuple[str, str],
) -> None:
    """A probe: WeChat's answer to one message of a claim held a NUL (its errmsg, its msgid) or
    an errcode past the integer column; its record raised, the drain stopped, and the messages
    after it — taken by WeChat already — stayed ``sending``, sent again after the lease. Now
    WeChat's words are stored with the NUL made a space, such an errcode is a passing fault,
    and the others are recorded."""
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    members = [await _bound_member(app, brand, wechat) for _ in range(3)]
    ids = [await _enqueue(app, brand, m, f"nul-{secrets.token_hex(4)}") for m, _ in members]
    _answering(wechat, members[1][1], answer)
    await _drain(app, aconn)
    first, poisoned, third = [await _row(app, i) for i in ids]
    assert first["state"] == third["state"] == "sent" and first["msgid"] and third["msgid"]
    column, text = stored
    assert (poisoned["state"], poisoned["errcode"]) == (state, errcode), poisoned
    assert text in (poisoned[column] or "") and "\x00" not in poisoned[column], poisoned
    # the lease passes: nothing of theirs is left 'sending' for the sweep to send again
    await aconn.execute(
        "UPDATE wechat_messages SET claimed_at = now() - interval '1 hour' WHERE id = ANY(%s)",
        (ids,),
    )
    gateway = WechatGateway(app.state.settings, app.state.redis)
    try:
        await sender.sweep(aconn, gateway, app.state.settings)
    finally:
        await gateway.aclose()
    assert [len(wechat.sent_to(openid)) for _, openid in members[::2]] == [1, 1]


async def test_an_outcome_that_cannot_be_recorded_fails_its_row_and_not_the_others(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    """A probe: one row's record raising stopped the record of the claim's others. An outcome
    past a column still (an errcode no gateway answers now) fails its row with the reason."""
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    members = [await _bound_member(app, brand, wechat) for _ in range(2)]
    ids = [await _enqueue(app, brand, m, f"rec-{secrets.token_hex(4)}") for m, _ in members]
    outcomes = {
        members[0][1]: Outcome(status="retry", errcode=2**40, error="past the column"),
        members[1][1]: Outcome(status="sent", msgid="m-" + secrets.token_hex(4)),
    }

    class Answers:  # in place of the gateway: each openid's outcome
        async def send_template(self, app_id: str, secret: str, message: Any) -> Outcome:
            return outcomes[message.touser]

    gateway: Any = Answers()
    rows = await sender.claim(aconn, 10, ids)
    stats = await sender.send_rows(aconn, gateway, app.state.settings, rows)
    assert (stats.failed, stats.sent) == (1, 1)
    bad, good = [await _row(app, i) for i in ids]
    assert (bad["state"], bad["errcode"]) == ("failed", None), bad
    assert "could not be recorded" in bad["last_error"] and "retry" in bad["last_error"], bad
    assert (good["state"], good["msgid"]) == ("sent", outcomes[members[1][1]].msgid)


async def test_a_send_that_raises_is_its_retry_and_never_resends_the_others(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    """A probe: one send raising past the gateway's own faults (a Redis blip reading the cached
    token) raised out of the sends' ``asyncio.gather`` — the drain stopped, the claim's other
    messages, taken by WeChat already, stayed ``sending`` and the lease's recovery sent them
    again. Here one send raises once the others are answered: it alone is tried again, the
    others are recorded, and after the lease each member has one message."""
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    members = [await _bound_member(app, brand, wechat) for _ in range(3)]
    ids = [await _enqueue(app, brand, m, f"raise-{secrets.token_hex(4)}") for m, _ in members]
    settings = app.state.settings
    real = WechatGateway(settings, app.state.redis)
    answered, done = asyncio.Event(), []

    class Raising:  # the real gateway, but member 1's send raises after the others'
        async def send_template(self, app_id: str, secret: str, message: Any) -> Outcome:
            if message.touser == members[1][1]:
                await asyncio.wait_for(answered.wait(), 5)
                raise RuntimeError("a fault no outcome names")
            try:
                return await real.send_template(app_id, secret, message)
            finally:
                done.append(message.touser)
                if len(done) == 2:
                    answered.set()

    gateway: Any = Raising()
    try:
        stats = await sender.send_rows(aconn, gateway, settings, await sender.claim(aconn, 10, ids))
    finally:
        await real.aclose()
    assert (stats.sent, stats.retried) == (2, 1), stats
    first, raised, third = [await _row(app, i) for i in ids]
    assert first["state"] == third["state"] == "sent", (first, third)
    assert raised["state"] == "pending" and "RuntimeError" in raised["last_error"], raised
    # the lease passes and the retry is due: the sweep sends the raised one only
    await aconn.execute(
        "UPDATE wechat_messages SET claimed_at = now() - interval '1 hour',"
        " next_attempt_at = now() WHERE id = ANY(%s)",
        (ids,),
    )
    gateway = WechatGateway(settings, app.state.redis)
    try:
        await sender.sweep(aconn, gateway, settings)
    finally:
        await gateway.aclose()
    assert [len(wechat.sent_to(openid)) for _, openid in members] == [1, 1, 1]
    assert [(await _row(app, i))["state"] for i in ids] == ["sent"] * 3


async def test_two_senders_never_send_one_message_twice(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, settings: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    member, openid = await _bound_member(app, brand, wechat)
    ids = [
        await _enqueue(app, brand, member, f"race-{i}-{secrets.token_hex(3)}") for i in range(30)
    ]
    # claims of 8 (2 × CLAIM_WAVES), each send 20 ms: both senders are claiming at once
    app.state.settings = msgspec.structs.replace(app.state.settings, wechat_concurrency=2)
    wechat.delay = 0.02

    async def one_sender() -> sender.Stats:
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await _drain(app, conn)

    first, second = await asyncio.gather(one_sender(), one_sender())
    wechat.delay = 0
    assert first.claimed > 0 and second.claimed > 0
    assert first.sent + second.sent == 30
    sent = wechat.sent_to(openid)
    assert len(sent) == 30 and len({m["msgid"] for m in sent}) == 30
    assert [(await _row(app, i))["state"] for i in ids] == ["sent"] * 30


async def test_a_sender_that_died_leaves_its_messages_to_the_sweep(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    member, _ = await _bound_member(app, brand, wechat)
    message = await _enqueue(app, brand, member, f"lease-{secrets.token_hex(4)}")
    claimed = await sender.claim(aconn, 500, [message])  # claimed, then the sender "dies"
    assert [c.id for c in claimed] == [message]
    await aconn.execute(
        "UPDATE wechat_messages SET claimed_at = now() - interval '1 hour' WHERE id = %s",
        (message,),
    )
    gateway = WechatGateway(app.state.settings, app.state.redis)
    try:
        stats = await sender.sweep(aconn, gateway, app.state.settings)
    finally:
        await gateway.aclose()
    assert stats.recovered >= 1
    row = await _row(app, message)
    assert row["state"] == "sent" and row["attempts"] == 2
    # out of attempts as the sender died: dead, and in the dead letters
    app.state.settings = msgspec.structs.replace(app.state.settings, wechat_max_attempts=1)
    last = await _enqueue(app, brand, member, f"lease-{secrets.token_hex(4)}")
    assert [c.id for c in await sender.claim(aconn, 500, [last])] == [last]
    await aconn.execute(
        "UPDATE wechat_messages SET claimed_at = now() - interval '1 hour' WHERE id = %s", (last,)
    )
    assert await sender.recover(aconn, app.state.settings) >= 1
    assert (await _row(app, last))["state"] == "dead"
    [(payload, reason)] = await _letters(aconn, last)
    assert payload["attempts"] == 1 and reason.startswith("out of attempts: outcome unknown")


async def test_the_delivery_log_is_paged_and_masks_openids(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat, aconn: Any
) -> None:
    brand, admin = demo["BRAND-LUMI"], await login("admin")
    await _account(client, admin, wechat)
    member, openid = await _bound_member(app, brand, wechat)
    for _ in range(3):
        await _enqueue(app, brand, member, f"log-{secrets.token_hex(4)}")
    await _drain(app, aconn)
    page = await client.get(
        "/wechat/messages", headers=admin, params={"member_id": member, "per_page": 2}
    )
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == 3 and len(body["items"]) == 2
    assert all(m["state"] == "sent" and m["msgid"] for m in body["items"])
    assert openid not in page.text and body["items"][0]["openid"].startswith(openid[:4])
    assert_error(await client.get("/wechat/messages", headers=admin, params={"state": "x"}), 400)
    assert_error(await client.get("/wechat/messages", headers=await login("clerk")), 403)


# -- a review --------------------------------------------------------------------------------


def _old_seal(key: bytes, body: bytes) -> bytes:
    """AES-256-GCM as the account and the bind cookie sealed before the review: nonce +
    ciphertext + tag."""
    nonce = secrets.token_bytes(12)
    sealed, tag = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(body)
    return nonce + sealed + tag


def test_secrets_and_cookies_sealed_before_still_open(settings: Any) -> None:
    """A review: the account's sealing and the bind cookie's were copies of the webhooks' and
    the claim tickets' code; now they use those, and what was sealed before still opens (and
    what is sealed now opens the old way)."""
    stored = _old_seal(settings.subkey("wechat-secret"), b"the-app-secret")
    assert account.unseal(settings, stored) == "the-app-secret"
    new = account.seal(settings, "s3cret")
    nonce, sealed, tag = new[:12], new[12:-16], new[-16:]
    cipher = AES.new(settings.subkey("wechat-secret"), AES.MODE_GCM, nonce=nonce)
    assert cipher.decrypt_and_verify(sealed, tag) == b"s3cret"
    with pytest.raises(ValueError):  # never the webhooks' subkey
        signing.unseal(settings, new)

    body = json.dumps([7, "wxa", "o-openid", None, int(time.time()) + 60]).encode()
    old_cookie = base64.urlsafe_b64encode(_old_seal(settings.subkey("wechat-bind"), body))
    request: Any = SimpleNamespace(cookies={"tc_wx_bind": old_cookie.rstrip(b"=").decode()})
    assert wechat_pages._pending(request, settings, 7) == ("wxa", "o-openid", None)
    assert wechat_pages._pending(request, settings, 8) is None  # another brand's
    made: Any = SimpleNamespace(
        cookies={"tc_wx_bind": wechat_pages._seal_pending(settings, 7, "wxa", "o", "u")}
    )
    assert wechat_pages._pending(made, settings, 7) == ("wxa", "o", "u")
    forged: Any = SimpleNamespace(cookies={"tc_wx_bind": made.cookies["tc_wx_bind"][:-2] + "AA"})
    assert wechat_pages._pending(forged, settings, 7) is None

    ticket = json.dumps(["SERIAL", "1234", 7, "abcd", int(time.time()) + 60]).encode()
    old_ticket = base64.urlsafe_b64encode(_old_seal(settings.subkey("h5-claim"), ticket))
    opened = session.open_ticket(settings, old_ticket.rstrip(b"=").decode())
    assert opened is not None and (opened.serial, opened.brand_id) == ("SERIAL", 7)
    assert session.open_ticket(settings, made.cookies["tc_wx_bind"]) is None  # another purpose


def test_the_account_and_a_made_message_never_show_the_secret() -> None:
    """A review: ``Account`` and ``sender._Made`` printed the plaintext app secret in their
    repr (a log line or a traceback's locals)."""
    found = account.Account(
        brand_id=1, app_id="wx1", secret="THE-SECRET", templates={}, enabled=True
    )
    message = TemplateMessage(touser="o" + "x" * 20, template_id="T", url=None, data={})
    for shown in (repr(found), str(found), repr(sender._Made(found, message))):
        assert "THE-SECRET" not in shown and "wx1" in shown
    assert message.touser not in repr(sender._Made(found, message))


async def test_a_complaint_reply_links_to_the_app_s_public_host(
    client: Any, login: Any, app: Any, demo: Any, wechat: FakeWechat
) -> None:
    """A review: the complaint reply's message read the settings from the environment, not the
    app's: an app built with other settings linked its members to another host."""
    app.state.settings = msgspec.structs.replace(
        app.state.settings, public_scheme="https", resolver_host="wx-review.example"
    )
    brand = demo["BRAND-LUMI"]
    await _account(client, await login("admin"), wechat)
    member, _ = await _bound_member(app, brand, wechat)
    headers = {"Authorization": f"Bearer {issue_token(app.state.settings, member)[0]}"}
    filed = await client.post(
        "/members/me/complaints", headers=headers, json={"kind": "complaint", "body": "leaks"}
    )
    assert filed.status_code == 201, filed.text
    service = await login("service")
    replied = await client.post(
        f"/complaints/{filed.json()['id']}/close", headers=service, json={"reply": "Refunded"}
    )
    assert replied.status_code == 200, replied.text
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT url FROM wechat_messages WHERE member_id = %s AND kind = %s",
                (member, "complaint_reply"),
            )
        ).fetchone()
    assert row["url"] == "https://wx-review.example/member/complaints"


async def test_a_member_losing_a_new_openid_to_another_keeps_its_old_binding(
    client: Any, login: Any, app: Any, demo: Any, settings: Any, wechat: FakeWechat
) -> None:
    """A review: ``bind`` deleted the member's old binding before inserting the new one; when
    another member took the openid at that moment, the insert did nothing and the member was
    left with no binding at all (and False)."""
    brand = demo["BRAND-LUMI"]
    app_id, _ = await _account(client, await login("admin"), wechat)
    first, _, _ = await new_member(app, brand)
    second, _, _ = await new_member(app, brand)
    old, wanted = "o" + secrets.token_hex(12), "o" + secrets.token_hex(12)
    await _bind(app, brand, first, old)
    connect = psycopg.AsyncConnection.connect
    async with (
        await connect(settings.database_url, row_factory=dict_row) as theirs,
        await connect(settings.database_url, row_factory=dict_row) as mine,
        await connect(settings.database_url, autocommit=True, row_factory=dict_row) as look,
    ):
        assert await bindings.bind(theirs, brand, second, wanted, app_id=app_id)  # uncommitted
        task = asyncio.create_task(bindings.bind(mine, brand, first, wanted, app_id=app_id))
        pid = mine.info.backend_pid
        for _ in range(200):  # until the first member's insert waits for the second's
            row = await (
                await look.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                )
            ).fetchone()
            if row and row["wait_event_type"] == "Lock":
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError("the first member's bind never waited for the second's")
        await theirs.commit()
        assert await task is False
        await mine.commit()
        assert await bindings.openid_of(look, first) == old  # kept
        assert await bindings.member_of(look, brand, wanted) == second


# -- one brand's account, one brand's marketing --------------------------------------------------


async def _points_reminder(app: Any, brand: int, member: int) -> int:
    """A points reminder queued for the member, as the reminders' scan queues its WeChat twin."""
    async with app.state.pool.connection() as conn:
        queued = await outbox.enqueue(
            conn,
            brand_id=brand,
            member_id=member,
            kind="points_reminder",
            cause_key=f"reminder:{secrets.token_hex(6)}",
            data={"first": "A gift is yours", "keyword1": "120", "keyword2": "Thermos"},
            url="https://example.com/member/gifts",
        )
        outbox.discard(conn)
    return queued


async def test_a_deactivated_brand_s_points_reminder_is_failed_and_its_redemption_sent(
    client: Any, login: Any, app: Any, wechat: FakeWechat, aconn: Any
) -> None:
    """A probe: a points reminder queued for WeChat before the brand was turned off was still
    sent after it, while its SMS twin was failed "the brand is deactivated". Marketing of a
    brand turned off is failed with the SMS's words; a redemption's notice still goes."""
    from app.sms.sender import BRAND_OFF

    brand, admin = await onboarded_brand(client, login)
    await _account(client, admin, wechat)
    member, openid = await _bound_member(app, brand["id"], wechat)
    redemption = await _enqueue(app, brand["id"], member, f"off-{secrets.token_hex(4)}")
    reminder = await _points_reminder(app, brand["id"], member)
    assert reminder and redemption
    off = await client.post(f"/orgs/{brand['id']}/deactivate", headers=await login("platform"))
    assert off.status_code == 200, off.text
    gateway = WechatGateway(app.state.settings, app.state.redis)
    try:
        stats = await sender.drain(aconn, gateway, app.state.settings, [reminder, redemption])
    finally:
        await gateway.aclose()
    assert (stats.sent, stats.failed) == (1, 1), stats
    failed = await _row(app, reminder)
    assert (failed["state"], failed["last_error"]) == ("failed", BRAND_OFF)
    assert (await _row(app, redemption))["state"] == "sent"
    assert [m["template_id"] for m in wechat.sent_to(openid)] == [TEMPLATES["redemption"]]


async def test_a_points_reminder_of_a_member_frozen_or_opted_out_since_is_failed(
    client: Any, login: Any, app: Any, wechat: FakeWechat, aconn: Any
) -> None:
    """A probe: a points reminder queued, then its member frozen (or opted out of marketing),
    was failed by SMS ("member frozen") and still sent by WeChat. Both are failed with the
    SMS's words; the frozen member's redemption notice still goes."""
    from app.sms.outbox import OPTED_OUT
    from app.sms.sender import MEMBER_FROZEN

    brand, admin = await onboarded_brand(client, login)
    await _account(client, admin, wechat)
    frozen, openid = await _bound_member(app, brand["id"], wechat)
    opted, _ = await _bound_member(app, brand["id"], wechat)
    active, active_openid = await _bound_member(app, brand["id"], wechat)
    redemption = await _enqueue(app, brand["id"], frozen, f"fz-{secrets.token_hex(4)}")
    reminders = {m: await _points_reminder(app, brand["id"], m) for m in (frozen, opted, active)}
    froze = await client.post(
        f"/members/{frozen}/freeze", json={"reason": "held for review"}, headers=admin
    )
    assert froze.status_code == 200, froze.text
    async with app.state.pool.connection() as conn:  # as the H5 page's opt-out switch sets it
        await conn.execute("UPDATE members SET marketing_opt_out = true WHERE id = %s", (opted,))
    gateway = WechatGateway(app.state.settings, app.state.redis)
    try:
        stats = await sender.drain(
            aconn, gateway, app.state.settings, [*reminders.values(), redemption]
        )
    finally:
        await gateway.aclose()
    assert (stats.sent, stats.failed) == (2, 2), stats
    failed = [await _row(app, reminders[m]) for m in (frozen, opted)]
    assert [(r["state"], r["last_error"]) for r in failed] == [
        ("failed", MEMBER_FROZEN),
        ("failed", OPTED_OUT),
    ]
    assert (await _row(app, reminders[active]))["state"] == "sent"
    assert [m["template_id"] for m in wechat.sent_to(openid)] == [TEMPLATES["redemption"]]
    assert [m["template_id"] for m in wechat.sent_to(active_openid)] == [
        TEMPLATES["points_reminder"]
    ]


async def test_an_app_id_is_one_brand_s_account(
    client: Any, login: Any, app: Any, wechat: FakeWechat
) -> None:
    """A probe: brand B saved brand A's (public) app id with a made-up secret and sent its
    template messages as A's account. Another brand's app id is 409 ``wechat_app_id_taken``,
    two brands saving one new app id at once included; the brand's own saves go on."""
    _, a_admin = await onboarded_brand(client, login)
    _, b_admin = await onboarded_brand(client, login)
    app_id, secret = await _account(client, a_admin, wechat)
    forged = {"app_id": app_id, "app_secret": "f" * 32, "templates": TEMPLATES, "enabled": True}
    taken = await client.put("/wechat/account", headers=b_admin, json=forged)
    assert_error(taken, 409, "wechat_app_id_taken")
    assert secret not in taken.text
    assert (await client.get("/wechat/account", headers=b_admin)).json()["configured"] is False
    again = {"app_id": app_id, "templates": TEMPLATES, "enabled": False}  # A's own: kept
    assert (await client.put("/wechat/account", headers=a_admin, json=again)).status_code == 200

    _, c_admin = await onboarded_brand(client, login)
    fresh = {"app_id": "wx" + secrets.token_hex(8), "app_secret": secret, "templates": TEMPLATES}
    both = await asyncio.gather(
        *(client.put("/wechat/account", headers=h, json=fresh) for h in (b_admin, c_admin))
    )
    assert sorted(r.status_code for r in both) == [200, 409], [r.text for r in both]
    for lost in (r for r in both if r.status_code == 409):
        assert_error(lost, 409, "wechat_app_id_taken")


async def test_an_access_token_is_found_only_with_the_secret_it_was_fetched_with(
    app: Any, wechat: FakeWechat
) -> None:
    """A probe: the token was cached under the app id alone — a sender with a made-up secret
    found the one the app's own sends had fetched. Cached per app and secret (an HMAC of it:
    the secret is never part of a key); a wrong secret must fetch its own, and WeChat says
    no."""
    from app.wechat.gateway import WechatRefused

    app_id, secret = "wx" + secrets.token_hex(8), secrets.token_hex(16)
    wechat.add_app(app_id, secret)
    gateway = WechatGateway(app.state.settings, app.state.redis)
    try:
        token = await gateway.access_token(app_id, secret)
        assert await gateway.access_token(app_id, secret) == token  # cached: one call
        with pytest.raises(WechatRefused) as refused:
            await gateway.access_token(app_id, "f" * 32)
        assert refused.value.errcode == 40125
    finally:
        await gateway.aclose()
    assert len([c for c in wechat.token_calls if c["appid"] == app_id]) == 2
    keys = [k.decode() if isinstance(k, bytes) else k for k in await _redis_keys(app, app_id)]
    assert keys and all(secret not in k and "f" * 32 not in k for k in keys), keys


async def _redis_keys(app: Any, app_id: str) -> list[Any]:
    """The Redis keys naming ``app_id`` (the gateway's token cache)."""
    namespace = app.state.settings.redis_namespace
    return [k async for k in app.state.redis.scan_iter(match=f"{namespace}:wechat:*{app_id}*")]


async def test_redis_failing_under_the_token_is_a_retry_of_the_send(
    app: Any, wechat: FakeWechat
) -> None:
    """A probe: a Redis error reading the cached token raised out of ``send_template`` (which
    answers every fault as an outcome) and stopped the sender's drain. Redis failing is no token
    now: the message is tried again later, and WeChat was asked nothing."""
    import redis.exceptions

    class Failing:  # the app's Redis, down
        async def get(self, key: Any) -> Any:
            raise redis.exceptions.ConnectionError("Redis is down")

        async def set(self, *args: Any, **kwargs: Any) -> Any:
            raise redis.exceptions.ConnectionError("Redis is down")

    app_id, secret = "wx" + secrets.token_hex(8), secrets.token_hex(16)
    wechat.add_app(app_id, secret)
    openid = wechat.user("o" + secrets.token_hex(12))
    message = TemplateMessage(touser=openid, template_id="T", url=None, data={"first": "hi"})
    gateway = WechatGateway(app.state.settings, Failing())
    try:
        outcome = await gateway.send_template(app_id, secret, message)
    finally:
        await gateway.aclose()
    assert outcome.status == "retry" and "Redis" in (outcome.error or ""), outcome
    assert wechat.sent_to(openid) == [] and not wechat.token_calls
