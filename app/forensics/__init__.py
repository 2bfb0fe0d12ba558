"""Leak detection and fraud holds (SPEC B5): leaked print files and code packs, reward-fraud
rings held for review.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.forensics.routes import ForensicsController

router = Router(path="", route_handlers=[ForensicsController], tags=["forensics"])
