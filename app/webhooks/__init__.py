"""Webhooks (I1): partners subscribe endpoints to event kinds of their subtree; deliveries are
written by database triggers in the transaction of what happened (migration 0028), signed the
Standard Webhooks way and sent by the workers with retries (workers/webhooks.py).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.webhooks.routes import DeliveryController, EventKindController, SubscriptionController

router = Router(
    path="",
    route_handlers=[SubscriptionController, DeliveryController, EventKindController],
    tags=["webhooks"],
)
