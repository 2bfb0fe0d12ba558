"""Media: photos uploaded by staff (field reps' store reviews, inspectors), kept behind a small
storage interface (``app.media.storage``) and served only to those allowed; and the catalogue's
product images and videos (``app.media.catalog``), kept in the same store and served to everyone.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.media.catalog_routes import CatalogMediaController
from app.media.routes import PhotoController

router = Router(path="", route_handlers=[PhotoController, CatalogMediaController], tags=["media"])
