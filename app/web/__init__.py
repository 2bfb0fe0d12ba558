"""The public web face: the GS1 Digital Link resolver (``/01/…``, ``/00/…``, its description)
and the consumer H5 pages (``/c/{serial}``, its PIN form, ``/p/{gtin}``, the member pages under
``/member``), the store clerk's rebate pages under ``/clerk``, the office console's built files
under ``/console`` (``app.web.console``) and the staff mobile app's under ``/m``
(``app.web.mobile``).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.web import clerk_pages, console, draw_pages, member_pages, mobile
from app.web.pages import no_page, pin_page, product_page, scan_page
from app.web.resolver import (
    resolve,
    resolve_cut_short,
    resolver_description,
    resolver_description_preflight,
)

router = Router(
    path="",
    route_handlers=[
        resolve,
        resolve_cut_short,
        # before the description's GET: registered after it, Litestar's own OPTIONS (without
        # CORS) would be the path's
        resolver_description_preflight,
        resolver_description,
        scan_page,
        pin_page,
        product_page,
        no_page,
        *member_pages.route_handlers,
        *draw_pages.route_handlers,
        *clerk_pages.route_handlers,
        *console.route_handlers,
        *mobile.route_handlers,
    ],
)
