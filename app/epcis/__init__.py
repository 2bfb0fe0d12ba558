"""EPCIS 2.0: identifier canonicalisation, CBV 2.0 event hashes, document capture and query.

``router`` is the domain's whole HTTP face (``app.epcis.routes``); ``app.main`` mounts it."""

from app.epcis.routes import router

__all__ = ["router"]
