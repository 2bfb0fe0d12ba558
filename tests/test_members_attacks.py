"""Issue 15 attacked from outside (reviewer X): the member, points, gift, redemption and SMS
endpoints against hostile input and guessing, over HTTP through the in-process client."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from app.sms.service import sign
from tests.helpers import assert_error

SECRET = "attack-secret"


async def test_a_callback_signature_with_non_ascii_bytes_is_401_not_500(
    client: Any, app: Any
) -> None:
    """hmac.compare_digest refuses non-ASCII str: a forged header of latin-1 bytes was a 500."""
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, sms_callback_secret=SECRET)
    try:
        body = b'{"reports": [{"message_id": "x", "status": "delivered"}]}'
        stamp = str(int(time.time()))
        good = sign(SECRET, stamp, body)
        for forged in ("\xe9" * 64, good[:-1] + "\xe9"):
            headers = {
                "Content-Type": "application/json",
                "X-Tracecode-Timestamp": stamp,
                "X-Tracecode-Signature": forged.encode("latin-1"),
            }
            assert_error(
                await client.post("/sms/callbacks/http", content=body, headers=headers),
                401,
                "invalid_signature",
            )
        headers = {
            "Content-Type": "application/json",
            "X-Tracecode-Timestamp": "\xb9\xb2".encode("latin-1"),
            "X-Tracecode-Signature": good,
        }
        assert_error(
            await client.post("/sms/callbacks/http", content=body, headers=headers),
            401,
            "invalid_signature",
        )
    finally:
        app.state.settings = settings


async def test_a_clerk_guessing_redemption_codes_is_stopped(
    client: Any, app: Any, login: Any
) -> None:
    """Unknown codes count per staff account: after CODE_GUESS_MAX of them within the window,
    check and fulfil answer 429 rate_limited (with Retry-After) — for a real code too, so a
    lucky guess is not told apart; other accounts are not affected."""
    from app.members.limits import CODE_GUESS_MAX, member_limits

    clerk = await login("store_clerk")
    limits = member_limits(app.state)
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = 'store_clerk'")
        ).fetchone()
        other = await (
            await conn.execute("SELECT id FROM users WHERE username = 'eshop'")
        ).fetchone()
    eshop_id = other["id"]
    key = f"{limits.ns}:code-guess:u{row['id']}"
    await app.state.redis.delete(key)
    try:
        for n in range(CODE_GUESS_MAX):
            code = f"{n:010d}"
            assert_error(
                await client.post("/redemptions/check", headers=clerk, json={"code": code}),
                404,
                "unknown_code",
            )
        for path in ("/redemptions/check", "/redemptions/fulfil"):
            response = await client.post(path, headers=clerk, json={"code": "ABCDEFGHJK"})
            assert_error(response, 429, "rate_limited")
            assert int(response.headers["Retry-After"]) > 0
        # another account still checks
        eshop = await login("eshop")
        assert_error(
            await client.post("/redemptions/check", headers=eshop, json={"code": "0000000000"}),
            404,
            "unknown_code",
        )
    finally:
        await app.state.redis.delete(key, key.replace(f"u{row['id']}", f"u{eshop_id}"))


async def test_the_code_guess_limit_is_documented(client: Any) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    for path in ("/redemptions/check", "/redemptions/fulfil"):
        assert "429" in schema["paths"][path]["post"]["responses"], path


async def test_superscript_digits_in_member_page_parameters_are_not_a_500(
    app: Any, client: Any, demo: Any
) -> None:
    """str.isdigit() is true for '²' but int('²') raises: /member?brand=² and ?page=² were 500."""
    from app.web.session import BRAND_COOKIE
    from tests.points_support import member_client, new_member

    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    token = headers["Authorization"].removeprefix("Bearer ")
    async with member_client(app) as mc:
        login_page = await mc.get("/member/login", params={"brand": "²"})
        assert login_page.status_code in (200, 400), login_page.text
        for cookie in (b"%C2%B2", "²".encode()):
            raw = BRAND_COOKIE.encode() + b"=" + cookie
            hinted = await mc.get("/member", headers={"Cookie": raw})
            assert hinted.status_code == 303, hinted.status_code
        mc.cookies.set("tc_member", token)
        for path in ("/member/points", "/member/gifts", "/member/codes", "/member/scans"):
            page = await mc.get(path, params={"page": "²³"})
            assert page.status_code == 200, (path, page.status_code)
