"""The member's promotions and complaints pages (SPEC W2, W3; seed 1.10.1 客户投诉与建议, 1.10.2
促销信息): server-rendered as the other member pages (``app/web/member_pages.py``, whose session,
refusal and page helpers these use), linked from the member's home page.

| URL | |
| --- | --- |
| ``GET /member/promotions`` | the promotions shown in the member's province now |
| ``GET /member/complaints`` | the filing form and the member's own complaints, with replies |
| ``POST /member/complaints`` | files one (``app.marketing.complaints.file``), the page again |

The form carries the CSRF token as every member form does, and a client id made for the page
view (a double tap files once); it may be 24 KB (``COMPLAINT_FORM``: 2,000 Chinese characters
url-encoded), not the other member forms' 4 KB, and its CRLF line breaks are read as the LF the
textarea held. A refusal (too many filed, a bad field) shows the form again as typed, with its
reason and the error's status: a control character too (the text less it) and a text not in UTF-8
(the fields that are), never stored.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State

from app.config import Settings
from app.db import Conn
from app.errors import AppError, BadRequest
from app.marketing import complaints, promotions
from app.marketing.schemas import ComplaintIn
from app.members.principal import Member
from app.web import marketing_html, session
from app.web.i18n import Lang, word
from app.web.member_html import pager
from app.web.member_pages import (
    _PAGE,
    _POST,
    PER_PAGE,
    _form,
    _page_no,
    _paged,
    _show,
    _signed_in,
    refusal,
)
from app.web.pages import read_form

_FIELDS = ("kind", "body", "serial", "store_name", "contact", "client_id")

# The filing form's body: the text's 2,000 characters, the serial's 200 and the store's 100, each
# up to 9 bytes url-encoded (a Chinese character is %E4%B9%B0), and the small fields. The member
# pages' MAX_FORM (4 KB) refused a Chinese complaint of some 440 characters with a 413 page, the
# text lost (a probe). raw_body: the form's control characters are left to the handler (``_form``:
# ``read_form`` refuses them as the edge does), which shows the form again; refused at the edge,
# as the connection's dependency read the body, the member got the error page, the text lost.
COMPLAINT_FORM = 24 * 1024
_COMPLAINT_POST: dict[str, Any] = {
    **_POST,
    "request_max_body_size": COMPLAINT_FORM,
    "opt": {"raw_body": True},
}


@get("/member/promotions", **_PAGE)
async def promotions_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The promotions shown to the member now (its province's, and every province's)."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    page = _page_no(request)
    out = await promotions.member_promotions(conn, member, page, PER_PAGE)
    body = marketing_html.promotion_list(lang, out.items)
    body += pager("/member/promotions", page, PER_PAGE, out.total, lang)
    path = _paged("/member/promotions", page)
    return _show(lang, remember, word("promotions_title", lang), body, path)


async def _complaints_body(
    conn: Conn,
    member: Member,
    lang: Lang,
    csrf: str,
    page: int,
    typed: dict[str, str] | None = None,
    error: str = "",
    notice: str = "",
) -> str:
    """The form (a new client id for each view) and a page of the member's complaints."""
    client_id = f"h5-{secrets.token_hex(8)}"
    mine = await complaints.my_complaints(conn, member, page, PER_PAGE)
    return (
        marketing_html.complaint_form(lang, csrf, client_id, typed, error, notice)
        + marketing_html.complaint_list(lang, mine.items)
        + pager("/member/complaints", page, PER_PAGE, mine.total, lang)
    )


@get("/member/complaints", **_PAGE)
async def complaints_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The filing form and the member's complaints and suggestions, newest first."""
    lang, remember = session.language(request, settings)
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    token, csrf_cookie = session.csrf(request, settings)
    page = _page_no(request)
    body = await _complaints_body(conn, member, lang, token, page)
    title = word("complaints_title", lang)
    path = _paged("/member/complaints", page)
    return _show(lang, remember, title, body, path, cookies=[csrf_cookie])


def complaint_in(form: dict[str, str]) -> ComplaintIn:
    """The filing a form asks for, under the API's rules (blank optional fields left out):
    400 ``validation_failed`` otherwise, as the JSON API answers it. A browser sends a
    textarea's line breaks as CRLF, its ``maxlength`` counting them as one: read as the LF the
    textarea held (a probe: 2,000 characters in 11 paragraphs arrived as 2,010, refused)."""
    typed = {k: form.get(k, "").replace("\r\n", "\n") for k in _FIELDS}
    fields = {k: v for k, v in typed.items() if v.strip()}
    try:
        return msgspec.convert(fields, ComplaintIn)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid complaint: {exc}", code="validation_failed") from None


# the form's refusals (``read_form``) shown with the form again, with their reasons
_RETYPE = ("invalid_character", "malformed_form")


def _reason(exc: AppError, lang: Lang) -> str:
    """A refused filing's reason, in the page's language."""
    if exc.code == "validation_failed":
        return word("err_complaint_invalid", lang)
    if exc.code == "invalid_character":
        return word("form_controls_taken_out", lang)
    return refusal(exc, lang)


@post("/member/complaints", **_COMPLAINT_POST)
async def complaint_post(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings, state: State
) -> Response[str]:
    """File a complaint or suggestion; the page again, with a thank-you or the refusal. A form
    with a control character (a vertical tab a word processor pasted, a bidi isolate an app
    wrapped a name in) or not in UTF-8 is the form again, as typed less what cannot be stored,
    with the reason, not the error page with the text lost (probes)."""
    unread: AppError | None = None
    try:
        form = await _form(request)
    except AppError as exc:
        if exc.code not in _RETYPE:
            raise
        form, unread = await read_form(request, 20, as_typed=True), exc
    lang, remember = session.language(request, settings, form.get("lang"))
    session.check_csrf(request, settings, form.get("csrf", ""))
    member = await _signed_in(request, conn, settings)
    if isinstance(member, Response):
        return member
    token, _ = session.csrf(request, settings)
    title = word("complaints_title", lang)
    try:
        if unread is not None:
            raise unread
        data = complaint_in(form)
        async with conn.transaction():  # nothing of a refused filing stays
            await complaints.file(conn, state.scheme, complaints.filing_limit(state), member, data)
    except AppError as exc:
        reason = _reason(exc, lang)
        body = await _complaints_body(conn, member, lang, token, 1, form, reason)
        headers = {"Retry-After": (exc.headers or {}).get("Retry-After", "60")}
        return _show(
            lang,
            remember,
            title,
            body,
            "/member/complaints",
            exc.status,
            headers=headers if exc.status == 429 else None,
        )
    notice = word("complaint_sent", lang)
    body = await _complaints_body(conn, member, lang, token, 1, notice=notice)
    return _show(lang, remember, title, body, "/member/complaints")


route_handlers = [promotions_page, complaints_page, complaint_post]  # in app.marketing's router
