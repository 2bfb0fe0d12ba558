"""Consumer H5 member pages (seed 1.10.1, SPEC M1–M4): sign-up and sign-in by phone and SMS code,
claiming a code's points from its verification answer, the points balance and history, gifts and
redeeming them, the member's redemption codes and scan history.

Server-rendered like the scan page (``app/web/pages.py``): plain forms posting to the server, no
script needed. The handlers call the member services directly (``app.members.auth``, ``points``,
``gifts``, ``redemptions``, ``admin``), the same functions as the JSON API; the session is the
``tc_member`` cookie and every post carries a CSRF token (``app/web/session.py`` says why).

A refusal of a service (wrong code, throttled, frozen, not enough points…) is shown as a page with
its status code (401, 403, 409, 422, 429 with Retry-After) and a sentence in the page's language.
Services that write before they may refuse (a code stored before the SMS throttle answers, stock
taken before the balance is found short) run inside a savepoint, so a refusal writes nothing.

| URL | |
| --- | --- |
| ``GET /member/login?brand&claim`` | the phone form (already signed in: home, or the claim) |
| ``POST /member/otp`` | sends the code, shows the code form |
| ``POST /member/login`` | signs in (sets the cookie); with a claim ticket, claims at once |
| ``POST /member/logout`` | revokes the token, drops the cookie |
| ``GET /member`` | balance and the way to everything else |
| ``POST /member/claim`` | claims the ticket's code (from the verification answer) |
| ``GET /member/points``, ``/member/gifts``, ``/member/codes``, ``/member/scans`` | own lists |
| ``GET /member/profile``, ``POST /member/profile`` | the profile form; saves it |
| ``POST /member/redeem`` | redeems a gift; shows the code (also sent by SMS) |
| ``GET`` of a form's address | 303 to the page it belongs to (``FORM_PAGES``) |

The ``claim`` of the sign-in pages may carry a draw link's ticket instead (``session.DRAW``, from
``app.web.draw_pages`` signed out): signed in, the visitor is sent back to its draw form.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State

from app.claims import ClaimIn
from app.config import Settings
from app.db import Conn
from app.errors import AppError, BadRequest
from app.members import admin, auth, erasure, gifts, points, profile, redemptions
from app.members.limits import member_limits
from app.members.phones import normalise_phone
from app.members.principal import Member
from app.members.schemas_points import RedeemIn
from app.textguard import user_agent
from app.web import (
    content_html,
    html,
    marketing_html,
    member_html,
    profile_form,
    session,
    wechat_pages,
)
from app.web.i18n import WORDS, Lang, word
from app.web.pages import MAX_FORM, PAGE_ERRORS, lang_switch, page_retry, read_form, respond

PER_PAGE = 20
_PAGE: dict[str, Any] = {"include_in_schema": False, "exception_handlers": PAGE_ERRORS}
_POST: dict[str, Any] = {**_PAGE, "status_code": 200, "request_max_body_size": MAX_FORM}


# -- helpers -----------------------------------------------------------------------------------


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """A url-encoded form of the member and clerk pages, one value per field."""
    return await read_form(request, 20)


def _show(
    lang: Lang,
    remember: Cookie | None,
    title: str,
    body: str,
    path: str,
    status: int = 200,
    cookies: list[Cookie | None] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    page = html.page(lang, title, body, lang_switch(path, lang), "member_site")
    real = [c for c in cookies or [] if c is not None]
    return respond(page, lang, remember, status, headers=headers, cookies=real)


def _see_other(location: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response(
        "",
        status_code=303,
        headers={"Location": location, "Cache-Control": "no-store"},
        cookies=cookies or [],
    )


def _retry(exc: AppError) -> str:
    retry = (exc.headers or {}).get("Retry-After")
    if retry is None and isinstance(exc.details, dict):
        retry = str(exc.details.get("retry_after") or "")
    return retry or "60"


def refusal(exc: AppError, lang: Lang) -> str:
    """A service's refusal as a sentence in the page's language."""
    key = f"err_{exc.code}"
    if key in WORDS:
        details = exc.details if isinstance(exc.details, dict) else {}
        return word(key, lang, tries_left=details.get("tries_left", 0), seconds=_retry(exc))
    if exc.code in ("not_genuine", "wrong_pin", "locked"):
        return exc.message  # the verification's own answer, already in the page's language
    if " / " in exc.message:  # a service's own "中文 / English" message (as the clerk pages)
        zh, _, en = exc.message.partition(" / ")
        return zh if lang == "zh" else en
    return word("err_not_found" if exc.status == 404 else "error", lang)


def _refused(
    exc: AppError,
    lang: Lang,
    remember: Cookie | None,
    path: str,
    back: tuple[str, str] | None = None,
) -> Response[str]:
    """The refusal page: the status of the error, its sentence, a way back."""
    link = (
        f'<p><a href="{html.esc(back[0])}">{html.esc(word(back[1], lang))}</a></p>' if back else ""
    )
    body = html.status("error", word("error_title", lang), refusal(exc, lang), link)
    headers = {"Retry-After": _retry(exc)} if exc.status == 429 else None
    return _show(lang, remember, word("error_title", lang), body, path, exc.status, headers=headers)


def _login_url(brand_id: int | None, claim: str = "") -> str:
    query = [f"brand={brand_id}"] if brand_id else []
    if claim:
        query.append(f"claim={quote(claim, safe='')}")
    return "/member/login" + ("?" + "&".join(query) if query else "")


def _paged(path: str, page: int) -> str:
    """A list page's own address: the language switch keeps its page (a probe: page 1)."""
    return f"{path}?page={page}" if page > 1 else path


def _brand_hint(request: Request[Any, Any, Any]) -> int | None:
    value = request.cookies.get(session.BRAND_COOKIE) or ""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 16 else None


def _brand_param(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 16 else None


async def _signed_in(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Member | Response[str]:
    """The member, or the way to the sign-in page."""
    member = await session.member_of(request, conn, settings)
    if member is None:
        return _see_other(_login_url(_brand_hint(request)))
    return member


# -- signing in ----------------------------------------------------------------------------------


@get("/member/login", **_PAGE)
async def login_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The phone form; signed in already: the member's home (or, with a claim, the claim)."""
    lang, remember = session.language(request, settings)
    claim = request.query_params.get("claim") or ""
    brand_id = _brand_param(request.query_params.get("brand")) or _brand_hint(request)
    member = await session.member_of(request, conn, settings)
    token, csrf_cookie = session.csrf(request, settings)
    if member is not None and (brand_id is None or brand_id == member.brand_id):
        if not claim:
            return _see_other("/member")
        drawn = session.draw_return(settings, claim, lang)
        if drawn is not None:  # a draw link's ticket, carried: back to the draw form
            return _see_other(drawn)
        body = member_html.claim_offer(lang, token, claim, True, member.brand_id)
        path = _login_url(member.brand_id, claim)  # the switch keeps the claim (a probe)
        return _show(lang, remember, word("claim_title", lang), body, path, cookies=[csrf_cookie])
    if brand_id is None:
        body = html.status("pin_required", word("login_title", lang), word("no_brand", lang))
        return _show(lang, remember, word("login_title", lang), body, "/member/login")
    # no sign-up form for a brand nobody can join (a probe: a store's id, a stale link): the
    # 404 page, as POST /member/otp answers it
    await auth.require_brand(conn, brand_id)
    body = await wechat_pages.login_extras(request, conn, settings, brand_id, claim, lang)
    body += member_html.phone_form(lang, token, brand_id, claim)
    path = _login_url(brand_id, claim)  # the language switch keeps the claim (a probe lost it)
    return _show(lang, remember, word("login_title", lang), body, path, cookies=[csrf_cookie])


@post("/member/otp", **_POST)
async def otp_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """Send a code to the phone (``app.members.auth.request_code``); the code form."""
    form = await _form(request)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    token, _ = session.csrf(request, settings)
    brand_id = _brand_param(form.get("brand"))
    claim = form.get("claim", "")
    title = word("login_title", lang)
    if brand_id is None:
        raise BadRequest("no brand")
    typed = form.get("phone", "")
    try:
        phone = normalise_phone(typed)
        async with conn.transaction():  # the stored code goes if the SMS is refused
            ip = request.client.host if request.client else "unknown"
            limits = member_limits(request.app.state)
            sent = await auth.request_code(conn, settings, limits, ip, brand_id, phone, lang)
    except AppError as exc:
        if exc.code == "sms_throttled":  # a code went out a moment ago: it may still be used
            body = member_html.code_form(
                lang, token, brand_id, phone, claim, error=refusal(exc, lang)
            )
        else:
            body = member_html.phone_form(lang, token, brand_id, claim, refusal(exc, lang), typed)
        headers = {"Retry-After": _retry(exc)} if exc.status == 429 else None
        path = _login_url(brand_id, claim)
        return _show(lang, remember, title, body, path, exc.status, headers=headers)
    minutes = max(settings.member_otp_ttl // 60, 1)
    notice = word("code_sent", lang, phone=sent.phone, minutes=minutes)
    body = member_html.code_form(lang, token, brand_id, phone, claim, notice=notice)
    return _show(lang, remember, title, body, _login_url(brand_id, claim))


@post("/member/login", **_POST)
async def login_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, state: State
) -> Response[str]:
    """Sign in with the code (the first time signs up); the cookie; then home, or the claim."""
    form = await _form(request)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    token, _ = session.csrf(request, settings)
    brand_id = _brand_param(form.get("brand"))
    claim = form.get("claim", "")
    if brand_id is None:
        raise BadRequest("no brand")
    try:
        phone = normalise_phone(form.get("phone", ""))
        signed_in = await session.member_of(request, conn, settings)
        if signed_in is not None and (signed_in.brand_id, signed_in.phone) == (brand_id, phone):
            # the form sent again by the member it signed in (a reload of the page it answered,
            # a double tap): its code is spent, the member is in. The same answer, not "invalid
            # code" (a probe); a claim sent again is claimed once (``Claimer``: its client id)
            if claim:
                return await _carry_on(request, state, settings, signed_in, claim, lang, remember)
            return _see_other("/member")
        ip = request.client.host if request.client else "unknown"
        limits = member_limits(request.app.state)
        # typed full-width by a Chinese input method, or not six digits at all: read as the
        # API reads it, before a try of the code is spent (a probe: both cost one)
        code = auth.sign_in_code(form.get("code", ""))
        signed = await auth.login(conn, settings, limits, ip, brand_id, phone, code)
    except AppError as exc:
        again = _login_url(brand_id, claim)
        if exc.code == "invalid_phone":
            return _refused(exc, lang, remember, "/member/login", (again, "sign_in"))
        body = member_html.code_form(lang, token, brand_id, phone, claim, error=refusal(exc, lang))
        headers = {"Retry-After": _retry(exc)} if exc.status == 429 else None
        title = word("login_title", lang)
        return _show(lang, remember, title, body, again, exc.status, headers=headers)
    # an openid waiting from a WeChat sign-in (app.web.wechat_pages) is bound to the member
    unbound = await wechat_pages.bind_after_login(
        request, conn, settings, brand_id, signed.member.id
    )
    await conn.commit()  # the new member must exist for the claim's own connection
    cookies = [
        *([unbound] if unbound else []),
        session.cookie(
            request,
            settings,
            session.MEMBER_COOKIE,
            signed.access_token,
            settings.member_token_ttl,
        ),
        session.cookie(request, settings, session.BRAND_COOKIE, str(brand_id), 365 * 86400),
    ]
    member = Member(signed.member.id, signed.member.brand_id, phone, signed.member.status)
    if claim:
        response = await _carry_on(request, state, settings, member, claim, lang, remember)
        response.cookies.extend(cookies)
        return response
    return _see_other("/member", cookies)


@post("/member/logout", **_POST)
async def logout_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """Sign out: the token is revoked and the cookie dropped."""
    form = await _form(request)
    session.check_csrf(request, settings, form.get("csrf", ""))
    member = await session.member_of(request, conn, settings)
    if member is not None:
        await auth.logout(conn, settings, member.id, request.cookies[session.MEMBER_COOKIE])
    gone = session.expired(request, settings, session.MEMBER_COOKIE)
    return _see_other(_login_url(_brand_hint(request)), [gone])


@get("/member/close", **_PAGE)
async def close_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """What closing the membership takes away, and the button (``app.members.erasure``)."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    token, csrf_cookie = session.csrf(request, settings)
    body = member_html.close(lang, token)
    return _show(
        lang, remember, word("close_title", lang), body, "/member/close", cookies=[csrf_cookie]
    )


@post("/member/close", **_POST)
async def close_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """Close the membership: the member's personal information erased (PIPL), the cookie
    dropped."""
    form = await _form(request)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    limits = member_limits(request.app.state)
    await erasure.erase(conn, None, member.brand_id, member.id, settings, limits)
    gone = session.expired(request, settings, session.MEMBER_COOKIE)
    body = html.status("ok", word("closed_title", lang), word("closed_message", lang))
    return _show(lang, remember, word("closed_title", lang), body, "/member", cookies=[gone])


# -- claiming ----------------------------------------------------------------------------------


async def _claim(
    request: Request[Any, Any, Any],
    state: State,
    settings: Settings,
    member: Member,
    ticket_text: str,
    lang: Lang,
    remember: Cookie | None,
) -> Response[str]:
    """Claim the ticket's code for the member (``Claimer.claim``: a verification, then credit)."""
    ticket = session.open_ticket(settings, ticket_text)
    back = ("/member", "to_home")
    if ticket is None:
        body = html.status("error", word("error_title", lang), word("ticket_expired", lang))
        return _show(lang, remember, word("claim_title", lang), body, "/member", 410)
    data = ClaimIn(serial=ticket.serial, pin=ticket.pin, client_id=ticket.client_id, lang=lang)
    ip = request.client.host if request.client else None
    try:
        # the answer page's check of the code (its ticket's nonce) is not counted again
        checked = page_retry(ticket.nonce)
        out, _ = await state.claimer.claim_points(
            member, data, ip, user_agent(request.scope), checked
        )
    except AppError as exc:
        return _refused(exc, lang, remember, "/member", back)
    link = f'<a class="button" href="/member/gifts">{html.esc(word("nav_gifts", lang))}</a>'
    if out.status != "credited":  # on hold (app.forensics.holds): the points wait for review
        message = word("claim_review_message", lang, points=out.points)
        body = html.status("suspicious", word("claim_review", lang), message, link)
        return _show(lang, remember, word("claim_review", lang), body, "/member")
    message = word("claimed_message", lang, points=out.points, balance=out.balance)
    body = html.status("ok", word("claimed", lang), message, link)
    return _show(lang, remember, word("claimed", lang), body, "/member")


async def _carry_on(
    request: Request[Any, Any, Any],
    state: State,
    settings: Settings,
    member: Member,
    claim: str,
    lang: Lang,
    remember: Cookie | None,
) -> Response[str]:
    """What a sign-in carrying ``claim`` leads to: a draw link's ticket back to its draw form
    (``session.draw_return``), a claim ticket to its claim."""
    drawn = session.draw_return(settings, claim, lang)
    if drawn is not None:
        return _see_other(drawn)
    return await _claim(request, state, settings, member, claim, lang, remember)


@post("/member/claim", **_POST)
async def claim_post(
    request: Request[Any, Any, Any], state: State, settings: Settings
) -> Response[str]:
    """One tap under the verification answer: the code's points (signed out: sign in first)."""
    form = await _form(request)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    ticket = form.get("ticket", "")
    async with state.pool.connection() as conn:  # not held while the claim waits for its round
        member = await session.member_of(request, conn, settings)
    if member is None:
        opened = session.open_ticket(settings, ticket)
        return _see_other(_login_url(opened.brand_id if opened else None, ticket))
    return await _claim(request, state, settings, member, ticket, lang, remember)


# -- the member's own pages ----------------------------------------------------------------------


def _page_no(request: Request[Any, Any, Any]) -> int:
    value = request.query_params.get("page") or "1"
    return (
        max(1, min(int(value), 10_000))
        if value.isascii() and value.isdigit() and len(value) < 6
        else 1
    )


@get("/member", **_PAGE)
async def home_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The member's home: balance, phone (masked on screen), the way to everything else."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    token, csrf_cookie = session.csrf(request, settings)
    balance = await points.balance(conn, member.id)
    more = content_html.member_links(lang, member.brand_id)  # the brand's pages, the profile
    more += marketing_html.member_links(lang)  # promotions, complaints and suggestions
    body = member_html.home(lang, token, member.phone, member.status == "frozen", balance, more)
    return _show(lang, remember, word("home_title", lang), body, "/member", cookies=[csrf_cookie])


@get("/member/points", **_PAGE)
async def points_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The balance and the ledger, newest first."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    page = _page_no(request)
    out = await points.history(conn, member, page, PER_PAGE)
    body = member_html.points_list(lang, out.balance, out.items)
    body += member_html.pager("/member/points", page, PER_PAGE, out.total, lang)
    return _show(lang, remember, word("nav_points", lang), body, _paged("/member/points", page))


@get("/member/gifts", **_PAGE)
async def gifts_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The gifts offered to the member now; a redeem button under each affordable one."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    token, csrf_cookie = session.csrf(request, settings)
    page = _page_no(request)
    offered = await gifts.member_gifts(conn, member, page, PER_PAGE)
    balance = await points.balance(conn, member.id)
    nonce = secrets.token_hex(8)  # one client id per gift and page view: a double tap is one
    body = member_html.gift_list(lang, token, balance, offered.items, nonce)
    body += member_html.pager("/member/gifts", page, PER_PAGE, offered.total, lang)
    title = word("gifts_title", lang)
    path = _paged("/member/gifts", page)
    return _show(lang, remember, title, body, path, cookies=[csrf_cookie])


def redeem_in(gift_id: int, client_id: str, lang: Lang) -> RedeemIn:
    """The redemption a form asks for, under the API's rules (a client id of 1 to 64 printable
    ASCII characters): 400 otherwise. A struct made by hand is not checked (a probe stored a
    client id of spaces and Chinese)."""
    try:
        return msgspec.convert({"gift_id": gift_id, "client_id": client_id, "lang": lang}, RedeemIn)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid redemption: {exc}") from None


@post("/member/redeem", **_POST)
async def redeem_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """Redeem a gift (``app.members.redemptions.redeem``); the code, also sent by SMS."""
    form = await _form(request)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    back = ("/member/gifts", "back_to_gifts")
    gift_id = _brand_param(form.get("gift_id"))
    client_id = form.get("client_id", "")
    if gift_id is None or not client_id:
        raise BadRequest("gift_id and client_id are required")
    try:
        async with conn.transaction():  # stock taken is given back if the balance is short
            data = redeem_in(gift_id, client_id, lang)
            out, _ = await redemptions.redeem(conn, settings, member, data)
    except AppError as exc:
        return _refused(exc, lang, remember, "/member/gifts", back)
    extra = (
        f'<section class="card" id="redemption">{member_html.redemption_facts(lang, out)}'
        f'<a class="button" href="/member/codes">{html.esc(word("nav_codes", lang))}</a></section>'
    )
    body = html.status("ok", word("redeemed", lang), word("redeemed_message", lang)) + extra
    return _show(lang, remember, word("redeemed", lang), body, "/member/codes")


@get("/member/codes", **_PAGE)
async def codes_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The member's redemption codes, newest first, with their state."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    page = _page_no(request)
    out = await redemptions.member_redemptions(conn, settings, member, None, page, PER_PAGE, lang)
    body = member_html.code_list(lang, out.items)
    body += member_html.pager("/member/codes", page, PER_PAGE, out.total, lang)
    return _show(lang, remember, word("codes_title", lang), body, _paged("/member/codes", page))


@get("/member/scans", **_PAGE)
async def scans_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """What the member scanned (verifications made signed in: the claims), newest first."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    page = _page_no(request)
    out = await admin.own_scans(conn, member, page, PER_PAGE)
    body = member_html.scan_list(lang, out.items)
    body += member_html.pager("/member/scans", page, PER_PAGE, out.total, lang)
    return _show(lang, remember, word("scans_title", lang), body, _paged("/member/scans", page))


@get("/member/profile", **_PAGE)
async def profile_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The member's profile as a form (``app/web/profile_form.py``)."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    token, csrf_cookie = session.csrf(request, settings)
    saved = await profile.get_profile(conn, member)
    body = profile_form.page(lang, token, profile_form.values_of(saved))
    body += await wechat_pages.profile_card(
        request, conn, settings, member.brand_id, member.id, token, lang
    )
    title = word("profile_title", lang)
    return _show(lang, remember, title, body, "/member/profile", cookies=[csrf_cookie])


@post("/member/profile", **_POST)
async def profile_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """Save the profile as ``PATCH /members/me`` does (``app.members.profile``); refused: the
    form again as typed, the reason, the error's status."""
    form = await _form(request)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    token, _ = session.csrf(request, settings)
    title = word("profile_title", lang)
    try:
        async with conn.transaction():
            saved = await profile.update_profile(conn, member, profile_form.patch_of(form))
    except AppError as exc:
        error = profile_form.refusal(exc, lang)
        body = profile_form.page(lang, token, form, error=error)
        return _show(lang, remember, title, body, "/member/profile", exc.status)
    values = profile_form.values_of(saved)
    body = profile_form.page(lang, token, values, notice=word("profile_saved", lang))
    return _show(lang, remember, title, body, "/member/profile")


# -- a form's address opened again ---------------------------------------------------------------

# The forms answer in place, so their address stays in the address bar; opened again by GET
# (WeChat's "open in browser", a bookmark, a link copied from the bar) it leads to the page it
# belongs to, not routing's JSON 405 (a probe). GET changes nothing: no sign-out, no claim.
FORM_PAGES = {
    "/member/otp": "/member/login",  # the sign-in page (of the brand last signed in to)
    "/member/logout": "/member/login",
    "/member/claim": "/member",  # the claim's ticket is gone with the form
    "/member/redeem": "/member/gifts",
}


@get(list(FORM_PAGES), **_PAGE)
async def form_address(request: Request[Any, Any, Any]) -> Response[str]:
    """The page a form's address belongs to (``FORM_PAGES``), by a 303."""
    page = FORM_PAGES.get(request.scope["path"].rstrip("/"), "/member")  # not request.url: Host
    if page == "/member/login":
        page = _login_url(_brand_hint(request))
    return _see_other(page)


route_handlers = [
    login_page,
    otp_post,
    login_post,
    logout_post,
    close_page,
    close_post,
    claim_post,
    home_page,
    points_page,
    gifts_page,
    redeem_post,
    codes_page,
    scans_page,
    profile_page,
    profile_post,
    form_address,
]
