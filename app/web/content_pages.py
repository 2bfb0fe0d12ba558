"""The brand's own pages of the phone site (seed 1.10.1, SPEC W1): the product list and the
brand story. Server-rendered like the scan and member pages, no script, zh-CN by default and
English by the same switch.

| URL | |
| --- | --- |
| ``GET /brand/products?brand&page`` | published products in display order: ``/p/{gtin}``, video |
| ``GET /brand/story?brand`` | the brand story (品牌介绍), sanitised rich text; 404 page: none |

Which brand: the page's ``?brand=`` (the links of the member's home and of these pages carry
it), else the signed-in member's, else the brand of the last sign-in on this phone (the
``tc_brand`` cookie, as the sign-in page finds it). Neither: a page saying how to get there
(scan a product). A brand that is no active brand is the 404 page, as its sign-in page is.

Nothing on them is personal: they are cached a few minutes (``Vary: Cookie``, as the brand may
come from the cookies). The handlers are mounted by ``app.content``'s router, the domain of the
story (``app.web``'s router is the scan and member pages').
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import Cookie

from app.config import Settings
from app.content.products import brand_name, published_products
from app.content.story import public_story
from app.db import Conn
from app.web import content_html, html, session
from app.web.i18n import Lang, word
from app.web.pages import PAGE_ERRORS, lang_switch, respond

PER_PAGE = 20
_PAGE: dict[str, Any] = {"include_in_schema": False, "exception_handlers": PAGE_ERRORS}


def _id(value: str | None) -> int | None:
    """A brand id as a page's query or cookie carries it; None for anything else."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 16 else None


async def brand_of_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> int | None:
    """The brand a page is about: ``?brand=``, the signed-in member's, the last sign-in's."""
    given = _id(request.query_params.get("brand"))
    if given is not None:
        return given
    member = await session.member_of(request, conn, settings)
    if member is not None:
        return member.brand_id
    return _id(request.cookies.get(session.BRAND_COOKIE))


def _page_no(request: Request[Any, Any, Any]) -> int:
    value = request.query_params.get("page") or "1"
    if value.isascii() and value.isdigit() and len(value) < 6:
        return max(1, min(int(value), 10_000))
    return 1


def _show(
    lang: Lang, remember: Cookie | None, title: str, body: str, path: str, status: int = 200
) -> Response[str]:
    page = html.page(lang, title, body, lang_switch(path, lang), "member_site")
    return respond(page, lang, remember, status, no_store=False)


def _no_brand(lang: Lang, remember: Cookie | None, path: str) -> Response[str]:
    """No brand to show (as the sign-in page without one): how to get to a brand's pages."""
    body = html.status("pin_required", word("products_title", lang), word("no_brand", lang))
    return _show(lang, remember, word("products_title", lang), body, path)


@get("/brand/products", **_PAGE)
async def products_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The brand's published products, in display order, a page at a time."""
    lang, remember = session.language(request, settings)
    brand_id = await brand_of_page(request, conn, settings)
    if brand_id is None:
        return _no_brand(lang, remember, "/brand/products")
    brand = await brand_name(conn, brand_id)  # 404 page for no active brand
    page = _page_no(request)
    out = await published_products(conn, brand_id, page, PER_PAGE)
    body = content_html.product_list(lang, brand_id, brand, out.items)
    body += content_html.pager(brand_id, page, PER_PAGE, out.total, lang)
    path = content_html.products_path(brand_id, page)
    return _show(lang, remember, word("products_title", lang), body, path)


@get("/brand/story", **_PAGE)
async def story_page(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Response[str]:
    """The brand story; a 404 page while the brand has written none."""
    lang, remember = session.language(request, settings)
    brand_id = await brand_of_page(request, conn, settings)
    if brand_id is None:
        return _no_brand(lang, remember, "/brand/story")
    brand = await brand_name(conn, brand_id)
    path = content_html.story_path(brand_id)
    found = await public_story(conn, brand_id)
    if found is None:
        body = content_html.no_story(lang, brand_id, brand)
        return _show(lang, remember, word("story_title", lang), body, path, 404)
    title, sanitised = found
    body = content_html.story(lang, brand_id, brand, title, sanitised)
    return _show(lang, remember, title or word("story_title", lang), body, path)


route_handlers = [products_page, story_page]
