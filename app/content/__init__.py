"""Content of the phone site (SPEC W1, seed 1.10.1/1.10.2): the brand story (品牌介绍), written in
the back office as sanitised rich text, and the pages consumers read — the brand's product list
and its story (``app.web.content_pages``).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.content.routes import BrandStoryController
from app.web import content_pages

router = Router(
    path="",
    route_handlers=[BrandStoryController, *content_pages.route_handlers],
    tags=["content"],
)
