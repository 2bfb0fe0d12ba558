"""The clerk's rebate pages' pieces as plain functions returning HTML (see ``app/web/html.py``):
every value goes through ``esc``, every word through ``app.web.i18n.word``.

Forms are plain POST forms carrying the visitor's CSRF token (``app.web.session``); they work
with JavaScript off. One more inline script (``CAMERA``, allowed by its hash in ``CSP``) reads a
QR code from a photo where the browser has ``BarcodeDetector`` (Chrome on Android); elsewhere the
photo button stays hidden and the clerk scans with a keyboard-wedge scanner or types the code.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from app.rebates.schemas import ClaimRow, ClerkSummary, Totals
from app.verify.messages import when
from app.web import html
from app.web.html import esc, facts, safe_url
from app.web.i18n import Lang, word
from app.web.member_html import alert, form, hidden

CAMERA = (
    "(()=>{const p=document.getElementById('photo');"
    "if(!p||!('BarcodeDetector'in window))return;"
    "p.closest('.camera').hidden=false;"
    "p.addEventListener('change',async()=>{"
    "const c=document.getElementById('code'),m=document.getElementById('camera-miss');"
    "try{const b=await createImageBitmap(p.files[0]);"
    "const r=await new BarcodeDetector({formats:['qr_code','data_matrix']}).detect(b);"
    "if(r.length){c.value=r[0].rawValue;c.form.requestSubmit();return}}catch(e){}"
    "m.hidden=false})})();"
)
_CAMERA_HASH = base64.b64encode(hashlib.sha256(CAMERA.encode()).digest()).decode()
CSP = html.CSP.replace(
    f"script-src 'sha256-{html.SCRIPT_HASH}'",
    f"script-src 'sha256-{html.SCRIPT_HASH}' 'sha256-{_CAMERA_HASH}'",
)
# Text fields of these pages are words, not the PIN pages' spaced digits.
CSS = (
    "<style>input.text{font-size:18px;letter-spacing:normal;text-align:left}"
    "input[type=file]{font-size:16px;min-height:48px}"
    ".totals{display:grid;grid-template-columns:repeat(3,1fr);gap:8px;text-align:center}"
    ".totals b{display:block;font-size:20px;color:#12355b}"
    ".amount{font-weight:700;color:#1f9d55}</style>"
)

NAV = (("/clerk", "clerk_nav_home"), ("/clerk/claims", "clerk_nav_claims"))


def nav(lang: Lang, current: str) -> str:
    links = "".join(
        f'<a href="{href}"{" aria-current=page" if href == current else ""}>'
        f"{esc(word(key, lang))}</a>"
        for href, key in NAV
    )
    return f"{CSS}<nav>{links}</nav>"


def yuan(amount: float) -> str:
    return f"¥{amount:.2f}"


def login_form(lang: Lang, csrf: str, code: str, error: str = "", username: str = "") -> str:
    """The staff sign-in: username and password (``code``: the scan to go on with)."""
    fields = (
        f"{alert(error)}<p>{esc(word('clerk_login_intro', lang))}</p>"
        f'<label for="username">{esc(word("clerk_username", lang))}</label>'
        f'<input class="text" id="username" name="username" value="{esc(username)}" type="text" '
        'autocomplete="username" autocapitalize="none" maxlength="64" required>'
        f'<label for="password" style="margin-top:12px">{esc(word("clerk_password", lang))}'
        '</label><input class="text" id="password" name="password" type="password" '
        'autocomplete="current-password" maxlength="256" required>'
        f"{hidden('code', code)}{hidden('lang', lang)}"
    )
    return (
        f'{CSS}<section class="card" id="login">'
        + form("/clerk/login", csrf, fields, word("sign_in", lang))
        + "</section>"
    )


def scan_form(lang: Lang, csrf: str, error: str = "", value: str = "") -> str:
    """Step 1: the outer code (a scanner types it and Enter sends it; or a photo; or typing)."""
    fields = (
        f"{alert(error)}"
        f'<label for="code">{esc(word("clerk_step1", lang))}</label>'
        f'<input class="text" id="code" name="code" value="{esc(value)}" type="text" '
        'autocomplete="off" autocapitalize="characters" maxlength="512" required autofocus>'
        f'<p class="hint">{esc(word("clerk_code_hint", lang))}</p>{hidden("lang", lang)}'
    )
    camera = (
        f'<div class="camera" hidden><label for="photo" style="margin-top:12px">'
        f"{esc(word('clerk_camera', lang))}</label>"
        '<input id="photo" type="file" accept="image/*" capture="environment">'
        f'<p class="alert" id="camera-miss" hidden>{esc(word("clerk_camera_miss", lang))}</p>'
        "</div>"
    )
    scan = form("/clerk/scan", csrf, fields, word("clerk_next", lang))
    return f'<section class="card" id="scan">{scan}{camera}</section><script>{CAMERA}</script>'


def hidden_marks(lang: Lang, csrf: str, code: str, login: bool) -> str:
    """A link's code the edge check refused for an invisible mark a chat app added after it
    (``app.web.pages._clerk_refusal``): step 1 with the code less the marks and why — or, on
    the sign-in link (``login``), the sign-in form going on with that code."""
    why = word("clerk_code_hidden", lang)
    if login:
        return login_form(lang, csrf, code, why)
    return nav(lang, "/clerk") + scan_form(lang, csrf, why, code)


def _totals(lang: Lang, label: str, t: Totals, key: str) -> str:
    return (
        f'<div id="total-{key}"><span class="small">{esc(word(label, lang))}</span>'
        f'<b class="amount">{esc(yuan(t.amount))}</b>'
        f'<span class="small">{esc(word("clerk_count", lang, n=t.claims))}</span></div>'
    )


def totals(lang: Lang, s: ClerkSummary) -> str:
    """Today's, this month's and all-time count and amount."""
    return (
        f'<section class="card totals" id="totals">{_totals(lang, "clerk_today", s.today, "today")}'
        f"{_totals(lang, 'clerk_month', s.month, 'month')}"
        f"{_totals(lang, 'clerk_all_time', s.all_time, 'all')}</section>"
    )


def claim_rows(lang: Lang, items: Sequence[ClaimRow]) -> str:
    rows = []
    for c in items:
        status = word("clerk_status_" + c.settlement, lang)
        rows.append(
            f'<li class="claim" data-claim="{c.claim_id}"><div class="line">'
            f"<b>{esc(c.product_name)}</b>"
            f'<span class="amount">{esc(yuan(c.amount))}</span></div>'
            f'<div class="small">{esc(when(c.claimed_at))} · {esc(c.serial or "")} · '
            f"{esc(status)}</div></li>"
        )
    if not rows:
        return f'<p class="hint" id="empty">{esc(word("history_empty", lang))}</p>'
    return f'<ul class="items">{"".join(rows)}</ul>'


def sign_out(lang: Lang, csrf: str, username: str | None) -> str:
    who = facts([(word("clerk_signed_in_as", lang), username or "")])
    out = form("/clerk/logout", csrf, "", word("sign_out", lang), "quiet")
    return f'<section class="card" id="account">{who}{out}</section>'


def home(
    lang: Lang, csrf: str, username: str | None, s: ClerkSummary, error: str = "", typed: str = ""
) -> str:
    """Step 1 (``error``: why the last code was refused), the totals and the latest claims."""
    more = (
        f'<p><a href="/clerk/claims">{esc(word("clerk_all_claims", lang))}</a></p>'
        if s.total > len(s.items)
        else ""
    )
    return (
        f"{nav(lang, '/clerk')}{scan_form(lang, csrf, error, typed)}{totals(lang, s)}"
        f'<section class="card" id="recent"><h2>{esc(word("clerk_recent", lang))}</h2>'
        f"{claim_rows(lang, s.items)}{more}</section>{sign_out(lang, csrf, username)}"
    )


def product_box(lang: Lang, serial: str, product: Mapping[str, Any] | None) -> str:
    rows: list[tuple[str, object]] = [(word("serial", lang), serial)]
    if product is None:
        return (
            f'<section class="card product"><p class="hint" id="no-product">'
            f"{esc(word('clerk_unknown_product', lang))}</p>{facts(rows)}</section>"
        )
    rows = [
        (word("spec", lang), product["spec"]),
        (word("colour", lang), product["colour_no"]),
        (word("lot", lang), product["lot"]),
        *rows,
    ]
    image = safe_url(product.get("image_url"))
    img = f'<img src="{esc(image)}" alt="{esc(product["name"])}">' if image else ""
    return (
        f'<section class="card product">{img}<h2 id="product-name">{esc(product["name"])}</h2>'
        f"{facts(rows)}</section>"
    )


def pin_step(
    lang: Lang,
    csrf: str,
    ticket: str,
    pin_length: int,
    error: str = "",
) -> str:
    """Step 2: the PIN form; it carries the sealed ticket (the serial and the claim's id)."""
    fields = (
        f"{alert(error)}"
        f'<label for="pin">{esc(word("clerk_step2", lang))}</label>'
        f'<input id="pin" name="pin" type="text" inputmode="numeric" autocomplete="off" '
        f'maxlength="{pin_length + 8}" required autofocus>'
        f'<p class="hint">{esc(word("pin_hint", lang, n=pin_length))}</p>'
        f"{hidden('ticket', ticket)}{hidden('lang', lang)}"
    )
    other = f'<p><a href="/clerk">{esc(word("clerk_other_code", lang))}</a></p>'
    return (
        f'<section class="card" id="claim">'
        f"{form('/clerk/claim', csrf, fields, word('clerk_claim_button', lang), 'pin')}"
        f"{other}</section>"
    )


def claimed(lang: Lang, amount: float, sale_recorded: bool, review: bool = False) -> str:
    """The answer to a claim the round credited (or its replay); ``review``: the clerk is on
    hold, the rebate waits for a reviewer (``app.forensics.holds``)."""
    sale = word("clerk_sale_recorded" if sale_recorded else "clerk_sale_known", lang)
    extra = (
        f'<p class="big" id="claimed-amount">{esc(yuan(amount))}</p><p id="sale">{esc(sale)}</p>'
        f'<a class="button" href="/clerk">{esc(word("clerk_scan_next", lang))}</a>'
    )
    if review:
        message = word("clerk_claim_review_message", lang, amount=f"{amount:.2f}")
        return html.status("suspicious", word("clerk_claim_review", lang), message, extra)
    message = word("clerk_claimed_message", lang, amount=f"{amount:.2f}")
    return html.status("ok", word("clerk_claimed", lang), message, extra)


def claims_list(lang: Lang, s: ClerkSummary) -> str:
    return (
        f"{nav(lang, '/clerk/claims')}{totals(lang, s)}"
        f'<section class="card" id="claims">{claim_rows(lang, s.items)}</section>'
    )
