"""The catalogue: product categories and products.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.catalog.routes import CategoryController, ProductController

router = Router(path="", route_handlers=[CategoryController, ProductController], tags=["catalogue"])
