"""The packing line: production context, activation, aggregation, undo, replace (SPEC P1–P6).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.packing.routes import LineController, PackingController

router = Router(path="", route_handlers=[LineController, PackingController], tags=["packing"])
