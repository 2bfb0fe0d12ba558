"""Consumer H5 pages (SPEC V1): the scan page ``/c/{serial}``, its PIN form, the product page
``/p/{gtin}``. HTML in, HTML out, honest status codes; the JSON API is untouched.

The answers are the Verifier's (the same hot path and records as ``POST /v1/verify``); these
handlers only read the request, pick the language and lay the answer out.

Every page (``respond``, also the member and clerk pages') is sent gzip-compressed to a client
that accepts it (``console.accepts_gzip``) once it is over ``GZIP_MIN`` bytes: the scan page is
~4.9 KB of HTML and ~2.2 KB on a phone's link. Level 6: ~70 µs a page (level 1: ~50 µs for
~7 % more bytes).
"""

from __future__ import annotations

import gzip
import logging
import re
import secrets
import time
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode

import psycopg
from litestar import MediaType, Request, Response, post, route
from litestar.datastructures import Cookie, State
from litestar.exceptions import HTTPException

from app._core import Gs1Error, normalize_gtin
from app.claims import CLAIMABLE
from app.codes.scheme import MalformedSerial, SerialError, serial_from_scan
from app.config import Settings
from app.db import Conn
from app.edge import check_query
from app.errors import (
    AppError,
    BadRequest,
    TooManyRequests,
    client_gone,
    handle_db_error,
    request_context,
)
from app.errors import exception_handlers as json_handlers
from app.head import GET_HEAD
from app.members.principal import signed_member
from app.textguard import check_text, user_agent, without_controls
from app.verify.messages import UNKNOWN_PLACE, when
from app.verify.record import CHECK_RETRY_SECONDS
from app.verify.routes import client_ip
from app.verify.schemas import VerifyIn, VerifyOut
from app.web import clerk_html, content_html, draw_html, html, member_html, session
from app.web.accept import media_ranges, quality
from app.web.console import accepts_gzip
from app.web.i18n import WORDS, Lang, pick, word
from app.web.queries import claimable, is_published, published_product

log = logging.getLogger("tracecode.web")

MAX_SERIAL = 512  # as VerifyIn
MAX_FORM = 4096
GZIP_MIN = 1024  # below it, gzip's framing and CPU buy next to nothing
GZIP_LEVEL = 6  # zlib's default: 9 takes longer for a few bytes less


async def read_form(
    request: Request[Any, Any, Any], max_fields: int, as_typed: bool = False
) -> dict[str, str]:
    """A url-encoded form, the first value of each field; more than ``max_fields`` fields is 400
    ``malformed_form``, not a crash. A control character is 400 ``invalid_character`` whatever
    the body says it is: the edge checks a body that says it is a form, and this reads any body
    as one (a probe stored an escape character, and had a NUL answered 500, by sending the form
    as text/plain or with no type), and each field is checked as decoded too (a review: a
    character sent half raw, half percent-escaped passed the check of the bytes). A text not in
    UTF-8, raw or percent-escaped, is 400 ``malformed_form``: read with U+FFFD for its bytes, a
    GBK page's complaint was filed as "ƿ��©Һ" and thanked (a probe).

    ``as_typed``: the form refused so (Litestar keeps the body read) as far as it reads, to show
    it again: its control characters taken out, a field not in UTF-8 left out. Never stored."""
    return form_of(await request.body(), max_fields, as_typed)


def form_of(raw: bytes, max_fields: int, as_typed: bool = False) -> dict[str, str]:
    """``read_form`` of a body's bytes."""
    if not as_typed:
        check_query(raw, what="form")
    try:  # as bytes (Latin-1 maps each to a character): each field is decoded strictly below
        pairs = parse_qsl(raw.decode("latin-1"), max_num_fields=max_fields, encoding="latin-1")
    except ValueError:  # parse_qsl's "Max number of fields exceeded"
        raise BadRequest(f"a form has at most {max_fields} fields", code="malformed_form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        try:
            key, value = key.encode("latin-1").decode(), value.encode("latin-1").decode()
        except UnicodeDecodeError:
            if as_typed:
                continue
            raise BadRequest("a form's text must be UTF-8", code="malformed_form") from None
        if as_typed:
            key, value = without_controls(key), without_controls(value)
        else:  # as decoded: a character half raw, half escaped (b"\xe2%80%ae") is one only now
            check_text(value, field=check_text(key, what="form"), what="form")
        form.setdefault(key, value)
    return form


_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
_PIN_NOISE = re.compile(r"[\s\-]")


class _Page(Response[str]):
    """A page, finished here, where the request is known (``respond`` is called without it):
    served over https (``session.secure``), its CSP loads no picture over plain http
    (``html.over_https``; a probe: a product's http:// picture was mixed content on the pages
    that tell genuine from fake); gzip-compressed when it is over ``GZIP_MIN`` bytes and the
    client accepts gzip."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        request = kwargs["request"] if "request" in kwargs else args[1]
        csp = self.headers.get("Content-Security-Policy")
        if csp and session.secure(request, request.app.state.settings):
            self.headers["Content-Security-Policy"] = html.over_https(csp)
        if isinstance(self.content, str) and len(self.content) > GZIP_MIN // 4:  # 4 B a char
            body = self.content.encode()
            if len(body) > GZIP_MIN and accepts_gzip(request):
                self.content = gzip.compress(body, GZIP_LEVEL, mtime=0)  # type: ignore[assignment]
                self.headers["Content-Encoding"] = "gzip"
        return super().to_asgi_response(*args, **kwargs)


class _WithoutLength(_Page):
    """A HEAD answer whose GET body is not known without running GET: no Content-Length."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().to_asgi_response(*args, **kwargs)
        del response.headers["content-length"]
        return response


def respond(
    body: str,
    lang: Lang,
    remember: Cookie | None,
    status: int = 200,
    *,
    no_store: bool = True,
    headers: dict[str, str] | None = None,
    length: bool = True,
    cookies: list[Cookie] | None = None,
) -> Response[str]:
    """An HTML page with the pages' headers (CSP, no framing, no-store…), ``remember`` (the
    language cookie of ``session.language``, when the language was chosen now) and ``cookies``;
    gzip-compressed for a client that accepts it (``_Page``), hence ``Vary: Accept-Encoding``.
    """
    all_headers = {
        "Content-Language": "zh-CN" if lang == "zh" else "en",
        "Content-Security-Policy": html.CSP,
        "X-Frame-Options": "DENY",  # CSP's frame-ancestors, for WebViews too old to read it
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",  # the serial is in the URL
        "Vary": "Accept-Language, Cookie, Accept-Encoding",
        **(headers or {}),
    }
    if "accept-encoding" not in all_headers["Vary"].lower():  # a caller's own Vary, merged
        all_headers["Vary"] += ", Accept-Encoding"
    cookies = [*(cookies or []), *([remember] if remember else [])]
    # a shared cache must not hand one visitor's Set-Cookie to the next
    cache = "no-store" if no_store else "private, max-age=300" if cookies else "public, max-age=300"
    all_headers.setdefault("Cache-Control", cache)
    return (_Page if length else _WithoutLength)(
        body,
        status_code=status,
        media_type=MediaType.HTML,  # Litestar adds the one "; charset=utf-8"
        headers=all_headers,
        cookies=cookies,
    )


def lang_switch(path: str, lang: Lang) -> str:
    """The same page in the other language (the language switch link): ``path``'s own query
    (a brand, a scanned code) kept, its ``lang`` replaced."""
    base, _, query = path.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "lang"]
    return f"{base}?{urlencode([*kept, ('lang', 'en' if lang == 'zh' else 'zh')])}"


def _scan_path(serial: str, gtin: str | None = None) -> str:
    """The scan page of ``serial``; with the GTIN a Digital Link named (the resolver's
    ``?gtin=``), which its forms and language switch keep."""
    path = f"/c/{quote(serial, safe='')}"
    return f"{path}?gtin={quote(gtin, safe='')}" if gtin else path


def scanned_gtin(request: Request[Any, Any, Any]) -> str | None:
    """The GTIN the scan named (``?gtin=``, from the resolver's redirect of a Digital Link) as
    GTIN-14; one that is no GTIN as given (it names no product: never the unit's)."""
    given = request.query_params.get("gtin")
    if not given:
        return None
    try:
        return normalize_gtin(given)
    except Gs1Error:
        return given[:32]


# -- friendly error pages ----------------------------------------------------------------------


def message_page(
    lang: Lang,
    remember: Cookie | None,
    path: str,
    status: int,
    title_key: str,
    message: str,
    kind: str = "error",
    headers: dict[str, str] | None = None,
    site: str = "site",
    extra: str = "",
) -> Response[str]:
    """A page of one answer box (``kind``, the title's word, ``message``, ``extra``: HTML under
    it) with ``status``; ``path``: the page's own, for the language switch; ``site``: the word
    naming the pages (``html.page``)."""
    body = html.status(kind, word(title_key, lang), message, extra)
    page = html.page(lang, word(title_key, lang), body, lang_switch(path, lang), site)
    return respond(page, lang, remember, status, headers=headers)


def wants_page(request: Request[Any, Any, Any]) -> bool:
    """Whether the client asks for a page before JSON (``Accept``, RFC 9110 q-values): a
    phone's browser (``text/html,…,*/*;q=0.8``), not an API client (``*/*``, JSON, none)."""
    return page_first(request.headers.get("accept", ""))


def page_first(accept: str) -> bool:
    """Whether ``accept`` rates HTML above JSON (``accept.quality``: the most specific range
    decides, a tie in q goes to the more specific one, an exact tie to JSON). ``q=0`` is not
    acceptable (RFC 9110 12.5.1): ``text/html;q=0`` is no page (``request.accept`` took it)."""
    if not accept.strip():
        return False
    ranges = media_ranges(accept)
    page = quality(ranges, MediaType.HTML)
    return page[0] > 0 and page > quality(ranges, MediaType.JSON)


def html_error(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    """Errors of the consumer pages as pages: 429 with Retry-After, others with their status.
    (An exception handler has no dependencies: the settings are the app's.)"""
    lang, remember = session.language(request, request.app.state.settings)
    path = quote(request.scope["path"], safe="/")  # not request.url: its parsing of Host can fail
    if isinstance(exc, TooManyRequests):
        retry = (exc.headers or {}).get("Retry-After", "60")
        message = word("rate_limited", lang, seconds=retry)
        return message_page(
            lang,
            remember,
            path,
            429,
            "rate_limited_title",
            message,
            "rate_limited",
            {"Retry-After": retry},
        )
    status = 500
    headers = dict(exc.headers) if isinstance(exc, HTTPException) and exc.headers else None
    if isinstance(exc, AppError):
        status = exc.status
    elif isinstance(exc, HTTPException):
        status = 400 if client_gone(exc) else exc.status_code  # no one is there to read it
    elif isinstance(exc, psycopg.Error):
        # the JSON answer's status, logged as it logs it: a slow query or a database out of
        # reach is a 503 to try again shortly, not a 500 (a probe); app.errors answers through
        # its _response, which always sets a status
        status = cast(int, handle_db_error(request, exc).status_code)
        if status == 503:
            headers = {"Retry-After": "5"}
    if status >= 500 and not isinstance(exc, psycopg.Error):
        log.error("consumer page failed", exc_info=exc, extra=request_context(request.scope))
    # a form past its size: too long, not "try again later" (sent again it is refused again)
    message = word("err_too_long" if status == 413 else "error", lang)
    if isinstance(exc, AppError) and f"err_{exc.code}" in WORDS:  # csrf_failed, invalid_character
        message = word(f"err_{exc.code}", lang, tries_left=0, seconds=60)
    site, back = _site_of(path, lang)
    return message_page(
        lang, remember, path, status, "error_title", message, headers=headers, site=site, extra=back
    )


CLERK = "/clerk"  # the clerk's pages (app/web/clerk_pages.py): no API path starts so


def _site_of(path: str, lang: Lang) -> tuple[str, str]:
    """The word naming the pages of an error page at ``path`` and a link back to its form: on
    the clerk's pages, theirs (the sign-in form, or step 1) — a probe: a clerk's refused form
    was the consumer pages' "authenticity check" with no way back; elsewhere, none."""
    if not path.startswith(CLERK):
        return "site", ""
    back = f"{CLERK}/login" if path.startswith(f"{CLERK}/login") else CLERK
    link = f'<a class="button" href="{back}">{html.esc(word("back_to_form", lang))}</a>'
    return "clerk_site", link


# Every key of the app's JSON handlers, so that the most specific match is this page's handler.
PAGE_ERRORS: dict[Any, Any] = dict.fromkeys(json_handlers, html_error)


# The consumer pages' prefixes whose links are a code's (a scanned QR, a product's GTIN, a Digital
# Link), and the others of the pages, for ``edge_pages``
_CODE_LINKS = ("/c/", "/C/", "/p/", "/P/", "/01/", "/00/")
# ``/member`` and below, not the API's ``/members``; the clerk's (``_clerk_refusal``)
_OTHER_PAGES = ("/member", "/brand/", CLERK)


def _clerk_refusal(
    request: Request[Any, Any, Any],
    settings: Settings,
    status: int,
    error: dict[str, Any],
    headers: dict[str, str],
) -> Response[str]:
    """The edge check's refusal on the clerk's pages. A link's code (``/clerk?code=``,
    ``/clerk/login?code=``) with an invisible mark a chat app added after it: step 1 — or the
    sign-in form — with the code less the marks and why (``clerk_html.hidden_marks``; no
    database here: step 1 without the totals; posted signed out, the scan form's answer leads
    to the sign-in keeping the code). Anything else: the error page saying so, with the clerk
    pages' name and the way back (a probe: the clerk's phone got the API's JSON)."""
    lang, remember = session.language(request, settings)
    path = quote(request.scope["path"], safe="/")  # as ``html_error``
    fields = {d.get("field") for d in error.get("details") or () if isinstance(d, dict)}
    link = path in (CLERK, f"{CLERK}/login") and fields == {"code"}
    if request.method not in GET_HEAD or not link:
        site, back = _site_of(path, lang)
        message = word("err_invalid_character", lang)
        return message_page(
            lang, remember, path, status, "error_title", message, "error", headers, site, back
        )
    code = without_controls(request.query_params.get("code") or "")[:MAX_SERIAL]
    token, csrf_cookie = session.csrf(request, settings)
    login = path != CLERK
    body = clerk_html.hidden_marks(lang, token, code, login)
    title = word("clerk_login_title" if login else "clerk_site", lang)
    switch = lang_switch(f"{path}?code={quote(code, safe='')}", lang)  # the code less the marks
    page = html.page(lang, title, body, switch, "clerk_site")
    all_headers = {**headers, "Content-Security-Policy": clerk_html.CSP}
    cookies = [csrf_cookie] if csrf_cookie else []
    return respond(page, lang, remember, status, headers=all_headers, cookies=cookies)


def edge_pages(settings: Settings) -> dict[str, Any]:
    """The request layer's refusals as pages (``app.front.Tracecode``'s ``pages``): a link to
    the consumer pages with a character the edge check refuses (400 ``invalid_character``: an
    invisible directional mark a chat app left after the serial, or in a campaign's query
    parameter) is, to a browser (``wants_page``), the "code not recognised" page — advising to
    scan the QR code again, as a serial nobody can read is — in the visitor's language with
    the pages' headers; on the member and brand pages, the error page saying so; on the clerk's,
    theirs (``_clerk_refusal``). An API client keeps the JSON error (a probe: the phone got
    routing's English JSON, without the pages' CSP, nosniff or no-referrer)."""

    def refusal(scope: Any, status: int, error: dict[str, Any]) -> Any:
        request: Request[Any, Any, Any] = Request(scope)
        if error["code"] != "invalid_character" or scope["method"] == "OPTIONS":
            return None
        if scope["path"].startswith("/members"):  # the API's, not a page
            return None
        if not wants_page(request):
            return None
        if scope["path"].startswith(CLERK):  # the clerk's pages: theirs, in their name
            vary = {"Vary": "Accept, Accept-Language, Cookie"}
            page = _clerk_refusal(request, settings, status, error, vary)
            return page.to_asgi_response(None, request)
        lang, remember = session.language(request, settings)
        path = quote(scope["path"], safe="/")  # as ``html_error``
        code = scope["path"].startswith(_CODE_LINKS)
        kind, title, message = (
            ("unreadable", "unreadable_title", "unreadable")
            if code
            else ("error", "error_title", "no_page")
        )
        headers = {"Vary": "Accept, Accept-Language, Cookie"}  # a page or JSON, by Accept
        page = message_page(lang, remember, path, status, title, word(message, lang), kind, headers)
        return page.to_asgi_response(None, request)

    return dict.fromkeys((*_CODE_LINKS, *_OTHER_PAGES), refusal)


# -- the verification page ---------------------------------------------------------------------


def _answer_box(out: VerifyOut, lang: Lang) -> str:
    if out.reason == "pin_required":  # a valid code, the pack's PIN still to come
        return html.status("pin_required", word("verify_title", lang), out.message)
    if out.reason == "malformed":
        # a serial nobody could read — a link cut short, the full stop of the sentence it was
        # pasted from — is no verdict on the pack (the API's ``not_genuine``): "not recognised",
        # scan again (a probe: "✕ not genuine … type it again", with nowhere to type it)
        return html.status("unreadable", word("unreadable_title", lang), word("unreadable", lang))
    rows: list[tuple[str, object]] = []
    if out.queries:
        place = out.first_query_place or UNKNOWN_PLACE[lang]
        rows += [
            (word("queries", lang), out.queries),
            (word("first_at", lang), when(out.first_query_at)),
            (word("first_place", lang), place),
        ]
    if out.pin_attempts_left is not None:
        rows.append((word("attempts_left", lang), out.pin_attempts_left))
    if out.retry_after is not None:
        minutes = -(-out.retry_after // 60)
        rows.append(("", word("retry_after", lang, minutes=minutes)))
    return html.status(out.result, word(out.result, lang), out.message, html.facts(rows))


def _product_box(out: VerifyOut, lang: Lang, link: str) -> str:
    """The product under the answer; ``link``: its page's (``_product_link``), or none."""
    rows: list[tuple[str, object]] = [
        (word("spec", lang), out.product.spec if out.product else ""),
        (word("lot", lang), out.lot),
        (word("production_date", lang), out.production_date),
        (word("serial", lang), out.serial),
    ]
    if out.product is None:
        return f'<section class="card product">{html.facts(rows)}</section>'
    product = {
        "name": out.product.name,
        "image_url": out.product.image_url,
        "video_url": out.product.video_url,
    }
    return html.product_card(product, lang, rows, link)


async def _product_link(state: State, out: VerifyOut) -> str:
    """The product page under an answer that shows the product: a published product's only (a
    probe: an unpublished one's linked to its 404). One query of the page, none of the
    verification (whose ``ProductInfo`` is the API's answer)."""
    product = out.product
    if product is None or product.gtin is None or out.result == "not_genuine":
        return ""
    async with state.pool.connection() as conn:
        published = await is_published(conn, product.id)
    return f"/p/{product.gtin}" if published else ""


def _verification_page(
    out: VerifyOut,
    lang: Lang,
    serial: str,
    pin_length: int,
    *,
    form: bool,
    form_error: str = "",
    extra: str = "",
    resend: dict[str, str] | None = None,
    gtin: str | None = None,
    link: str = "",
) -> str:
    """``resend``: the PIN form's fields the language switch sends again (``html.page``);
    ``gtin``: the scan's (``scanned_gtin``), kept by the form and the switch; ``link``: the
    product page's (``_product_link``)."""
    body = _answer_box(out, lang) + extra
    if out.result != "not_genuine":
        body += _product_box(out, lang, link)
    here = _scan_path(serial, gtin)
    if form:
        again = out.result == "wrong_pin"
        body += html.pin_form(here, lang, pin_length, new_check(), form_error, again)
    if resend is not None:  # posted back to the scan page, so no ?lang= in it
        return html.page(lang, word("verify_title", lang), body, here, "site", resend)
    return html.page(lang, word("verify_title", lang), body, lang_switch(here, lang))


# A PIN form's own id (``html.pin_form``): the form sent again — a browser's retry on a slow
# network, a reload of the answer — is checked and not counted again, as a claim's retry is,
# nor is the points claim made from its answer (its ticket carries it). A probe: the consumer's
# one check read "queried 2 times … beware", and a few reloads "probably copied".
PAGE_CHECK = re.compile(r"[0-9a-f]{16,32}")


def new_check() -> str:
    """A PIN form's own id (``PAGE_CHECK``): its time, then 64 random bits."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


def _fresh(check: str) -> bool:
    """A form's check made within its retry key's time (``record.CHECK_RETRY_SECONDS``, less a
    minute for the page's round trips): its first eight hex digits are when."""
    if not PAGE_CHECK.fullmatch(check):
        return False
    age = time.time() - int(check[:8], 16)
    return -60 < age < CHECK_RETRY_SECONDS - 60


def page_retry(check: str) -> str:
    """The verifier's retry key of a form's check (none for anything else)."""
    return f"h5:{check}" if PAGE_CHECK.fullmatch(check) else ""


async def _verify(
    request: Request[Any, Any, Any],
    state: State,
    serial: str,
    lang: Lang,
    pin: str | None,
    check: str = "",
) -> VerifyOut:
    """The verifier's answer. A PIN check of a signed-in member (``tc_member``) is recorded
    with the member (``_member``): the member's scans (seed 1.6, ``/member/scans``) list it.
    The scan page's own look-up without the PIN is not: each scan would be listed twice."""
    signed = _member(request, state) if pin is not None else None
    return await state.verifier.verify(  # type: ignore[no-any-return]
        VerifyIn(serial=serial[:MAX_SERIAL], pin=pin, lang=lang),
        client_ip(request),
        user_agent(request.scope),
        member_id=signed[0] if signed else None,
        member_token=signed[1] if signed else None,
        retry=page_retry(check),
        gtin=scanned_gtin(request),  # a probe: a Digital Link of another product's was genuine
    )


def _member(request: Request[Any, Any, Any], state: State) -> tuple[int, str] | None:
    """The member of the ``tc_member`` cookie and its token's id, by the token's signature alone
    (no query: the hot path's; ``principal.signed_member``); None without one, or with one not
    valid (the check is answered all the same, anonymous)."""
    token = request.cookies.get(session.MEMBER_COOKIE)
    return signed_member(state.settings, token) if token else None


def _status_of(out: VerifyOut) -> int:
    return 400 if out.reason == "malformed" else 200


def _scan_head(state: State, serial: str, lang: Lang, remember: Cookie | None) -> Response[str]:
    """HEAD of the scan page: its status and headers, without a verification.

    Link checkers and chat-app previews send HEAD; a verification would count them as consumer
    queries (and could make a genuine pack look suspicious). Only the serial's syntax is read.
    """
    status = 200
    try:
        state.scheme.verify(serial_from_scan(serial[:MAX_SERIAL]))
    except MalformedSerial:
        status = 400  # as GET: a malformed serial is a 400 page
    except SerialError:
        pass  # forged or unknown key: GET answers a 200 page saying so
    return respond("", lang, remember, status, length=False)


# SPEC C1 prints the short form in capitals too (alphanumeric QR mode): a phone lower-cases the
# scheme and host only and opens ``/C/{serial}``, which answered routing's English JSON 404 (a
# probe) where ``POST /v1/verify`` reads the same URL as the unit's. Both prefixes are pages.
SCAN_PATHS = ["/c/{serial:str}", "/C/{serial:str}"]


@route(
    SCAN_PATHS,
    http_method=GET_HEAD,
    include_in_schema=False,
    exception_handlers=PAGE_ERRORS,
)
async def scan_page(request: Request[Any, Any, Any], serial: str, state: State) -> Response[str]:
    """The page a QR code opens: product information and the PIN form (or why it is not genuine)."""
    lang, remember = session.language(request, state.settings)
    if request.method == "HEAD":
        return _scan_head(state, serial, lang, remember)
    return await _scanned(request, state, serial, lang, remember)


async def _scanned(
    request: Request[Any, Any, Any],
    state: State,
    serial: str,
    lang: Lang,
    remember: Cookie | None,
) -> Response[str]:
    """The scan page: the code checked without its PIN, and the PIN form."""
    out = await _verify(request, state, serial, lang, None)
    form = out.result in ("genuine", "unconfirmed", "suspicious")
    page = _verification_page(
        out,
        lang,
        out.serial or serial,
        state.scheme.pin_length,
        form=form,
        gtin=scanned_gtin(request),
        link=await _product_link(state, out),
    )
    return respond(page, lang, remember, _status_of(out))


def normalise_pin(text: str) -> str:
    """What a consumer typed, as ASCII digits: full-width digits, spaces and hyphens forgiven."""
    return _PIN_NOISE.sub("", text.translate(_FULL_WIDTH_DIGITS))


@post(
    SCAN_PATHS,
    status_code=200,
    include_in_schema=False,
    request_max_body_size=MAX_FORM,
    exception_handlers=PAGE_ERRORS,
)
async def pin_page(request: Request[Any, Any, Any], serial: str, state: State) -> Response[str]:
    """The answer to the PIN form (``application/x-www-form-urlencoded``: pin, lang). A post
    from another site is a 403 page and spends no attempt (``session.check_origin``; probes: a
    hostile page had its visitors spend wrong PINs on a brand's codes, then did so again under
    ``no-referrer``, whose ``Origin: null`` passed). The language switch of an answer
    (``switch=1``) is a choice, remembered in the cookie as the switch link's ``?lang=`` is (a
    probe: English chosen on the answer was Chinese again on the way to the claim)."""
    session.check_origin(request, state.settings)
    form = await read_form(request, 10)
    lang, remember = session.language(request, state.settings, form.get("lang"))
    if form.get("switch") and pick(form.get("lang")) == lang:
        remember = session.remembered(request, state.settings, lang)
    pin_length: int = state.scheme.pin_length
    pin = normalise_pin(form.get("pin", ""))
    if not re.fullmatch(rf"[0-9]{{{pin_length}}}", pin):
        # No attempt is spent on a typo; the page shows the product and the form again.
        out = await _verify(request, state, serial, lang, None)
        usable = out.result in ("genuine", "unconfirmed", "suspicious")
        error = word("bad_pin", lang, n=pin_length) if usable else ""
        page = _verification_page(
            out,
            lang,
            out.serial or serial,
            pin_length,
            form=usable,
            form_error=error,
            gtin=scanned_gtin(request),
            link=await _product_link(state, out),
        )
        return respond(page, lang, remember, 400 if usable else _status_of(out))
    check = form.get("check", "")
    if form.get("switch") and not _fresh(check):
        # the language switch of an answer older than its check's retry key: sent again, it
        # would count again (a probe: "checked 2 times"); the scan page instead, as a link is
        return await _scanned(request, state, serial, lang, remember)
    # a post without the form's check (no browser's) gets one here: the claim from its answer
    # is then no second query (nor scan record) of the code either, as the form's is not
    own = check if PAGE_CHECK.fullmatch(check) else new_check()
    out = await _verify(request, state, serial, lang, pin, own)
    offer, cookies = await _claim_offer(request, state, out, pin, lang, own)
    # The answer the PIN proved, in the other language: the same form sent again, its check
    # keeping it from counting again (a probe: the switch led back to the PIN form, and the
    # PIN typed again read "checked 2 times"). A wrong PIN is never sent again.
    proved = out.result in CLAIMABLE and PAGE_CHECK.fullmatch(check)
    page = _verification_page(
        out,
        lang,
        out.serial or serial,
        pin_length,
        form=out.result == "wrong_pin",
        extra=offer,
        resend={"pin": pin, "check": check, "switch": "1"} if proved else None,
        gtin=scanned_gtin(request),
        link=await _product_link(state, out),
    )
    retry = {"Retry-After": str(out.retry_after)} if out.retry_after else None
    return respond(page, lang, remember, _status_of(out), headers=retry, cookies=cookies)


async def _claim_offer(
    request: Request[Any, Any, Any],
    state: State,
    out: VerifyOut,
    pin: str,
    lang: Lang,
    check: str,
) -> tuple[str, list[Cookie]]:
    """Under an answer the PIN proved (the claimable ones): "claim the points", when the unit
    earns points not yet claimed (item 9 of issue 15; ``app/web/member_pages.py``)."""
    if out.result not in CLAIMABLE or out.serial is None:
        return "", []
    batch_no, index, _ = state.scheme.verify(serial_from_scan(out.serial))
    settings = state.settings
    async with state.pool.connection() as conn:
        offer = await claimable(conn, batch_no << 32 | index)
        member = await session.member_of(request, conn, settings) if offer else None
    # the lucky draw running for the unit (``app.web.draw_html``), whether or not it earns points
    checked = check if PAGE_CHECK.fullmatch(check) else None  # its ticket: not counted again
    draw = await draw_html.draw_offer(state, batch_no << 32 | index, out.serial, lang, pin, checked)
    if offer is None:
        return draw, []
    brand_id, points = offer
    token, csrf_cookie = session.csrf(request, settings)
    ticket = session.issue_ticket(settings, out.serial, pin, brand_id, checked)
    signed_in = member is not None and member.brand_id == brand_id
    box = member_html.claim_offer(lang, token, ticket, signed_in, brand_id, points)
    return box + draw, [csrf_cookie] if csrf_cookie else []


# -- the product page --------------------------------------------------------------------------


# Addresses under the consumer prefixes that no page has — a link cut short by a chat app
# (``/c/``), something appended to a scan link (``/c/{serial}/x``), a member page mistyped —
# answered routing's English JSON 404 to a phone's browser (a probe); a page in its language.
@route(
    [
        *("/c", "/C", "/c/{serial:str}/{rest:path}", "/C/{serial:str}/{rest:path}"),
        *("/p", "/P", "/p/{gtin:str}/{rest:path}", "/P/{gtin:str}/{rest:path}"),
        "/member/{rest:path}",
    ],
    http_method=[*GET_HEAD, "POST", "PUT", "PATCH", "DELETE"],  # 404 to every method, not 405
    include_in_schema=False,
    exception_handlers=PAGE_ERRORS,
)
async def no_page(request: Request[Any, Any, Any], settings: Settings) -> Response[str]:
    """404, as a page: no consumer page has this address (whatever the method)."""
    lang, remember = session.language(request, settings)
    path = quote(request.scope["path"], safe="/")
    return message_page(lang, remember, path, 404, "not_found_title", word("no_page", lang))


@route(
    ["/p/{gtin:str}", "/P/{gtin:str}"],
    http_method=GET_HEAD,
    include_in_schema=False,
    exception_handlers=PAGE_ERRORS,
)
async def product_page(
    request: Request[Any, Any, Any], gtin: str, conn: Conn, settings: Settings
) -> Response[str]:
    """A published product's information page (the GS1 ``gs1:pip`` link)."""
    lang, remember = session.language(request, settings)
    path = f"/p/{quote(gtin, safe='')}"
    try:
        gtin14 = normalize_gtin(gtin)
    except Gs1Error:
        return message_page(lang, remember, path, 400, "error_title", word("bad_gtin", lang))
    product = await published_product(conn, gtin14)
    if product is None:
        return message_page(lang, remember, path, 404, "not_found_title", word("no_product", lang))
    rows = [
        (word("brand", lang), product["brand"]),
        (word("category", lang), product["category"]),
        (word("spec", lang), product["spec"]),
        (word("type", lang), product["product_type"]),
        (word("colour", lang), product["colour_no"]),
        (word("efficacy", lang), product["efficacy"]),
        (word("gtin", lang), product["gtin"]),
    ]
    # the brand's other products and its story (W1)
    body = html.product_card(product, lang, rows) + content_html.nav(lang, product["brand_id"], "")
    page = html.page(lang, word("product_title", lang), body, lang_switch(path, lang))
    return respond(page, lang, remember, no_store=False)
