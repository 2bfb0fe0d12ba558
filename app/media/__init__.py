"""Media: photos uploaded by staff (field reps' store reviews, inspectors), kept behind a small
storage interface (``app.media.storage``) and served only to those allowed.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.media.routes import PhotoController

router = Router(path="", route_handlers=[PhotoController], tags=["media"])
