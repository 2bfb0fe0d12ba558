"""Authentication (passwords, JWT, API keys) and authorisation (roles, permissions, scoping).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.auth.routes import ApiKeyController, AuthController

router = Router(path="", route_handlers=[AuthController, ApiKeyController], tags=["auth"])
