"""The field force (SPEC F1–F3, seed 1.9 协同APP): reps' visit plans approved by their
supervisors, stores' signed nameplates (QR, PNG/PDF), check-ins by nameplate and GPS with the
distance to the store checked, the daily track, store reviews with photos (``app.media``), CSV
exports. Who sees what: ``app.field.scope``.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.field import routes

router = Router(path="", route_handlers=routes.route_handlers, tags=["field"])
