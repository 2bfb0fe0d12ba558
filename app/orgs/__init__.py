"""Organisations: the brand's tree of factories, warehouses, distributors and stores.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.orgs.routes import OrgController

router = Router(path="", route_handlers=[OrgController], tags=["organisations"])
