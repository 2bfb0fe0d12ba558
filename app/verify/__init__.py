"""Consumer verification (SPEC V): ``POST /v1/verify``, the write-behind of its records, alerts.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it (and documents the raw ASGI
``/v1/verify`` with ``document_verify``).
"""

from litestar import Router

from app.verify.routes import AlertController, verify

router = Router(path="", route_handlers=[verify, AlertController])
