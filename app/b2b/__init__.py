"""B2B verification for trade partners (SPEC B8, the GS1 Lightweight Messaging Standard's
verification of product identifiers): ``/v1/lms/…``.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.b2b.routes import LmsController

router = Router(path="", route_handlers=[LmsController], tags=["b2b"])
