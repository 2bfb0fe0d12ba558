"""The promotions and complaints pages' pieces (``app/web/marketing_pages.py``) as plain functions
returning HTML, as ``member_html``: every value through ``esc``, every word through ``word``.

A promotion's body is plain text: escaped, its line breaks kept by CSS (``white-space:
pre-line``), never read as HTML. Its picture and link reach ``src``/``href`` only as http(s) URLs
(``html.safe_url``; the API takes https only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from app.verify.messages import when
from app.web.html import esc, facts, safe_url
from app.web.i18n import Lang, word
from app.web.member_html import alert, form, hidden, nav

if TYPE_CHECKING:  # not at run time: app.web.member_pages imports this module, and the
    # marketing package's router imports app.web.marketing_pages, which imports member_pages
    from app.marketing.schemas import MyComplaint, Promotion

# textarea and select in the pages' look (the shared CSS styles inputs only); pre-line keeps a
# text's line breaks without reading it as HTML
STYLE = (
    "<style>.pre{white-space:pre-line}textarea,select{width:100%;font:inherit;padding:10px;"
    "border:2px solid #9aa5b1;border-radius:10px}textarea{min-height:140px}"
    ".choice{display:flex;gap:16px;margin:0 0 12px}.choice label{font-weight:400}"
    ".choice input{width:auto;min-height:0}.reply{background:#f3f5f7;border-radius:8px;"
    "padding:8px 12px;margin-top:8px}.promo img{display:block;max-width:100%;height:auto;"
    "border-radius:8px;margin:0 0 8px}</style>"
)
KINDS = ("complaint", "suggestion")
CONTACTS = ("phone", "sms", "none")


def member_links(lang: Lang) -> str:
    """The way to the promotions and the complaints pages, on the member's home page."""
    return (
        '<section class="card" id="marketing">'
        f'<a class="button quiet" href="/member/promotions">{esc(word("nav_promotions", lang))}'
        f'</a><a class="button quiet" href="/member/complaints">'
        f"{esc(word('nav_complaints', lang))}</a></section>"
    )


def promotion_list(lang: Lang, items: Sequence[Promotion]) -> str:
    """A card per promotion: picture, title, text (line breaks kept), window, link."""
    cards = []
    for p in items:
        picture = safe_url(p.image_url)
        img = f'<img src="{esc(picture)}" alt="{esc(p.title)}">' if picture else ""
        link = safe_url(p.link_url)
        more = (
            f'<a class="button" href="{esc(link)}" rel="noopener noreferrer">'
            f"{esc(word('promo_link', lang))}</a>"
            if link
            else ""
        )
        rows = [
            (word("promo_starts", lang), when(p.starts_at)),
            (word("promo_ends", lang), when(p.ends_at)),
        ]
        body = f'<p class="pre">{esc(p.body)}</p>' if p.body else ""
        cards.append(
            f'<section class="card promo" data-promotion="{p.id}">{img}<h2>{esc(p.title)}</h2>'
            f"{body}{facts(rows)}{more}</section>"
        )
    empty = (
        '<section class="card"><p class="hint" id="empty">'
        f"{esc(word('promotions_empty', lang))}</p></section>"
    )
    return f"{STYLE}{nav(lang, '')}{''.join(cards) or empty}"


def _radio(name: str, value: str, label: str, checked: bool) -> str:
    mark = " checked" if checked else ""
    return (
        f'<label><input type="radio" name="{esc(name)}" value="{esc(value)}"{mark}> '
        f"{esc(label)}</label>"
    )


def complaint_form(
    lang: Lang,
    csrf: str,
    client_id: str,
    typed: Mapping[str, str] | None = None,
    error: str = "",
    notice: str = "",
) -> str:
    """The filing form (``typed``: the fields as sent, after a refusal)."""
    typed = typed or {}
    kind = typed.get("kind") if typed.get("kind") in KINDS else "complaint"
    contact = typed.get("contact") if typed.get("contact") in CONTACTS else "phone"
    kinds = "".join(_radio("kind", k, word(f"complaint_kind_{k}", lang), k == kind) for k in KINDS)
    options = "".join(
        f'<option value="{c}"{" selected" if c == contact else ""}>'
        f"{esc(word('contact_' + c, lang))}</option>"
        for c in CONTACTS
    )
    fields = (
        f"{alert(error)}"
        + (f'<p class="ok" id="notice">{esc(notice)}</p>' if notice else "")
        + f"<p>{esc(word('complaint_intro', lang))}</p>"
        f'<p class="choice">{kinds}</p>'
        f'<label for="body">{esc(word("complaint_body", lang))}</label>'
        f'<textarea id="body" name="body" maxlength="2000" required>'
        f"{esc(typed.get('body', ''))}</textarea>"
        f'<label for="serial">{esc(word("complaint_serial", lang))}</label>'
        f'<input class="text" id="serial" name="serial" maxlength="200" '
        f'value="{esc(typed.get("serial", ""))}">'
        f'<label for="store_name">{esc(word("complaint_store", lang))}</label>'
        f'<input class="text" id="store_name" name="store_name" maxlength="100" '
        f'value="{esc(typed.get("store_name", ""))}">'
        f'<label for="contact">{esc(word("complaint_contact", lang))}</label>'
        f'<select id="contact" name="contact">{options}</select>'
        f"{hidden('client_id', client_id)}{hidden('lang', lang)}"
    )
    body = form("/member/complaints", csrf, fields, word("complaint_send", lang))
    return f'{STYLE}{nav(lang, "")}<section class="card" id="complaint-form">{body}</section>'


def complaint_list(lang: Lang, items: Sequence[MyComplaint]) -> str:
    """The member's complaints: kind, status, text, what about, and the brand's reply."""
    rows = []
    for c in items:
        subject = " · ".join(x for x in (c.product_name or c.serial, c.store_name) if x)
        reply = (
            f'<div class="reply"><b>{esc(word("complaint_reply", lang))}</b>'
            f'<p class="pre">{esc(c.reply)}</p><div class="small">{esc(when(c.replied_at))}'
            "</div></div>"
            if c.reply
            else ""
        )
        rows.append(
            f'<li class="complaint" data-status="{esc(c.status)}"><div class="line">'
            f"<b>{esc(word('complaint_kind_' + c.kind, lang))}</b>"
            f"<span>{esc(word('complaint_status_' + c.status, lang))}</span></div>"
            f'<p class="pre">{esc(c.body)}</p>'
            f'<div class="small">{esc(when(c.created_at))}'
            f"{' · ' + esc(subject) if subject else ''}</div>{reply}</li>"
        )
    listing = (
        f'<ul class="items">{"".join(rows)}</ul>'
        if rows
        else f'<p class="hint" id="empty">{esc(word("history_empty", lang))}</p>'
    )
    return (
        f'<section class="card" id="complaints"><h2>{esc(word("my_complaints", lang))}</h2>'
        f"{listing}</section>"
    )
