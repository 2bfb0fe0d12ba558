"""Users, roles and the permission list.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.users.routes import RoleController, UserController, list_permissions

router = Router(
    path="", route_handlers=[UserController, RoleController, list_permissions], tags=["users"]
)
