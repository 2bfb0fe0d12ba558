"""The consumer pages as plain functions returning HTML; every value goes through ``esc``.

Mobile first: one column, system fonts, 48 px tap targets, no external files. The pages work with
JavaScript off; the one inline script only stops a double submit (which would count twice).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from html import escape
from typing import Any

from app.catalog.schemas import CATALOG_PATH
from app.web.i18n import Lang, word

_OWN_MEDIA = re.compile(CATALOG_PATH)

SCRIPT = (
    "for(const f of document.querySelectorAll('form.pin'))"
    "f.addEventListener('submit',()=>{f.querySelector('button').disabled=true});"
)
SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{SCRIPT_HASH}'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; media-src 'self'"  # a product video uploaded here (app.media.catalog)
)
# Served over https, the catalogue's http:// pictures (``image_url``, a gift's ``picture_url``)
# would be mixed content: blocked by Android WebViews, swappable by any network on the way. The
# browser fetches them over https instead (``upgrade-insecure-requests``, before img-src is
# checked), and nothing is loaded over plain http. Over http (development) they load as given.
_HTTP_IMAGES = "img-src https: http: data:"


@lru_cache(maxsize=8)  # the pages' few policies (these pages', the clerk pages')
def over_https(csp: str) -> str:
    """``csp`` for a page served over https: no plain-http picture, insecure URLs upgraded."""
    return csp.replace(_HTTP_IMAGES, "img-src https: data:") + "; upgrade-insecure-requests"


CSS = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.55 -apple-system,"PingFang SC","Microsoft YaHei",system-ui,sans-serif;
color:#1f2933;background:#f3f5f7}
header{display:flex;justify-content:space-between;align-items:center;padding:0 16px;
min-height:52px;background:#12355b;color:#fff}
header b{font-size:17px}
header a,header button{color:#fff;padding:12px 4px;min-height:48px;display:inline-flex;
align-items:center}
header button{width:auto;margin:0;background:none;font:inherit;text-decoration:underline}
main{max-width:560px;margin:0 auto;padding:16px;overflow-wrap:anywhere}
.card{background:#fff;border-radius:12px;padding:16px;margin:0 0 16px;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
.status{border-left:8px solid #8795a1}
.status h1{margin:0 0 8px;font-size:24px}
.genuine{border-color:#1f9d55}.genuine h1{color:#1f9d55}
.suspicious,.wrong_pin,.locked,.rate_limited{border-color:#d97706}
.suspicious h1,.wrong_pin h1,.locked h1,.rate_limited h1{color:#b45309}
.not_genuine,.error{border-color:#dc2626}.not_genuine h1,.error h1{color:#dc2626}
.product img{display:block;max-width:100%;height:auto;margin:0 auto 12px;border-radius:8px}
.product h2{margin:0 0 8px;font-size:20px;word-break:break-word}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:0}
dt{color:#52606d}dd{margin:0;overflow-wrap:anywhere}
label{display:block;font-weight:600;margin-bottom:8px}
input{width:100%;font-size:26px;letter-spacing:.3em;text-align:center;padding:10px;
min-height:56px;border:2px solid #9aa5b1;border-radius:10px}
input.text{font-size:18px;letter-spacing:normal;text-align:left}
input:focus{border-color:#12355b;outline:none}
button{width:100%;margin-top:12px;min-height:52px;font-size:18px;font-weight:600;color:#fff;
background:#12355b;border:0;border-radius:10px}
button:disabled{opacity:.6}
.hint{color:#52606d;font-size:14px;margin:6px 0 0}
.alert{color:#b91c1c;font-weight:600}
a{color:#12355b}
footer{color:#52606d;font-size:13px;text-align:center;padding:8px 16px 24px}
.ok{border-color:#1f9d55}.ok h1{color:#1f9d55}
nav{display:flex;flex-wrap:wrap;gap:6px;margin:0 0 12px}
nav a{display:inline-flex;align-items:center;padding:0 14px;min-height:44px;border-radius:22px;
background:#fff;text-decoration:none;font-size:15px}
nav a[aria-current]{background:#12355b;color:#fff}
.big{font-size:36px;font-weight:700;margin:0;color:#12355b}
.card h2{margin:0 0 8px;font-size:20px}.card>p:first-child{margin-top:0}
ul.items{list-style:none;margin:0;padding:0}
ul.items li{padding:12px 0;border-bottom:1px solid #e4e7eb}
ul.items li:last-child{border:0}
.line{display:flex;justify-content:space-between;gap:12px;align-items:baseline}
.plus{color:#15803d;font-weight:700}.minus{color:#b45309;font-weight:700}
.small{color:#52606d;font-size:14px}
.code{font:700 24px/1.3 ui-monospace,Menlo,monospace;letter-spacing:.12em;word-break:break-all}
a.button{display:flex;justify-content:center;align-items:center;min-height:52px;font-size:18px;
font-weight:600;color:#fff;background:#12355b;border-radius:10px;text-decoration:none;margin-top:12px}
button.quiet,a.quiet{background:#fff;color:#12355b;border:2px solid #12355b}
.gift img{display:block;max-width:100%;height:auto;border-radius:8px;margin:0 0 8px}
.gift h2{margin:0 0 4px;font-size:18px}
.pager{display:flex;justify-content:space-between}
.pager a{padding:12px 4px;min-height:48px}
"""

STATUS_MARK = {
    "genuine": "✓",
    "suspicious": "!",
    "wrong_pin": "!",
    "locked": "!",
    "rate_limited": "!",
    "not_genuine": "✕",
    "error": "✕",
    "unreadable": "?",  # no verdict: nobody could read the code
    "ok": "✓",
}


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def page(
    lang: Lang,
    title: str,
    body: str,
    switch_href: str,
    site: str = "site",
    switch_form: Mapping[str, str] | None = None,
) -> str:
    """The document around ``body``: head, the header (``site``: the word naming the pages)
    with the language switch, the footer. ``switch_form``: the switch posts these fields to
    ``switch_href`` instead of linking to it (an answer the PIN proved, shown again in the other
    language: ``app.web.pages``)."""
    other = "en" if lang == "zh" else "zh"
    switch = (
        f'<a id="lang-switch" href="{esc(switch_href)}" hreflang="{other}">'
        f"{esc(word('switch', lang))}</a>"
    )
    if switch_form is not None:
        fields = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
            for k, v in {**switch_form, "lang": other}.items()
        )
        switch = (
            f'<form class="switch" method="post" action="{esc(switch_href)}">{fields}'
            f'<button id="lang-switch" type="submit">{esc(word("switch", lang))}</button></form>'
        )
    return (
        "<!doctype html>"
        f'<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex"><link rel="icon" href="data:,">'
        f"<title>{esc(title)} · {esc(word(site, lang))}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><b>{esc(word(site, lang))}</b>{switch}</header>"
        f"<main>{body}</main>"
        f"<footer>{esc(word('footer', lang))}</footer>"
        f"<script>{SCRIPT}</script></body></html>"
    )


def status(kind: str, headline: str, message: str, extra: str = "") -> str:
    """The coloured answer box: ✓ genuine, ! caution, ✕ not genuine, ? unreadable."""
    return (
        f'<section class="card status {esc(kind)}" id="result" data-result="{esc(kind)}">'
        f"<h1>{esc(STATUS_MARK.get(kind, '!'))} {esc(headline)}</h1>"
        f'<p id="message">{esc(message)}</p>{extra}</section>'
    )


def facts(rows: Iterable[tuple[str, object]]) -> str:
    """A definition list of the rows whose value is not empty."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows if v not in (None, ""))
    return f"<dl>{items}</dl>" if items else ""


def safe_url(url: object) -> str | None:
    """Only http(s) URLs, and the paths of catalogue media served here, reach ``href``/``src``."""
    text = str(url or "")
    return text if text.startswith(("https://", "http://")) or own_media(text) else None


def own_media(url: str) -> bool:
    """Whether ``url`` is a catalogue medium of this server (``/media/catalog/{id}``)."""
    return _OWN_MEDIA.fullmatch(url) is not None


def product_card(
    product: Mapping[str, Any], lang: Lang, rows: Iterable[tuple[str, object]], link: str = ""
) -> str:
    image = safe_url(product.get("image_url"))
    img = f'<img src="{esc(image)}" alt="{esc(product["name"])}">' if image else ""
    video = safe_url(product.get("video_url"))
    more = f'<p><a href="{esc(video)}">{esc(word("video", lang))}</a></p>' if video else ""
    if video and own_media(video):  # played in the page (media-src 'self'); elsewhere, a link
        more = (
            f'<video src="{esc(video)}" controls playsinline preload="metadata" '
            f'style="display:block;width:100%;border-radius:8px"></video>{more}'
        )
    if link:
        more += f'<p><a href="{esc(link)}">{esc(word("product_link", lang))}</a></p>'
    return (
        f'<section class="card product">{img}<h2 id="product-name">{esc(product["name"])}</h2>'
        f"{facts(rows)}{more}</section>"
    )


def pin_form(
    action: str, lang: Lang, pin_length: int, check: str, error: str = "", again: bool = False
) -> str:
    """The PIN entry: a plain POST form (works without JavaScript). ``check``: this form's
    own random id, so that the form sent again (a retry, a reload) is not counted again."""
    alert = f'<p class="alert" id="form-error">{esc(error)}</p>' if error else ""
    label = word("again" if again else "pin_label", lang)
    return (
        f'<section class="card"><form class="pin" method="post" action="{esc(action)}">{alert}'
        f'<label for="pin">{esc(label)}</label>'
        f'<input id="pin" name="pin" type="text" inputmode="numeric" autocomplete="off" '
        f'maxlength="{pin_length + 8}" required autofocus>'
        f'<p class="hint">{esc(word("pin_hint", lang, n=pin_length))}</p>'
        f'<input type="hidden" name="lang" value="{esc(lang)}">'
        f'<input type="hidden" name="check" value="{esc(check)}">'
        f'<button type="submit">{esc(word("submit", lang))}</button></form></section>'
    )
