"""Operations: health, Prometheus metrics, a trivial ping, and the audit log reader.

``router`` is the HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.ops.routes import audit_log, health, metrics, ping

router = Router(path="", route_handlers=[ping, health, metrics, audit_log], tags=["ops"])
