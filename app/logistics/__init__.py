"""Logistics and inventory: orders, documents, movements of codes, stock (SPEC L1–L10).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it. Its operations keep their own
tags: "logistics", "stock" and "management center".
"""

from litestar import Router

from app.logistics.center_routes import CenterController
from app.logistics.routes import (
    DocumentController,
    OrderController,
    StockController,
    consumer_return,
    sell,
)

router = Router(
    path="",
    route_handlers=[
        OrderController,
        DocumentController,
        sell,
        consumer_return,
        StockController,
        CenterController,
    ],
)
