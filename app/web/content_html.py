"""The brand's own pages of the phone site as plain functions returning HTML (see
``app/web/html.py``): the product list and the brand story. Every value goes through ``esc``,
every word through ``app.web.i18n.word``; the story's HTML is the allow-list sanitiser's
(``app.content.sanitise``), the one markup put in unescaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.web.html import esc, facts, safe_url
from app.web.i18n import Lang, word

# The list's rows and the story's pictures on a 320 px screen: a picture never wider than the
# card, the list's thumbnails beside the name.
STYLE = (
    "<style>.story img{display:block;max-width:100%;height:auto;border-radius:8px;margin:8px 0}"
    ".story blockquote{margin:8px 0;padding:0 12px;border-left:4px solid #9aa5b1;color:#52606d}"
    ".story h2,.story h3{margin:16px 0 8px}"
    "li.product{display:flex;gap:12px;align-items:flex-start}"
    "li.product img{width:72px;height:72px;object-fit:cover;border-radius:8px;flex:none}"
    "li.product h2{font-size:17px;margin:0 0 4px}li.product a{margin-right:12px}</style>"
)


def products_path(brand_id: int, page: int = 1) -> str:
    return f"/brand/products?brand={brand_id}" + (f"&page={page}" if page > 1 else "")


def story_path(brand_id: int) -> str:
    return f"/brand/story?brand={brand_id}"


def nav(lang: Lang, brand_id: int, current: str) -> str:
    """The brand pages' way around: products, story, the member's home."""
    links = (
        (products_path(brand_id), "products_title", "products"),
        (story_path(brand_id), "story_title", "story"),
        ("/member", "member_site", "member"),
    )
    return (
        "<nav>"
        + "".join(
            f'<a href="{esc(href)}"{" aria-current=page" if name == current else ""}>'
            f"{esc(word(key, lang))}</a>"
            for href, key, name in links
        )
        + "</nav>"
    )


def member_links(lang: Lang, brand_id: int) -> str:
    """The member home's way to the brand's pages and the member's profile."""
    links = (
        (products_path(brand_id), "products_title", "to-products"),
        (story_path(brand_id), "story_title", "to-story"),
        ("/member/profile", "profile_title", "to-profile"),
    )
    return (
        '<section class="card" id="more">'
        + "".join(
            f'<a class="button quiet" id="{name}" href="{esc(href)}">{esc(word(key, lang))}</a>'
            for href, key, name in links
        )
        + "</section>"
    )


def _product(p: Mapping[str, object], lang: Lang) -> str:
    picture = safe_url(p.get("image_url"))
    img = f'<img src="{esc(picture)}" alt="" loading="lazy">' if picture else ""
    links = []
    if p.get("gtin"):  # a product's page is found by its GTIN; one without has none
        links.append(f'<a href="/p/{esc(p["gtin"])}">{esc(word("product_link", lang))}</a>')
    video = safe_url(p.get("video_url"))
    if video:
        links.append(f'<a href="{esc(video)}">{esc(word("video", lang))}</a>')
    rows = [(word("spec", lang), p.get("spec")), (word("category", lang), p.get("category"))]
    return (
        f'<li class="product" data-product="{esc(p["id"])}">{img}<div>'
        f"<h2>{esc(p['name'])}</h2>{facts(rows)}<p>{''.join(links)}</p></div></li>"
    )


def product_list(
    lang: Lang, brand_id: int, brand: str, items: Sequence[Mapping[str, object]]
) -> str:
    rows = "".join(_product(p, lang) for p in items)
    listing = (
        f'<ul class="items" id="products">{rows}</ul>'
        if rows
        else f'<p class="hint" id="empty">{esc(word("no_products", lang))}</p>'
    )
    return (
        f"{STYLE}{nav(lang, brand_id, 'products')}"
        f'<section class="card"><h2 id="brand-name">{esc(brand)}</h2>{listing}</section>'
    )


def pager(brand_id: int, page: int, per_page: int, total: int, lang: Lang) -> str:
    prev = (
        f'<a href="{esc(products_path(brand_id, page - 1))}">{esc(word("prev", lang))}</a>'
        if page > 1
        else "<i></i>"
    )
    more = page * per_page < total
    nxt = (
        f'<a href="{esc(products_path(brand_id, page + 1))}">{esc(word("next", lang))}</a>'
        if more
        else ""
    )
    return f'<div class="pager">{prev}{nxt}</div>' if page > 1 or more else ""


def story(lang: Lang, brand_id: int, brand: str, title: str, sanitised: str) -> str:
    """The story: its title (or the brand's name) and its sanitised HTML."""
    heading = title or brand
    return (
        f"{STYLE}{nav(lang, brand_id, 'story')}"
        f'<article class="card story" id="story"><h2>{esc(heading)}</h2>{sanitised}</article>'
    )


def no_story(lang: Lang, brand_id: int, brand: str) -> str:
    return (
        f'{nav(lang, brand_id, "story")}<section class="card"><h2>{esc(brand)}</h2>'
        f'<p class="hint" id="empty">{esc(word("no_story", lang))}</p></section>'
    )
