"""Consumer verification (SPEC V): ``POST /v1/verify``, the write-behind of its records, alerts,
and the records list (``GET /verifications``, ``listing``).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it (and documents the raw ASGI
``/v1/verify`` with ``document_verify``).
"""

from litestar import Router

from app.verify.routes import AlertController, verify
from app.verify.routes_records import list_verifications

router = Router(path="", route_handlers=[verify, AlertController, list_verifications])
