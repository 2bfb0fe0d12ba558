"""Marketing to consumers (W2, W3): promotions per province, managed by the brand and shown to
its members in their province; complaints and suggestions filed by members from the phone and
handled by the brand's staff in the back office.

``router`` is the domain's whole HTTP face, the member's pages of both
(``app.web.marketing_pages``) included; ``app.main`` mounts it.
"""

from litestar import Router

from app.marketing.routes import route_handlers
from app.web import marketing_pages

router = Router(
    path="",
    route_handlers=[*route_handlers, *marketing_pages.route_handlers],
    tags=["marketing"],
)
