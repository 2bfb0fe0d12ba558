"""The consumer's lucky draw page (扫码抽奖, SPEC B4): ``GET /member/draw?serial`` shows the PIN
form of the unit (signed out: the sign-in page of its brand first, then back to this form — see
``_sign_in_first``), ``POST /member/draw`` draws through
``app.draws.claims.Drawer`` — the same verification, lockout and once-per-code rule as
``POST /members/me/draws`` — and shows the prize, or "no prize", or why not.

Reached from the answer page's link, the form carries that page's sealed ticket
(``session.issue_ticket``) instead of asking for the PIN: the draw's verification is the answer
page's check again (``page_retry`` of its nonce, as the points claim of the ticket), not another
check of the code; its client id is the ticket's nonce's (``h5d-…``). Otherwise the form carries
a client id made when the form is shown, so a post sent twice (a double tap, a
reload) answers the first draw. The answer page of a genuine unit links here while a campaign
covering the unit runs (``app.web.draw_html``).
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State

from app.claims import ClaimIn
from app.config import Settings
from app.errors import AppError
from app.textguard import user_agent
from app.web import html, session
from app.web.draw_html import w as _w
from app.web.i18n import Lang, word
from app.web.member_html import alert, form, hidden
from app.web.member_pages import _brand_hint, _login_url, _see_other, refusal
from app.web.pages import MAX_FORM, PAGE_ERRORS, lang_switch, page_retry, read_form, respond
from app.web.session import Ticket

_PAGE: dict[str, Any] = {"include_in_schema": False, "exception_handlers": PAGE_ERRORS}
_POST: dict[str, Any] = {**_PAGE, "status_code": 200, "request_max_body_size": MAX_FORM}


def _show(lang: Lang, remember: Any, body: str, status: int = 200, cookies: Any = None) -> Any:
    page = html.page(
        lang, _w("title", lang), body, lang_switch("/member/draw", lang), "member_site"
    )
    return respond(page, lang, remember, status, cookies=[c for c in cookies or [] if c])


def _form_body(lang: Lang, csrf: str, serial: str, error: str = "", ticket: str = "") -> str:
    """The draw form: the serial and the PIN, or the answer page's ticket (its PIN proved)."""
    if ticket:  # the code and its PIN are the ticket's; the draw's client id its nonce's
        fields = f"{hidden('ticket', ticket)}{hidden('serial', serial)}{hidden('lang', lang)}"
    else:
        fields = (
            f'<label>{html.esc(_w("serial", lang))}<input name="serial" id="draw-serial" '
            f'value="{html.esc(serial)}" maxlength="512" required></label>'
            f'<label>{html.esc(_w("pin", lang))}<input name="pin" id="draw-pin" '
            'inputmode="numeric" autocomplete="off" maxlength="10" required></label>'
            f"{hidden('client_id', 'h5-' + secrets.token_hex(8))}{hidden('lang', lang)}"
        )
    return (
        f'<section class="card" id="draw-form"><h2>{html.esc(_w("title", lang))}</h2>'
        f"{alert(error)}{form('/member/draw', csrf, fields, _w('draw', lang))}</section>"
    )


def _ticket(settings: Settings, text: str, serial: str) -> Ticket | None:
    """The answer page's ticket of ``serial`` (none: expired, forged, another code's)."""
    opened = session.open_ticket(settings, text) if text else None
    return opened if opened is not None and opened.serial == serial else None


def _sign_in_first(
    request: Request[Any, Any, Any], text: str, ticket: Ticket | None
) -> Response[str]:
    """Signed out (a consumer's first scan): the sign-in page of the ticket's brand (no ticket:
    the brand last signed in to), carrying the ticket as the points claim carries its own
    (``claim``, behind ``session.DRAW``): signed in, the visitor is back on this form."""
    if ticket is None:
        return _see_other(_login_url(_brand_hint(request)))
    return _see_other(_login_url(ticket.brand_id, session.DRAW + text))


@get("/member/draw", **_PAGE)
async def draw_page(request: Request[Any, Any, Any], state: State, settings: Settings) -> Any:
    """The draw form of a unit (``serial`` from the answer page's link)."""
    lang, remember = session.language(request, settings, request.query_params.get("lang"))
    serial = (request.query_params.get("serial") or "")[:512]
    text = (request.query_params.get("ticket") or "")[:1024]
    opened = _ticket(settings, text, serial)
    async with state.pool.connection() as conn:
        member = await session.member_of(request, conn, settings)
    if member is None:
        return _sign_in_first(request, text, opened)
    token, csrf_cookie = session.csrf(request, settings)
    ticket = text if opened else ""
    body = _form_body(lang, token, serial, ticket=ticket)
    return _show(lang, remember, body, cookies=[csrf_cookie])


@post("/member/draw", **_POST)
async def draw_post(request: Request[Any, Any, Any], state: State, settings: Settings) -> Any:
    """Draw once for the unit of the form (a verification first, as every claim)."""
    fields = await read_form(request, 10)
    lang, remember = session.language(request, settings, fields.get("lang"))
    session.check_csrf(request, settings, fields.get("csrf", ""))
    serial, pin = fields.get("serial", "").strip(), fields.get("pin", "").strip()
    ticket = _ticket(settings, fields.get("ticket", ""), serial)
    async with state.pool.connection() as conn:  # not held while the draw waits for its round
        member = await session.member_of(request, conn, settings)
    if member is None:  # signed out since the form was shown
        return _sign_in_first(request, fields.get("ticket", ""), ticket)
    token, csrf_cookie = session.csrf(request, settings)
    client_id, checked = fields.get("client_id", ""), ""
    if ticket is not None:  # the answer page's check of the code is not counted again
        pin, client_id, checked = ticket.pin, f"h5d-{ticket.nonce}", page_retry(ticket.nonce)
    body_in = {"serial": serial, "pin": pin, "client_id": client_id, "lang": lang}
    try:
        data = msgspec.convert(body_in, ClaimIn)  # the API's own checks (pattern, lengths)
    except msgspec.ValidationError:
        body = _form_body(lang, token, serial, _w("bad_input", lang))
        return _show(lang, remember, body, 400, cookies=[csrf_cookie])
    ip = request.client.host if request.client else None
    try:
        out, _ = await state.drawer.draw(member, data, ip, user_agent(request.scope), checked)
    except AppError as exc:
        body = _form_body(lang, token, serial, refusal(exc, lang))
        return _show(lang, remember, body, exc.status, cookies=[csrf_cookie])
    home = f'<a class="button" href="/member">{html.esc(word("to_home", lang))}</a>'
    if out.status != "drawn":  # the member's fraud hold: under review, or rejected
        key = "review" if out.status == "under_review" else "rejected"
        body = html.status("suspicious", _w(key, lang), _w(f"{key}_message", lang), home)
    elif out.prize is None:
        body = html.status("suspicious", _w("lost", lang), _w("lost_message", lang), home)
    elif out.prize.kind == "points":
        message = _w("won_points", lang, name=out.prize.name, points=out.prize.points)
        body = html.status("ok", _w("won", lang), message, home)
    else:
        message = _w("won_prize", lang, name=out.prize.name)
        body = html.status("ok", _w("won", lang), message, home)
    return _show(lang, remember, body)


route_handlers = [draw_page, draw_post]
