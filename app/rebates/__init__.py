"""Store sales rebates (R1–R3, K2 rebates): the rebate of each product (per agent),
clerks' claims by scan + PIN (the claim mechanism of ``app.claims``, shared with members'
points), queries and exports, rankings rolled up by a worker, and the stores' settlement
statements.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.rebates import routes, routes_claims, routes_ranking, routes_settlement

router = Router(
    path="",
    route_handlers=[
        *routes.route_handlers,
        *routes_claims.route_handlers,
        *routes_ranking.route_handlers,
        *routes_settlement.route_handlers,
    ],
    tags=["rebates"],
)
