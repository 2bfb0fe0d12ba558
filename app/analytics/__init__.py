"""Analytics (A1–A7) and the console's dashboard: statistics rolled up by the workers into
summary tables (incremental, exactly once, each checked against a recount by a command) and
served by JSON endpoints with filters and CSV/XLSX export.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.analytics import routes_people, routes_sales

router = Router(
    path="",
    route_handlers=[*routes_sales.route_handlers, *routes_people.route_handlers],
    tags=["analytics"],
)
