"""HTTP routes of webhooks: subscriptions, rotation, the delivery log and replays."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.params import QueryParameter

from app.auth.principal import Principal
from app.bodies import QueryTime
from app.config import Settings
from app.db import Conn
from app.paging import Page, PageNo, PerPage
from app.webhooks import service
from app.webhooks.schemas import (
    DeliveryOut,
    DeliveryState,
    ReplayOut,
    ReplayRangeIn,
    RotateIn,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)

StateParam = Annotated[DeliveryState | None, QueryParameter(name="state", description="only these")]
Since = Annotated[QueryTime | None, QueryParameter(name="from", description="made at or after")]
Until = Annotated[QueryTime | None, QueryParameter(name="to", description="made before")]


class SubscriptionController(Controller):
    """Endpoints of partners subscribed to event kinds (permission ``webhooks.manage``). Each
    receives the events of its organisation's subtree, signed (README "Webhooks")."""

    path = "/webhooks/subscriptions"

    @post("/")
    async def create(
        self, data: SubscriptionIn, conn: Conn, principal: Principal, settings: Settings
    ) -> SubscriptionOut:
        """Subscribe ``url`` to ``event_kinds``; the answer holds the signing secret (only
        here). 400 ``invalid_url``, ``url_credentials``, ``private_address``,
        ``unknown_event_kind``, ``invalid_character``."""
        return await service.create(conn, principal, settings, data)

    @get("/")
    async def list_subscriptions(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[SubscriptionOut]:
        return await service.list_subscriptions(conn, principal, page, per_page)

    @get("/{sub_id:int}")
    async def get_one(self, sub_id: int, conn: Conn, principal: Principal) -> SubscriptionOut:
        return await service.get(conn, principal, sub_id)

    @patch("/{sub_id:int}")
    async def update(
        self,
        sub_id: int,
        data: SubscriptionPatch,
        conn: Conn,
        principal: Principal,
        settings: Settings,
    ) -> SubscriptionOut:
        """Change the URL, kinds or description; ``active: false`` pauses: nothing is queued for it
        meanwhile, deliveries already queued wait until it is active again."""
        return await service.update(conn, principal, settings, sub_id, data)

    @delete("/{sub_id:int}", status_code=204)
    async def remove(self, sub_id: int, conn: Conn, principal: Principal) -> None:
        await service.delete(conn, principal, sub_id)

    @post("/{sub_id:int}/rotate", status_code=200)
    async def rotate(
        self,
        sub_id: int,
        conn: Conn,
        principal: Principal,
        settings: Settings,
        data: RotateIn | None = None,
    ) -> SubscriptionOut:
        """A new secret (in this answer only); the old one also signs for ``overlap_seconds``
        (default ``WEBHOOK_ROTATION_OVERLAP_SECONDS``), as every one rotated out before does
        until its own overlap ends; 409 ``too_many_secrets`` when three sign beside the current
        one already (a rotation with ``overlap_seconds`` 0 is always possible)."""
        return await service.rotate(conn, principal, settings, sub_id, data or RotateIn())

    @get("/{sub_id:int}/deliveries")
    async def deliveries(
        self,
        sub_id: int,
        conn: Conn,
        principal: Principal,
        delivery_state: StateParam = None,
        since: Since = None,
        until: Until = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[DeliveryOut]:
        """The delivery log, newest first: each delivery with its attempts (time, HTTP status,
        latency, error)."""
        return await service.list_deliveries(
            conn, principal, sub_id, state=delivery_state, since=since, until=until, page=page,
            per_page=per_page,
        )  # fmt: skip

    @post("/{sub_id:int}/replay", status_code=202)
    async def replay_range(
        self, sub_id: int, data: ReplayRangeIn, conn: Conn, principal: Principal
    ) -> ReplayOut:
        """Send again the deliveries made in [from, to) (optionally only those in ``state``)."""
        return await service.replay_range(conn, principal, sub_id, data)


class DeliveryController(Controller):
    path = "/webhooks/deliveries"

    @get("/{delivery_id:int}")
    async def get_one(self, delivery_id: int, conn: Conn, principal: Principal) -> DeliveryOut:
        return await service.get_delivery(conn, principal, delivery_id)

    @post("/{delivery_id:int}/replay", status_code=202)
    async def replay(self, delivery_id: int, conn: Conn, principal: Principal) -> ReplayOut:
        """Send the delivery's event again (a new delivery with the same ``webhook-id``)."""
        return await service.replay(conn, principal, delivery_id)


class EventKindController(Controller):
    path = "/webhooks/event-kinds"

    @get("/")
    async def kinds(self, principal: Principal) -> dict[str, str]:
        """The event kinds one may subscribe to, and what each announces."""
        principal.require(service.PERMISSION)
        return service.EVENT_KINDS
