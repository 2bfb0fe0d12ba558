"""Inspection: field checks of codes in the market and their summaries.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.inspect.routes import InspectionController

router = Router(path="", route_handlers=[InspectionController], tags=["inspection"])
