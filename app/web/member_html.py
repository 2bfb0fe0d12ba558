"""The member pages' pieces as plain functions returning HTML (see ``app/web/html.py``): every
value goes through ``esc``, every word through ``app.web.i18n.word``.

Forms are plain POST forms (they work with JavaScript off) carrying the visitor's CSRF token
(``app.web.session``); a button that changes something is a form, never a link.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.members.mask import mask_phone
from app.members.returns import SYSTEM_REASONS
from app.members.schemas import ScanRow
from app.members.schemas_points import Gift, LedgerEntryOut, RedemptionOut
from app.verify.messages import when
from app.verify.regions import Place, place_name
from app.web.html import esc, facts, safe_url
from app.web.i18n import Lang, word

NAV = (
    ("/member/", "nav_home"),
    ("/member/points", "nav_points"),
    ("/member/gifts", "nav_gifts"),
    ("/member/codes", "nav_codes"),
    ("/member/scans", "nav_scans"),
)


def nav(lang: Lang, current: str) -> str:
    links = "".join(
        f'<a href="{href}"{" aria-current=page" if href == current else ""}>'
        f"{esc(word(key, lang))}</a>"
        for href, key in NAV
    )
    return f"<nav>{links}</nav>"


def hidden(name: str, value: object) -> str:
    return f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'


def form(action: str, csrf: str, fields: str, button: str, cls: str = "") -> str:
    css = f' class="{esc(cls)}"' if cls else ""
    return (
        f'<form method="post" action="{esc(action)}"{css}>{hidden("csrf", csrf)}{fields}'
        f'<button type="submit"{css}>{esc(button)}</button></form>'
    )


def alert(message: str) -> str:
    return f'<p class="alert" id="form-error">{esc(message)}</p>' if message else ""


def phone_form(
    lang: Lang, csrf: str, brand_id: int, claim: str, error: str = "", phone: str = ""
) -> str:
    """Step 1 of signing in: the phone number, in a text field's type (``input.text``): in the
    PIN's spaced 26 px digits, 11 of them overflowed a 320 px screen's field (a probe)."""
    fields = (
        f"{alert(error)}<p>{esc(word('login_intro', lang))}</p>"
        f'<label for="phone">{esc(word("phone_label", lang))}</label>'
        f'<input class="text" id="phone" name="phone" type="tel" inputmode="tel" '
        f'autocomplete="tel" maxlength="20" required value="{esc(phone)}">'
        f"{hidden('brand', brand_id)}{hidden('claim', claim)}{hidden('lang', lang)}"
    )
    body = form("/member/otp", csrf, fields, word("send_code", lang))
    return f'<section class="card" id="login">{body}</section>'


def code_form(
    lang: Lang,
    csrf: str,
    brand_id: int,
    phone: str,
    claim: str,
    notice: str = "",
    error: str = "",
) -> str:
    """Step 2: the code from the SMS (and a way to ask for another)."""
    fields = (
        f"{alert(error)}"
        + (f'<p id="notice">{esc(notice)}</p>' if notice else "")
        + f'<label for="code">{esc(word("code_label", lang))}</label>'
        '<input id="code" name="code" type="text" inputmode="numeric" '
        'autocomplete="one-time-code" maxlength="12" required autofocus>'
        f"{hidden('phone', phone)}{hidden('brand', brand_id)}{hidden('claim', claim)}"
        f"{hidden('lang', lang)}"
    )
    resend = (
        f"{hidden('phone', phone)}{hidden('brand', brand_id)}{hidden('claim', claim)}"
        f"{hidden('lang', lang)}"
    )
    return (
        f'<section class="card" id="login">'
        f"{form('/member/login', csrf, fields, word('sign_in', lang))}"
        f"{form('/member/otp', csrf, resend, word('resend', lang), 'quiet')}"
        f'<p class="hint"><a href="/member/login?brand={brand_id}">'
        f"{esc(word('other_phone', lang))}</a></p></section>"
    )


def claim_offer(
    lang: Lang, csrf: str, ticket: str, signed_in: bool, brand_id: int, points: int | None = None
) -> str:
    """Under a proved answer: one tap claims the code's points (signing in first if need be).
    Both forms carry the page's ``lang``: the claim, or the sign-in on the way to it, is in the
    language of the answer (a probe: English chosen on the answer was Chinese again)."""
    if signed_in:
        fields = hidden("ticket", ticket) + hidden("lang", lang)
        action = form("/member/claim", csrf, fields, word("claim_button", lang))
    else:  # a GET to the sign-in page, which carries the ticket through to the claim
        action = (
            f'<form method="get" action="/member/login">{hidden("brand", brand_id)}'
            f"{hidden('claim', ticket)}{hidden('lang', lang)}"
            f'<button type="submit">{esc(word("claim_sign_in", lang))}</button></form>'
        )
    earn = f'<p class="big" id="claim-points">+{points}</p>' if points else ""
    return (
        f'<section class="card" id="claim"><h2>{esc(word("claim_title", lang))}</h2>'
        f"{earn}<p class=hint>{esc(word('claim_offer', lang))}</p>{action}</section>"
    )


def home(lang: Lang, csrf: str, phone: str, frozen: bool, points: int, more: str = "") -> str:
    """``more``: cards of the other pages of the member's site (the brand's, the profile)."""
    notice = (
        f'<p class="alert" id="frozen">{esc(word("frozen_notice", lang))}</p>' if frozen else ""
    )
    return (
        f'{nav(lang, "/member/")}<section class="card">{notice}'
        f"<p class=small>{esc(word('balance', lang))}</p>"
        f'<p class="big" id="balance">{points}</p>'
        f"{facts([(word('phone', lang), mask_phone(phone))])}"
        f'<a class="button" href="/member/gifts">{esc(word("nav_gifts", lang))}</a></section>'
        f"{more}"
        f"<section class=card>{form('/member/logout', csrf, '', word('sign_out', lang), 'quiet')}"
        f'<a class="quiet" id="close" href="/member/close">{esc(word("close_title", lang))}</a>'
        "</section>"
    )


def close(lang: Lang, csrf: str) -> str:
    """The step before a membership's erasure: what it takes away, and the button."""
    return (
        f'<section class="card"><p class="alert" id="close-explain">'
        f"{esc(word('close_explain', lang))}</p>"
        f"{form('/member/close', csrf, '', word('close_confirm', lang))}"
        f'<a href="/member">{esc(word("nav_home", lang))}</a></section>'
    )


def pager(path: str, page: int, per_page: int, total: int, lang: Lang) -> str:
    prev = (
        f'<a href="{path}?page={page - 1}">{esc(word("prev", lang))}</a>' if page > 1 else "<i></i>"
    )
    more = page * per_page < total
    nxt = f'<a href="{path}?page={page + 1}">{esc(word("next", lang))}</a>' if more else ""
    return f'<div class="pager">{prev}{nxt}</div>' if page > 1 or more else ""


def _empty(lang: Lang) -> str:
    return f'<p class="hint" id="empty">{esc(word("history_empty", lang))}</p>'


def _reason(reason: str | None, lang: Lang) -> str:
    """A ledger entry's reason: the system's own (a return's) in the page's language, a staff
    adjustment's as typed (a probe: the English sentence on the Chinese page)."""
    key = SYSTEM_REASONS.get(reason or "")
    return word("reason_" + key, lang) if key else reason or ""


def points_list(lang: Lang, balance: int, items: Sequence[LedgerEntryOut]) -> str:
    rows = []
    for e in items:
        what = e.product.name if e.product else (e.gift_name or _reason(e.reason, lang))
        sign = "plus" if e.points > 0 else "minus"
        rows.append(
            f'<li class="entry"><div class="line"><span>{esc(word("kind_" + e.kind, lang))}</span>'
            f'<span class="{sign}">{"+" if e.points > 0 else ""}{e.points}</span></div>'
            f'<div class="small">{esc(what)} · {esc(when(e.at))}</div></li>'
        )
    listing = f'<ul class="items">{"".join(rows)}</ul>' if rows else _empty(lang)
    return (
        f'{nav(lang, "/member/points")}<section class="card"><p class=small>'
        f'{esc(word("balance", lang))}</p><p class="big" id="balance">{balance}</p></section>'
        f'<section class="card" id="ledger">{listing}</section>'
    )


def gift_list(lang: Lang, csrf: str, balance: int, gifts: Sequence[Gift], nonce: str) -> str:
    cards = []
    for g in gifts:
        picture = safe_url(g.picture_url)
        img = f'<img src="{esc(picture)}" alt="{esc(g.name)}">' if picture else ""
        rows = [
            (word("gift_cost", lang), word("points_unit", lang, n=g.points_cost)),
            ("", word("gift_" + g.kind, lang)),
            (word("gift_stock", lang), g.stock),
            (word("gift_until", lang), when(g.valid_to)),
        ]
        if g.affordable:
            fields = hidden("gift_id", g.id) + hidden("client_id", f"h5-{nonce}-{g.id}")
            action = form("/member/redeem", csrf, fields, word("redeem", lang))
        else:
            action = f'<button type="button" disabled>{esc(word("not_enough", lang))}</button>'
        description = f"<p>{esc(g.description)}</p>" if g.description else ""
        cards.append(
            f'<section class="card gift" data-gift="{g.id}">{img}<h2>{esc(g.name)}</h2>'
            f"{description}{facts(rows)}{action}</section>"
        )
    return (
        f'{nav(lang, "/member/gifts")}<section class="card"><p class=small>'
        f'{esc(word("balance", lang))}</p><p class="big" id="balance">{balance}</p></section>'
        + ("".join(cards) or f'<section class="card">{_empty(lang)}</section>')
    )


def redemption_facts(lang: Lang, r: RedemptionOut, name: bool = True) -> str:
    rows = [
        (word("how", lang), r.how_to_collect),
        (word("valid_until", lang), when(r.expires_at)),
        (word("fulfilled_at", lang), when(r.fulfilled_at)),
    ]
    shown = (  # a code sealed under another master key reads as nothing here (logged)
        f'<p class="code" data-code="{esc(r.code)}">{esc(r.code)}</p>'
        if r.code is not None
        else f'<p class="hint">{esc(word("code_unreadable", lang))}</p>'
    )
    gift = esc(r.gift_name) + " · " if name else ""
    return f"{shown}<p>{gift}{esc(word('points_unit', lang, n=r.points))}</p>{facts(rows)}"


def code_list(lang: Lang, items: Sequence[RedemptionOut]) -> str:
    rows = "".join(
        f'<li class="redemption" data-status="{esc(r.status)}"><div class="line">'
        f"<b>{esc(r.gift_name)}</b><span>{esc(word('status_' + r.status, lang))}</span></div>"
        f"{redemption_facts(lang, r, name=False)}</li>"
        for r in items
    )
    listing = f'<ul class="items">{rows}</ul>' if rows else _empty(lang)
    return f'{nav(lang, "/member/codes")}<section class="card" id="codes">{listing}</section>'


def _place(s: ScanRow, lang: Lang) -> str:
    """Where a scan was made, named as the verification answer names it: once in Chinese
    (上海市, not 上海市 上海市), in English for an English reader (Shanghai)."""
    if not s.province:
        return s.city or ""
    return place_name(Place(s.province, s.city).label, lang)


def scan_list(lang: Lang, items: Sequence[ScanRow]) -> str:
    rows = []
    for s in items:
        place = _place(s, lang)
        name = " ".join(p for p in (s.product_name, s.spec) if p) or (s.serial or "")
        result = word("result_" + s.result, lang) if "result_" + s.result in _RESULTS else s.result
        rows.append(
            f'<li class="scan"><div class="line"><b>{esc(name)}</b><span>{esc(result)}</span>'
            f'</div><div class="small">{esc(when(s.at))}'
            f"{' · ' + esc(place) if place else ''}</div></li>"
        )
    listing = f'<ul class="items">{"".join(rows)}</ul>' if rows else _empty(lang)
    return f'{nav(lang, "/member/scans")}<section class="card" id="scans">{listing}</section>'


_RESULTS = {
    "result_genuine",
    "result_suspicious",
    "result_not_genuine",
    "result_wrong_pin",
    "result_locked",
    "result_unconfirmed",
}
