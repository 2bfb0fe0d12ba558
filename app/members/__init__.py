"""Members and loyalty (M1–M6, K2 points): consumers signed up by phone, points claimed by
scan + PIN, gifts, redemption codes and their fulfilment.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.members import routes, routes_points

router = Router(
    path="",
    route_handlers=[*routes.route_handlers, *routes_points.route_handlers],
    tags=["members"],
)
