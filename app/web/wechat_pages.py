"""Signing in by WeChat on the member pages (SPEC W5): WeChat's OAuth (snsapi_base, silent — no
consent screen) for brands whose service account is enabled, and binding the openid to a member.

| URL | |
| --- | --- |
| ``GET /member/wechat?brand&claim`` | to WeChat's authorize page, with a fresh ``state`` |
| ``GET /member/wechat/callback?code&state`` | back from WeChat: signed in, or the phone form |
| ``POST /member/wechat/unbind`` | the member unlinks their WeChat (the profile page's button) |

The ``state`` is 32 random bytes (base64url) made for one browser and one sign-in: it is kept in
Redis (``{ns}:wechat:oauth:{sha256}``, the brand and the claim ticket to carry) for
``STATE_TTL`` seconds and in the browser's ``tc_wx_state`` cookie (HttpOnly, Lax — WeChat's
redirect back is a top-level GET, which Lax lets through — path ``/member/wechat``). The
callback answers only when the query's ``state`` is the cookie's and Redis still holds it; it
takes it out (``GETDEL``: used once). A state made for another browser, forged, reused or
expired is 400 ``wechat_state_invalid`` (CSRF: a link that would sign a victim into another's
membership, or bind the attacker's WeChat to the victim, dies here).

Then the code is exchanged (``app.wechat.gateway``) for the openid, and:

* bound to a member of the brand: signed in, as ``POST /member/login`` signs in (the
  ``tc_member`` token and the ``tc_brand`` cookie; a frozen member is in, as with a code, and
  sees the frozen notice; an erased one has no binding any more, and a brand turned off has no
  sign-in);
* not bound, a member of the brand signed in already: bound to them (the profile's "link WeChat");
* not bound otherwise: the phone form, with a note; the openid waits in the ``tc_wx_bind``
  cookie (sealed with AES-GCM under ``subkey("wechat-bind")`` with the brand, the app id it
  came from and an expiry, ``BIND_TTL``), and the SMS sign-in that follows binds it
  (``bind_after_login``) — while that app is still the brand's account's: after a switch to
  another app the old app's openid means nothing (``app.wechat.bindings.bind`` refuses it; the
  member is signed in, not linked, and links through the new app). A cookie sealed before it
  carried the app id is not bound (it lived 15 minutes).

The redirect URI is the public one (``TRACECODE_PUBLIC_SCHEME``/``RESOLVER_HOST``), never built
from the request's Host. The URL to WeChat carries the app id only: the secret is used by the
server, in the code exchange.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie

from app.config import Settings
from app.db import Conn
from app.errors import AppError
from app.members import auth
from app.members.limits import member_limits
from app.members.principal import issue_token
from app.web import html, session
from app.web.i18n import Lang, word
from app.web.pages import MAX_FORM, PAGE_ERRORS, lang_switch, read_form, respond

# The WeChat domain is imported where it is used: its package (app/wechat/__init__.py) mounts
# these pages, and the member pages import this module — a cycle at import otherwise.

STATE_COOKIE = "tc_wx_state"
BIND_COOKIE = "tc_wx_bind"
STATE_TTL = 300  # seconds from the tap to WeChat's redirect back
BIND_TTL = 900  # seconds from WeChat's answer to the SMS sign-in that binds it
CALLBACK = "/member/wechat/callback"
_BIND_SEAL = "wechat-bind"  # the subkey of the openid waiting in ``tc_wx_bind``
_PAGE: dict[str, Any] = {"include_in_schema": False, "exception_handlers": PAGE_ERRORS}
_POST: dict[str, Any] = {**_PAGE, "status_code": 200, "request_max_body_size": MAX_FORM}


def _state_key(settings: Settings, state: str) -> str:
    return f"{settings.redis_namespace}:wechat:oauth:{hashlib.sha256(state.encode()).hexdigest()}"


def _number(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 16 else None


def _show(
    lang: Lang,
    remember: Cookie | None,
    title: str,
    body: str,
    path: str,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    page = html.page(lang, title, body, lang_switch(path, lang), "member_site")
    return respond(page, lang, remember, status, cookies=cookies, headers=headers)


def _error(
    lang: Lang, remember: Cookie | None, key: str, status: int, brand: int | None
) -> Response[str]:
    back = "/member/login" + (f"?brand={brand}" if brand else "")
    link = f'<p><a href="{html.esc(back)}">{html.esc(word("sign_in", lang))}</a></p>'
    body = html.status("error", word("error_title", lang), word(key, lang), link)
    return _show(lang, remember, word("wechat_title", lang), body, back, status)


def _see_other(location: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response(
        "",
        status_code=303,
        headers={"Location": location, "Cache-Control": "no-store"},
        cookies=cookies or [],
    )


def _login_url(brand_id: int, claim: str) -> str:
    return f"/member/login?brand={brand_id}" + (f"&claim={quote(claim, safe='')}" if claim else "")


# -- the sign-in page's part --------------------------------------------------------------------


async def login_extras(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, brand_id: int, claim: str,
    lang: Lang,
) -> str:  # fmt: skip
    """Above the phone form: "sign in with WeChat" when the brand's account is enabled (and no
    openid waits to be bound), or the note that the phone sign-in links the WeChat."""
    from app.wechat import account

    if not await account.enabled(conn, brand_id):
        return ""
    pending = _pending(request, settings, brand_id)
    if pending is not None and pending[0] == await account.app_id_of(conn, brand_id):
        return f'<p class="hint" id="wechat-bind">{html.esc(word("wechat_bind_notice", lang))}</p>'
    query = urlencode({"brand": brand_id, **({"claim": claim} if claim else {}), "lang": lang})
    return (
        f'<section class="card" id="wechat"><a class="button" id="wechat-sign-in" '
        f'href="/member/wechat?{html.esc(query)}">{html.esc(word("wechat_sign_in", lang))}</a>'
        f'<p class="hint">{html.esc(word("wechat_or", lang))}</p></section>'
    )


async def bind_after_login(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, brand_id: int, member_id: int
) -> Cookie | None:
    """After a sign-in by SMS code: the openid waiting in ``tc_wx_bind`` for this brand is bound
    to the member, when the app it came from is still the brand's; the cookie that removes it
    (None: there was none)."""
    from app.wechat import bindings

    if not request.cookies.get(BIND_COOKIE):
        return None
    pending = _pending(request, settings, brand_id)
    if pending is not None:
        app_id, openid, unionid = pending
        await bindings.bind(conn, brand_id, member_id, openid, unionid, app_id=app_id)
    return session.expired(request, settings, BIND_COOKIE)


def _seal_pending(
    settings: Settings, brand_id: int, app_id: str, openid: str, unionid: str | None
) -> str:
    expires = int(time.time()) + BIND_TTL
    return session.seal(settings, _BIND_SEAL, [brand_id, app_id, openid, unionid, expires])


def _pending(
    request: Request[Any, Any, Any], settings: Settings, brand_id: int
) -> tuple[str, str, str | None] | None:
    """(app id, openid, unionid) waiting in the browser to be bound to a member of
    ``brand_id``. A cookie sealed before it carried the app id (four values) is none."""
    try:
        brand, app_id, openid, unionid, expires = session.unseal(
            settings, _BIND_SEAL, request.cookies.get(BIND_COOKIE) or ""
        )
    except (ValueError, TypeError):
        return None
    if brand != brand_id or expires < time.time():
        return None
    if not isinstance(app_id, str) or not isinstance(openid, str):
        return None
    return app_id, openid, unionid if isinstance(unionid, str) else None


async def profile_card(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, brand_id: int,
    member_id: int, csrf: str, lang: Lang,
) -> str:  # fmt: skip
    """The profile page's WeChat card: linked (and the unlink button), or the way to link."""
    from app.wechat import account, bindings

    bound = await bindings.openid_of(conn, member_id) is not None
    if not bound and not await account.enabled(conn, brand_id):
        return ""
    if bound:
        action = (
            f'<form method="post" action="/member/wechat/unbind" class="quiet">'
            f'<input type="hidden" name="csrf" value="{html.esc(csrf)}">'
            f'<input type="hidden" name="lang" value="{html.esc(lang)}">'
            f'<button type="submit" class="quiet">{html.esc(word("wechat_unlink", lang))}</button>'
            "</form>"
        )
        state = word("wechat_linked", lang)
    else:
        action = (
            f'<a class="button" id="wechat-link" href="/member/wechat?brand={brand_id}&amp;'
            f'lang={lang}">{html.esc(word("wechat_link", lang))}</a>'
        )
        state = word("wechat_not_linked", lang)
    return (
        f'<section class="card" id="wechat" data-bound="{str(bound).lower()}">'
        f"<h2>{html.esc(word('wechat_title', lang))}</h2><p>{html.esc(state)}</p>{action}"
        "</section>"
    )


# -- OAuth ---------------------------------------------------------------------------------------


@get("/member/wechat", **_PAGE)
async def start(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, redis: Any
) -> Response[str]:
    """To WeChat's authorize page (snsapi_base) with a fresh state bound to this browser. Each
    start keeps a state in Redis: a client IP starts ``member_wechat_ip_max`` an hour at most
    (429), and a ``claim`` that is no claim ticket of ours is not carried."""
    from app.wechat import account

    lang, remember = session.language(request, settings)
    try:
        ip = request.client.host if request.client else "unknown"
        await member_limits(request.app.state).wechat_started(ip)
    except AppError as exc:
        seconds = str((exc.headers or {}).get("Retry-After") or "60")
        text = word("err_rate_limited", lang).format(seconds=seconds)
        body = html.status("error", word("error_title", lang), text)
        title = word("wechat_title", lang)
        return _show(
            lang, remember, title, body, "/member/login", 429, headers={"Retry-After": seconds}
        )
    brand_id = _number(request.query_params.get("brand")) or _number(
        request.cookies.get(session.BRAND_COOKIE)
    )
    claim = request.query_params.get("claim") or ""
    if len(claim) > 1000 or session.carried_ticket(settings, claim) is None:
        claim = ""  # a sealed ticket is ~150 characters; anything else would only take room
    if brand_id is None:
        body = html.status("pin_required", word("login_title", lang), word("no_brand", lang))
        return _show(lang, remember, word("login_title", lang), body, "/member/login", 400)
    await auth.require_brand(conn, brand_id)
    found = await account.load(conn, settings, brand_id)
    if found is None:
        return _error(lang, remember, "wechat_off", 404, brand_id)
    state = secrets.token_urlsafe(32)
    kept = json.dumps({"brand": brand_id, "claim": claim, "lang": lang})
    await redis.set(_state_key(settings, state), kept, ex=STATE_TTL)
    query = urlencode(
        {
            "appid": found.app_id,
            "redirect_uri": f"{settings.public_url}{CALLBACK}",
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
        }
    )
    url = f"{settings.wechat_open_url.rstrip('/')}/connect/oauth2/authorize?{query}#wechat_redirect"
    cookie = session.cookie(request, settings, STATE_COOKIE, state, STATE_TTL, "/member/wechat")
    return _see_other(url, [cookie])


async def _take_state(
    request: Request[Any, Any, Any], settings: Settings, redis: Any
) -> dict[str, Any] | None:
    """What the state of this callback was made for, taken out of Redis (once); None when it
    is not this browser's, or used, or expired."""
    given = request.query_params.get("state") or ""
    mine = request.cookies.get(STATE_COOKIE) or ""
    if not given or len(given) > 100 or not hmac.compare_digest(given.encode(), mine.encode()):
        return None
    kept = await redis.getdel(_state_key(settings, given))
    if kept is None:
        return None
    try:
        found = json.loads(kept)
    except ValueError:
        return None
    return found if isinstance(found, dict) and isinstance(found.get("brand"), int) else None


@get(CALLBACK, **_PAGE)
async def callback(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, redis: Any
) -> Response[str]:
    """Back from WeChat: the state checked and spent, the code exchanged, then signed in, bound
    or sent to the phone form (see the module's docstring)."""
    from app.wechat import account
    from app.wechat.gateway import WechatGateway, WechatRefused, WechatUnavailable

    lang, remember = session.language(request, settings)
    kept = await _take_state(request, settings, redis)
    gone = session.cookie(request, settings, STATE_COOKIE, "", 0, "/member/wechat")
    if kept is None:
        response = _error(lang, remember, "wechat_state_invalid", 400, None)
        response.cookies.append(gone)
        return response
    brand_id, claim = int(kept["brand"]), str(kept.get("claim") or "")
    lang = "en" if kept.get("lang") == "en" else lang
    code = request.query_params.get("code") or ""
    found = await account.load(conn, settings, brand_id)
    if found is None:
        return _error(lang, remember, "wechat_off", 404, brand_id)
    if not code or len(code) > 512:
        return _error(lang, remember, "wechat_code_invalid", 400, brand_id)
    gateway = WechatGateway(settings, redis)
    try:
        who = await gateway.oauth_identity(found.app_id, found.secret, code)
    except WechatRefused:
        return _error(lang, remember, "wechat_code_invalid", 400, brand_id)
    except WechatUnavailable:
        return _error(lang, remember, "wechat_unavailable", 503, brand_id)
    finally:
        await gateway.aclose()
    return await _signed_in_or_bind(
        request, conn, settings, found.app_id, brand_id, claim, who, lang, gone
    )


async def _signed_in_or_bind(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, app_id: str, brand_id: int,
    claim: str, who: Any, lang: Lang, gone: Cookie,
) -> Response[str]:  # fmt: skip
    """``who``: the openid ``app_id`` gave, the brand's account's app when it was read."""
    from app.wechat import account, bindings

    try:
        await auth.require_brand(conn, brand_id)
    except AppError:
        return _error(lang, None, "wechat_off", 404, brand_id)
    member_id = await bindings.member_of(conn, brand_id, who.openid)
    if member_id is None:
        current = await session.member_of(request, conn, settings)
        if current is not None and current.brand_id == brand_id:  # linking from the profile
            linked = await bindings.bind(
                conn, brand_id, current.id, who.openid, who.unionid, app_id=app_id
            )
            if not linked and await account.app_id_of(conn, brand_id) != app_id:
                # the brand switched apps since this round began: tap again, through the new one
                return _error(lang, None, "wechat_state_invalid", 400, brand_id)
            if not linked:
                return _error(lang, None, "wechat_taken", 409, brand_id)
            return _see_other("/member/profile", [gone])
        pending = _seal_pending(settings, brand_id, app_id, who.openid, who.unionid)
        cookie = session.cookie(request, settings, BIND_COOKIE, pending, BIND_TTL)
        return _see_other(_login_url(brand_id, claim) + f"&lang={lang}", [gone, cookie])
    row = await (
        await conn.execute(
            "UPDATE members SET last_login_at = now() WHERE id = %s AND status <> 'erased' "
            "RETURNING id",
            (member_id,),
        )
    ).fetchone()
    if row is None:  # erased (its binding goes with the erasure; never signed in)
        return _error(lang, None, "err_member_erased", 401, brand_id)
    token, _ = issue_token(settings, member_id)
    cookies = [
        gone,
        session.cookie(request, settings, session.MEMBER_COOKIE, token, settings.member_token_ttl),
        session.cookie(request, settings, session.BRAND_COOKIE, str(brand_id), 365 * 86400),
    ]
    # with a claim ticket: the sign-in page, signed in, offers the claim (one tap)
    return _see_other(_login_url(brand_id, claim) if claim else "/member", cookies)


@post("/member/wechat/unbind", **_POST)
async def unbind(request: Request[Any, Any, Any], conn: Conn, settings: Settings) -> Response[str]:
    """The member unlinks their WeChat (CSRF-checked): WeChat no longer signs them in, and no
    template message reaches them."""
    from app.wechat import bindings

    form = await read_form(request, 5)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    member = await session.member_of(request, conn, settings)
    if member is None:
        return _see_other("/member/login")
    await bindings.unbind(conn, member.brand_id, member.id)
    link = f'<p><a href="/member/profile">{html.esc(word("profile_title", lang))}</a></p>'
    body = html.status("ok", word("wechat_title", lang), word("wechat_unlinked", lang), link)
    return _show(lang, remember, word("wechat_title", lang), body, "/member/profile")


route_handlers = [start, callback, unbind]
