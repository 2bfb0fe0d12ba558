"""The tamper-evident event log (SPEC B7): each brand's events in a hash chain, signed anchors of
its heads, an export an auditor verifies offline (``app.events.chainverify``) and a check that
names what was altered.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.chain.routes import ChainController

router = Router(path="", route_handlers=[ChainController], tags=["event chain"])
