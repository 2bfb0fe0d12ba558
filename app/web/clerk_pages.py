"""The store clerk's rebate pages (issue 16 item 2, seed 1.4): the clerk scans the product's outer
QR code, signs in, types the PIN from inside the pack, and the sale and its rebate are recorded;
the clerk's own totals and claims.

Server-rendered like the member pages (``app/web/member_pages.py``): plain forms, no script
needed, zh-CN by default and English by the same switch. The claim is the one of
``POST /rebates/claims`` (``app.rebates.claims.Claimer.claim_rebate``: verification, lockout,
once per code, the sale recorded, diversion refusals kept); the totals and the list are
``app.rebates.queries.clerk_summary``.

Session. The staff tokens of ``POST /auth/login`` (``app.auth.service.login`` with its limiter):
the access token in the cookie ``tc_clerk``, the refresh token in ``tc_clerk_refresh`` — both
HttpOnly, Secure over https, SameSite=Lax, path ``/clerk``. An access token lasts minutes
(``access_token_ttl``); when it has expired the refresh token renews the pair (rotation, as
``POST /auth/refresh``), so a clerk stays signed in through a shift. The clerk is looked up from
the token by the claimer's ``Clerks`` (active, ``sales.claim``, of a store) on every page.
Signing out revokes the refresh token and drops both cookies. Every post carries the CSRF token of
``app.web.session`` (sign-in included); a post without it is a 403 page.

Two steps. Step 1 (``GET /clerk``, ``POST /clerk/scan``, or ``GET /clerk?code=`` from a link)
reads the code — a bare serial, a ``/c/{serial}`` URL or a Digital Link — and checks it with the
scheme alone: malformed and forged codes are answered at once, without the database. Step 2 shows
the product and the PIN form, which carries a ticket, not the serial alone: the code as scanned (a
Digital Link's GTIN is verified against the unit's product, as by the API), the clerk, a nonce (the
claim's ``client_id``: pressing twice is one claim) and an expiry, sealed with AES-GCM under
``Settings.subkey("h5-clerk-claim")``. A refusal is a page with its status and a sentence
in the page's language (``clerk_err_<code>`` words); a wrong PIN shows the form again.

Hidden characters. GS1's group separator a keyboard-wedge scanner types with a GS1 symbol's data
is taken out of a scan (``scan_post``); another control character in the scan or the sign-in
form is that form again as typed less it, with why (``_typed_form``); a link's code with one
(refused by the edge check) is step 1 or the sign-in form with the code less it
(``app.web.pages._clerk_refusal``).

| URL | |
| --- | --- |
| ``GET /clerk/login?code``, ``POST /clerk/login`` | staff sign-in; then step 1 or 2 |
| ``POST /clerk/logout`` | revokes the refresh token, drops the cookies |
| ``GET /clerk?code`` | step 1 with the totals and the latest claims; with ``code``, step 2 |
| ``POST /clerk/scan`` | step 2: the product and the PIN form |
| ``POST /clerk/claim`` | the claim; the amount, or why not |
| ``GET /clerk/claims?page`` | the clerk's own claims with the totals |
"""

from __future__ import annotations

import secrets
import time
from typing import Any, NamedTuple
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State

from app.auth import service
from app.auth.limits import login_limiter
from app.auth.principal import Principal
from app.auth.schemas import TokenOut
from app.claims import ClaimIn
from app.codes.batches import load_batches, made_under
from app.codes.lookup import case_label
from app.codes.scheme import (
    MalformedSerial,
    SerialError,
    scanned,
    serial_from_scan,
    sscc_from_scan,
)
from app.config import Settings
from app.db import Conn
from app.errors import AppError, Unauthorized
from app.paging import PageNo
from app.rebates.queries import clerk_summary
from app.textguard import user_agent
from app.web import clerk_html, html, session
from app.web.i18n import WORDS, Lang, word
from app.web.member_html import pager
from app.web.member_pages import _form, _retry, _see_other  # the pages' shared helpers
from app.web.pages import (
    MAX_FORM,
    MAX_SERIAL,
    PAGE_ERRORS,
    form_of,
    lang_switch,
    normalise_pin,
    read_form,
    respond,
)

ACCESS_COOKIE = "tc_clerk"
REFRESH_COOKIE = "tc_clerk_refresh"
COOKIE_PATH = "/clerk"
TICKET_TTL = 30 * 60  # seconds between the scan and the PIN
_TICKET = "h5-clerk-claim"  # the tickets' sealing purpose (``Settings.subkey``)
PER_PAGE = 20
RECENT = 5
_PAGE: dict[str, Any] = {"include_in_schema": False, "exception_handlers": PAGE_ERRORS}
_POST: dict[str, Any] = {**_PAGE, "status_code": 200, "request_max_body_size": MAX_FORM}
# The forms shown again as typed (``_typed_form``): their control characters are left to the
# handler (raw_body: ``read_form`` refuses them as the edge does); refused at the edge, the clerk
# got the error page, the username or the scan lost (probes)
_RETYPED_POST: dict[str, Any] = {**_POST, "opt": {"raw_body": True}}

_UNIT = """
SELECT p.name, p.spec, p.colour_no, p.image_url, u.lot
  FROM unit_state u JOIN products p ON p.id = u.product_id
 WHERE u.code = %s AND u.brand_id = %s
"""


# -- helpers -----------------------------------------------------------------------------------


async def _unit(conn: Conn, code: int, brand_id: int) -> dict[str, Any] | None:
    """The product and lot of a unit of the clerk's brand (None: not one of the brand's)."""
    row = await (await conn.execute(_UNIT, (code, brand_id))).fetchone()
    return dict(row) if row else None


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
    page = html.page(lang, title, body, lang_switch(path, lang), "clerk_site")
    real = [c for c in cookies or [] if c is not None]
    all_headers = {"Content-Security-Policy": clerk_html.CSP, **(headers or {})}
    return respond(page, lang, remember, status, headers=all_headers, cookies=real)


def _with_code(path: str, code: str, lang: Lang | None = None) -> str:
    """``path`` carrying the code to go on with (and the language just chosen, if any)."""
    query = [f"code={quote(code[:MAX_SERIAL], safe='')}"] if code else []
    query += [f"lang={lang}"] if lang else []
    return f"{path}?{'&'.join(query)}" if query else path


# The organisation a diversion refusal names, by its code (details of app.rebates.claims).
_WHERE = {
    "wrong_store": "expected_store",
    "wrong_agent": "expected_agent",
    "not_delivered": "held_by",
}


def _where(exc: AppError, details: dict[str, Any]) -> str:
    org = details.get(_WHERE.get(exc.code, ""))
    return str(org.get("name") or "?") if isinstance(org, dict) else "?"


def refusal(exc: AppError, lang: Lang) -> str:
    """A refusal of the claim (or of signing in) as a sentence in the page's language."""
    details = exc.details if isinstance(exc.details, dict) else {}
    key = f"clerk_err_{exc.code}"
    if key in WORDS:
        retry = _retry(exc)
        return word(
            key,
            lang,
            n=details.get("pin_attempts_left", 0),
            minutes=-(-int(retry) // 60) if retry.isdigit() else 1,
            seconds=retry,
            name=_where(exc, details),
        )
    if exc.status == 403:  # missing sales.claim
        return word("clerk_err_forbidden", lang)
    if " / " in exc.message:  # the rebates' own "中文 / English" messages
        zh, _, en = exc.message.partition(" / ")
        return zh if lang == "zh" else en
    return word("err_not_found" if exc.status == 404 else "error", lang)


# -- the session ---------------------------------------------------------------------------------


def _cookie(
    request: Request[Any, Any, Any], settings: Settings, key: str, value: str, max_age: int
) -> Cookie:
    return session.cookie(request, settings, key, value, max_age, COOKIE_PATH)


def _session_cookies(
    request: Request[Any, Any, Any], settings: Settings, pair: TokenOut
) -> list[Cookie]:
    return [
        _cookie(request, settings, ACCESS_COOKIE, pair.access_token, settings.access_token_ttl),
        _cookie(request, settings, REFRESH_COOKIE, pair.refresh_token, settings.refresh_token_ttl),
    ]


def _signed_out(request: Request[Any, Any, Any], settings: Settings) -> list[Cookie]:
    return [_cookie(request, settings, key, "", 0) for key in (ACCESS_COOKIE, REFRESH_COOKIE)]


class Clerk(NamedTuple):
    principal: Principal
    cookies: list[Cookie]  # the renewed session's, when the access token had expired


async def _clerk(request: Request[Any, Any, Any], state: State) -> Clerk:
    """The signed-in clerk (``Clerks.lookup``: active, ``sales.claim``, of a store), the pair
    renewed by the refresh token when the access token has expired — but not by a HEAD, which
    has no side effect of its GET (a probe: a link checker's HEAD spent the refresh token): it
    only reads whether the token is live. 401 when signed out (``service.RefreshRaced`` when
    another page of the clerk renewed the pair just now), 403 when the account may not claim."""
    clerks = state.rebate_claimer.clerks
    token = request.cookies.get(ACCESS_COOKIE) or ""
    refresh = request.cookies.get(REFRESH_COOKIE) or ""
    if token:
        try:
            return Clerk(await clerks.lookup("Bearer " + token), [])
        except Unauthorized as exc:
            if exc.code != "token_expired" or not refresh:
                raise
    elif not refresh:
        raise Unauthorized("sign in first", code="unauthorized")
    if request.method == "HEAD":
        async with state.pool.connection() as conn:
            access = await service.session_access(conn, state.settings, refresh)
        return Clerk(await clerks.lookup("Bearer " + access), [])
    async with state.pool.connection() as conn:  # committed as the block ends
        pair = await service.refresh(conn, state.settings, refresh)
    cookies = _session_cookies(request, state.settings, pair)
    try:
        return Clerk(await clerks.lookup("Bearer " + pair.access_token), cookies)
    except AppError as exc:  # the old pair is spent: the page that refuses sends the new one
        exc.renewed = cookies  # type: ignore[attr-defined]
        raise


def _renewed(exc: AppError) -> list[Cookie]:
    """The renewed session's cookies a refusal of ``_clerk`` carries (a probe: a page that left
    them out had the browser send the spent refresh token next, and a minute later that ended
    every session of the clerk)."""
    return list(getattr(exc, "renewed", []))


def _relogin(
    lang: Lang, remember: Cookie | None, cookies: list[Cookie], code: str = ""
) -> Response[str]:
    """A post of a signed-out clerk: 401, sign in again (``cookies``: those dropped, if any;
    ``code``: the scan to go on with after the sign-in)."""
    title = word("clerk_login_title", lang)
    body = html.status("error", title, word("clerk_relogin", lang))
    href = html.esc(_with_code("/clerk/login", code))
    body += f'<a class="button" href="{href}">{html.esc(word("sign_in", lang))}</a>'
    return _show(lang, remember, title, body, "/clerk/login", 401, [*cookies])


AGAIN = "again"  # the query parameter of a request asked again (``_again``): once, never twice


def _asked_again(request: Request[Any, Any, Any]) -> bool:
    """Whether this request is the one ``_again`` asked for (a refresh race answered once):
    ``again`` in its query, whatever its value (``again=0&again=1`` read as its first value
    looped on, a review)."""
    return AGAIN in request.query_params


def _marked(location: str) -> str:
    """``location`` with ``again=1`` as its query's one ``again``."""
    path, _, query = location.partition("?")
    kept = [p for p in query.split("&") if p and p.partition("=")[0] != AGAIN]
    return f"{path}?{'&'.join([*kept, f'{AGAIN}=1'])}"


def _again(request: Request[Any, Any, Any]) -> Response[str]:
    """The same request once more (307: a post is sent again as it was, its ticket making a
    claim one claim), marked ``again=1``, no cookie set: the browser sends the pair it holds by
    then. Once only: a second race is the sign-in page (``_clerk_or_page``), not a loop until
    the browser's "too many redirects" — and, past ``service.REPLAY_GRACE``, a replay of the
    spent token that ends every session of the clerk (review)."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    location = quote(request.url.path, safe="/") + (f"?{query}" if query else "")
    return Response(
        "",
        status_code=307,
        headers={"Location": _marked(location), "Cache-Control": "no-store"},
    )


async def _clerk_or_page(
    request: Request[Any, Any, Any],
    state: State,
    lang: Lang,
    remember: Cookie | None,
    code: str = "",
) -> Clerk | Response[str]:
    """The clerk; else, signed out, the sign-in page (303 from a GET, 401 from a post), or the
    refusal (403) with a way to sign out. A refresh refused as a race with another page of the
    clerk (``service.RefreshRaced``) asks again once (``_again``), the cookies kept: that page
    set the new pair (a probe: dropping them here signed the clerk out); raced again, it is the
    sign-in page, the cookies kept all the same (the new pair may land yet)."""
    try:
        return await _clerk(request, state)
    except AppError as exc:
        raced = isinstance(exc, service.RefreshRaced)
        if raced and not _asked_again(request):
            return _again(request)
        if exc.status == 401:
            cookies = [] if raced else _signed_out(request, state.settings)
            if request.method == "POST":
                return _relogin(lang, remember, cookies, code)
            chosen = lang if remember else None  # ?lang= on the way in: kept through sign-in
            location = _with_code("/clerk/login", code, chosen)
            return _see_other(_marked(location) if raced else location, cookies)
        if exc.status != 403:
            raise
        token, csrf_cookie = session.csrf(request, state.settings)
        body = html.status("error", word("error_title", lang), refusal(exc, lang))
        body += clerk_html.sign_out(lang, token, None)
        title = word("error_title", lang)
        return _show(lang, remember, title, body, "/clerk", 403, [csrf_cookie, *_renewed(exc)])


# -- signing in and out ---------------------------------------------------------------------------


# A form's refusals by ``read_form`` shown with the form again, as typed less what cannot be read,
# and the words of why
_RETYPE = {"invalid_character": "form_controls_taken_out", "malformed_form": "err_malformed_form"}


async def _typed_form(request: Request[Any, Any, Any]) -> tuple[dict[str, str], AppError | None]:
    """The form (``_form``); a form with a control character (a bidi isolate a chat app wrapped
    a username in) or not in UTF-8: as far as it reads, its control characters taken out
    (``read_form``'s ``as_typed``), and why it is refused — to show it again, never to act on
    (as ``app.web.marketing_pages.complaint_post``)."""
    try:
        return await _form(request), None
    except AppError as exc:
        if exc.code not in _RETYPE:
            raise
        return await read_form(request, 20, as_typed=True), exc


@get("/clerk/login", **_PAGE)
async def login_page(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """The sign-in form (signed in already: step 1, or step 2 of ``code``)."""
    lang, remember = session.language(request, state.settings)
    code = (request.query_params.get("code") or "")[:MAX_SERIAL]
    renewed: list[Cookie] = []
    if request.cookies.get(ACCESS_COOKIE) or request.cookies.get(REFRESH_COOKIE):
        try:
            clerk = await _clerk(request, state)
        except service.RefreshRaced:  # another page of the clerk renewed the pair just now:
            if not _asked_again(request):  # asked again once, then the form (cookies kept)
                return _again(request)
        except AppError as exc:  # signed out, or another kind of account: the form
            renewed = _renewed(exc)
        else:
            return _see_other(_with_code("/clerk", code), clerk.cookies)
    token, csrf_cookie = session.csrf(request, state.settings)
    body = clerk_html.login_form(lang, token, code)
    title = word("clerk_login_title", lang)
    path = _with_code("/clerk/login", code)
    return _show(lang, remember, title, body, path, cookies=[csrf_cookie, *renewed])


@post("/clerk/login", **_RETYPED_POST)
async def login_post(
    request: Request[Any, Any, Any], state: State, settings: Settings
) -> Response[str]:
    """Sign in (``app.auth.service.login``: its limits, 401/429 on the form); then step 1 or 2.
    No request connection (``conn``): the log-in takes the pool and holds no connection while
    argon2 runs (as ``POST /auth/login``). A form with a control character or not in UTF-8
    (``_typed_form``) is the form again, 400, the username less them, with why — no sign-in
    tried (a probe: the error page, the username lost)."""
    form, unread = await _typed_form(request)
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    code = form.get("code", "")[:MAX_SERIAL]
    username = form.get("username", "").strip()[:64]
    try:
        if unread is not None:
            raise unread
        ip = request.client.host if request.client else "unknown"
        limiter = login_limiter(request.app.state)
        password = form.get("password", "")[:256]
        pair = await service.login(state.pool, settings, limiter, ip, username, password)
    except AppError as exc:
        token, _ = session.csrf(request, settings)
        why = word(_RETYPE[exc.code], lang) if exc is unread else refusal(exc, lang)
        body = clerk_html.login_form(lang, token, code, why, username)
        headers = {"Retry-After": _retry(exc)} if exc.status == 429 else None
        title = word("clerk_login_title", lang)
        return _show(lang, remember, title, body, "/clerk/login", exc.status, headers=headers)
    return _see_other(_with_code("/clerk", code), _session_cookies(request, settings, pair))


@post("/clerk/logout", **_POST)
async def logout_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """Sign out: the refresh token revoked, both cookies dropped."""
    form = await _form(request)
    session.check_csrf(request, settings, form.get("csrf", ""))
    refresh = request.cookies.get(REFRESH_COOKIE)
    if refresh:
        try:
            await service.logout(conn, settings, refresh)
        except AppError:
            pass  # expired or forged: nothing to revoke
    return _see_other("/clerk/login", _signed_out(request, settings))


# -- step 1: the code ----------------------------------------------------------------------------


class Scanned(NamedTuple):
    serial: str
    code: int  # the unit's code id
    text: str  # the code as scanned: a Digital Link's GTIN is checked by the claim's verification
    version: int  # the key version its tag was made under


def read_code(state: State, text: str) -> Scanned | tuple[int, str]:
    """The unit a scanned or typed code names, checked by the scheme alone (no database); else
    (status, the word of why not)."""
    text = scanned(text)[:MAX_SERIAL]  # full-width, a BOM (a probe: a case label "forged")
    if case_label(text):  # a case's GS1-128 label without brackets (a probe: "forged")
        return 400, "clerk_case_code"
    serial = serial_from_scan(text)
    try:
        batch_no, index, version = state.scheme.verify(serial)
    except MalformedSerial:
        return 400, "clerk_case_code" if sscc_from_scan(text) else "clerk_bad_code"
    except SerialError:  # forged, or a key we never had
        return 422, "clerk_forged"
    return Scanned(serial, batch_no << 32 | index, text, version)


async def _of_its_batch(conn: Conn, scanned: Scanned) -> bool:
    """Whether the code's tag was made under its batch's own key version (``made_under``: one of
    an older key for a batch issued under the new one was never printed — the page showed its
    product and asked for the PIN, and only the claim refused it); a batch not found: the claim
    answers."""
    batch_no = scanned.code >> 32
    batch = (await load_batches(conn, [batch_no])).get(batch_no)
    return batch is None or made_under(batch, scanned.version)


async def _home(
    request: Request[Any, Any, Any],
    conn: Conn,
    state: State,
    clerk: Clerk,
    lang: Lang,
    remember: Cookie | None,
    error: tuple[int, str] | None = None,
    typed: str = "",
) -> Response[str]:
    """Step 1 with the totals and the latest claims (``error``: why the last code was refused)."""
    token, csrf_cookie = session.csrf(request, state.settings)
    summary = await clerk_summary(conn, clerk.principal, 1, RECENT, state.scheme)
    status, why = error or (200, "")
    body = clerk_html.home(
        lang, token, clerk.principal.username, summary, word(why, lang) if why else "", typed
    )
    title = word("clerk_site", lang)
    return _show(lang, remember, title, body, "/clerk", status, [csrf_cookie, *clerk.cookies])


async def _step_two(
    request: Request[Any, Any, Any],
    conn: Conn,
    state: State,
    clerk: Clerk,
    text: str,
    lang: Lang,
    remember: Cookie | None,
) -> Response[str]:
    """The product of the code and the PIN form (or step 1 again with why not)."""
    scanned = read_code(state, text)
    if isinstance(scanned, Scanned) and not await _of_its_batch(conn, scanned):
        scanned = 422, "clerk_forged"
    if not isinstance(scanned, Scanned):
        return await _home(request, conn, state, clerk, lang, remember, scanned, text[:MAX_SERIAL])
    product = await _unit(conn, scanned.code, clerk.principal.brand_id)
    token, csrf_cookie = session.csrf(request, state.settings)
    # the code as scanned, not its serial alone: the claim verifies a Digital Link's GTIN as
    # ``POST /rebates/claims`` does (a probe: another product's label earned the rebate)
    ticket = issue_ticket(state.settings, scanned.text, clerk.principal.user_id or 0)
    body = (
        clerk_html.nav(lang, "")
        + clerk_html.product_box(lang, scanned.serial, product)
        + clerk_html.pin_step(lang, token, ticket, state.scheme.pin_length)
    )
    title = word("clerk_step2", lang)
    path = _with_code("/clerk", scanned.text)  # the switch of language keeps the code
    return _show(lang, remember, title, body, path, 200, [csrf_cookie, *clerk.cookies])


@get("/clerk", **_PAGE)
async def home_page(request: Request[Any, Any, Any], conn: Conn, state: State) -> Response[str]:
    """Step 1, the totals and the latest claims; with ``?code=`` (a scan), step 2."""
    lang, remember = session.language(request, state.settings)
    code = (request.query_params.get("code") or "")[:MAX_SERIAL]
    clerk = await _clerk_or_page(request, state, lang, remember, code)
    if isinstance(clerk, Response):
        return clerk
    if code.strip():
        return await _step_two(request, conn, state, clerk, code, lang, remember)
    return await _home(request, conn, state, clerk, lang, remember)


# GS1's group separator (FNC1 in a GS1 symbol's data), raw or as a form encodes it
_GS = (b"\x1d", b"%1D", b"%1d")


def _separators_only(body: bytes) -> bool:
    """Whether a form's control characters are all GS1's group separator (``_GS``): the form
    less them reads as ``read_form`` reads it (each field as decoded too: a review — a mark
    sent half raw, half escaped passed a check of the bytes, and the scan went on)."""
    for gs in _GS:
        body = body.replace(gs, b"")
    try:
        form_of(body, 20)  # as ``_form``
    except AppError:
        return False
    return True


@post("/clerk/scan", **_RETYPED_POST)
async def scan_post(request: Request[Any, Any, Any], conn: Conn, state: State) -> Response[str]:
    """Step 1's form: the code scanned or typed; step 2. A keyboard-wedge scanner reading a GS1
    symbol types its group separators (U+001D; a serial is GS1 CSET 82, a URL has none): taken
    out, the scan goes on. Another control character, or a form not in UTF-8: step 1 again
    with the code less it and why (a probe: the error page, the scan lost)."""
    form, unread = await _typed_form(request)
    if unread and unread.code == "invalid_character" and _separators_only(await request.body()):
        unread = None
    lang, remember = session.language(request, state.settings, form.get("lang"))
    session.check_csrf(request, state.settings, form.get("csrf", ""))
    code = form.get("code", "")
    clerk = await _clerk_or_page(request, state, lang, remember, code)  # signed out: kept
    if isinstance(clerk, Response):
        return clerk
    if unread is not None:
        why = unread.status, _RETYPE[unread.code]
        return await _home(request, conn, state, clerk, lang, remember, why, code[:MAX_SERIAL])
    return await _step_two(request, conn, state, clerk, code, lang, remember)


# -- step 2: the claim ---------------------------------------------------------------------------


class Ticket(msgspec.Struct, frozen=True):
    serial: str  # the code as scanned, as ``ClaimIn.serial`` (a Digital Link whole)
    user_id: int
    nonce: str
    expires: int

    @property
    def client_id(self) -> str:
        return f"h5c-{self.nonce}"


def issue_ticket(settings: Settings, serial: str, user_id: int) -> str:
    """The sealed ticket of step 2's form (see the module docstring); ``serial``: the code as
    scanned."""
    expires = int(time.time()) + TICKET_TTL
    return session.seal(settings, _TICKET, [serial, user_id, secrets.token_hex(8), expires])


def open_ticket(settings: Settings, text: str) -> Ticket | None:
    """The ticket's claim, or None when it is not one of ours or has expired."""
    try:
        serial, user_id, client, expires = session.unseal(settings, _TICKET, text)
        ticket = Ticket(str(serial), int(user_id), str(client), int(expires))
    except (ValueError, TypeError):
        return None
    return ticket if ticket.expires > time.time() else None


def _pin_again(
    request: Request[Any, Any, Any],
    state: State,
    clerk: Clerk,
    ticket: str,
    lang: Lang,
    remember: Cookie | None,
    status: int,
    error: str,
) -> Response[str]:
    token, csrf_cookie = session.csrf(request, state.settings)
    body = clerk_html.nav(lang, "") + clerk_html.pin_step(
        lang, token, ticket, state.scheme.pin_length, error
    )
    title = word("clerk_step2", lang)
    return _show(lang, remember, title, body, "/clerk", status, [csrf_cookie, *clerk.cookies])


def _refused(
    exc: AppError, lang: Lang, remember: Cookie | None, cookies: list[Cookie]
) -> Response[str]:
    """A refused claim: the status of the error, its sentence, the way to the next scan."""
    link = f'<a class="button" href="/clerk">{html.esc(word("clerk_scan_next", lang))}</a>'
    body = html.status("error", word("error_title", lang), refusal(exc, lang), link)
    headers = {"Retry-After": _retry(exc)} if exc.status == 429 else None
    title = word("error_title", lang)
    return _show(lang, remember, title, body, "/clerk", exc.status, [*cookies], headers)


@post("/clerk/claim", **_POST)
async def claim_post(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """The PIN form: the claim (``Claimer.claim_rebate``), no pooled connection held while it
    waits for its round; the amount, or why not."""
    form = await _form(request)
    settings: Settings = state.settings
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    clerk = await _clerk_or_page(request, state, lang, remember)
    if isinstance(clerk, Response):
        return clerk
    text = form.get("ticket", "")
    ticket = open_ticket(settings, text)
    scanned = read_code(state, ticket.serial) if ticket else None
    if (
        ticket is None
        or not isinstance(scanned, Scanned)
        or ticket.user_id != clerk.principal.user_id
    ):
        body = html.status("error", word("error_title", lang), word("clerk_ticket_expired", lang))
        body += f'<a class="button" href="/clerk">{html.esc(word("clerk_scan_next", lang))}</a>'
        title = word("error_title", lang)
        return _show(lang, remember, title, body, "/clerk", 410, [*clerk.cookies])
    pin_length: int = state.scheme.pin_length
    pin = normalise_pin(form.get("pin", ""))[:16]
    if not (pin.isascii() and pin.isdigit() and len(pin) == pin_length):
        bad = word("bad_pin", lang, n=pin_length)
        return _pin_again(request, state, clerk, text, lang, remember, 400, bad)
    data = ClaimIn(serial=ticket.serial, pin=pin, client_id=ticket.client_id, lang=lang)
    ip = request.client.host if request.client else None
    try:
        out, _ = await state.rebate_claimer.claim_rebate(
            clerk.principal, data, ip, user_agent(request.scope)
        )
    except AppError as exc:
        if exc.code == "wrong_pin":
            wrong = refusal(exc, lang)
            return _pin_again(request, state, clerk, text, lang, remember, exc.status, wrong)
        if exc.status == 401:  # made inactive meanwhile
            return _relogin(lang, remember, _signed_out(request, settings))
        return _refused(exc, lang, remember, clerk.cookies)
    async with state.pool.connection() as conn:
        product = await _unit(conn, scanned.code, clerk.principal.brand_id)
    review = out.status != "credited"
    body = clerk_html.claimed(lang, out.amount, out.sale_recorded, review)
    body += clerk_html.product_box(lang, out.serial, product)
    title = word("clerk_claim_review" if review else "clerk_claimed", lang)
    return _show(lang, remember, title, body, "/clerk", 200, [*clerk.cookies])


# -- the clerk's claims --------------------------------------------------------------------------


@get("/clerk/claims", **_PAGE)
async def claims_page(
    request: Request[Any, Any, Any], conn: Conn, state: State, page: PageNo = 1
) -> Response[str]:
    """The clerk's own claims, newest first, with the totals (``clerk_summary``)."""
    lang, remember = session.language(request, state.settings)
    clerk = await _clerk_or_page(request, state, lang, remember)
    if isinstance(clerk, Response):
        return clerk
    summary = await clerk_summary(conn, clerk.principal, page, PER_PAGE, state.scheme)
    body = clerk_html.claims_list(lang, summary)
    body += pager("/clerk/claims", page, PER_PAGE, summary.total, lang)
    title = word("clerk_claims_title", lang)
    return _show(lang, remember, title, body, "/clerk/claims", cookies=[*clerk.cookies])


route_handlers = [
    login_page,
    login_post,
    logout_post,
    home_page,
    scan_post,
    claim_post,
    claims_page,
]
