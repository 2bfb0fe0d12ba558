"""Webhook subscriptions, their delivery log, replays and secret rotation (I1).

A subscription belongs to an organisation (by default the caller's; any of the caller's
subtree) and receives the events of that organisation's subtree: for a brand, everything of the
brand; for an agent, the shipments to and from it and its stores, the alerts raised for it, the
rebate claims and sales of its stores, the points claimed for its channel's goods and its
stores' gift redemptions (without the member: members are the brand head office's, migrations
0092 and 0093). Callers need
``webhooks.manage``; a subscription outside the caller's subtree answers 404, as if it did not
exist.

Event kinds (``EVENT_KINDS``) are those the triggers of migration 0028 emit. Deliveries are made
by the workers (``app.webhooks.sender``); here they are listed (with every attempt: time, HTTP
status, latency, error) and replayed — a replay is a new delivery of the same event with the same
``webhook-id``, so a receiver that already processed it can recognise it.

Locks: a subscription's row before its deliveries, everywhere — a change or a delete
(``FOR UPDATE``, after waiting for the sender's attempts under way: ``_held``), a replay
(``FOR KEY SHARE``), the sender's record of a round (``FOR KEY SHARE``, in id order).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from app import audit
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn, changed, changes_of, update_row
from app.errors import BadRequest, Conflict
from app.localtime import aware
from app.locks import Lock, xact_lock
from app.orgs.service import org_path
from app.paging import Page, check_period, fetch_page
from app.textguard import check_text
from app.webhooks import signing
from app.webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    ReplayOut,
    ReplayRangeIn,
    RotateIn,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)
from app.webhooks.sender import READABLE_TIME
from app.webhooks.urls import check_subscribed

PERMISSION = "webhooks.manage"
#: kind -> what it announces (the triggers of migration 0028 emit exactly these; 0056 added the
#: sale and exception kinds, 0092 the claims' sales and the member-less points.claimed)
EVENT_KINDS: dict[str, str] = {
    "shipment.confirmed": "an outbound document (shipment to a downstream organisation) confirmed",
    "receipt.confirmed": "an inbound document (receipt of a shipment, factory inbound) confirmed",
    "return.confirmed": "a return document (goods back upstream) confirmed",
    "sale.confirmed": (
        "a sale to consumers (a store's, an agent's or a distributor's) recorded: a sale"
        " document, or a rebate or points claim that sold the unit"
    ),
    "exception.confirmed": "an exception outbound (gift, sample, destruction…) approved",
    "alert.diversion": "a diversion (cross-region selling) alert raised",
    "alert.counterfeit": "a counterfeit alert raised (a code that is void, unknown, not active)",
    "rebate.claimed": "a store clerk's sales rebate claim",
    "rebate.statement": "a store's rebate statement created, approved, paid or rejected",
    "member.registered": "a consumer signed up as a member of the brand",
    "points.claimed": "a member claimed points for a product (the member: the brand's only)",
    "redemption.fulfilled": "a member's gift redemption fulfilled",
}
MAX_REPLAY = 10_000  # deliveries one range replay may queue
#: rotated-out secrets signing at once, each until its own overlap ends (migration 0080)
MAX_PREVIOUS_SECRETS = 3

_SUB = """s.id, s.org_id, s.url, s.description, s.event_kinds, s.active, s.created_at,
          s.updated_at,
          ARRAY(SELECT p.valid_until FROM webhook_previous_secrets p
                 WHERE p.subscription_id = s.id AND p.valid_until > now()
                 ORDER BY p.id DESC) AS previous_secrets_until"""


def _check_kinds(kinds: list[str]) -> list[str]:
    unknown = sorted(set(kinds) - EVENT_KINDS.keys())
    if unknown:
        raise BadRequest(
            f"event_kinds: unknown {', '.join(repr(k) for k in unknown)}",
            code="unknown_event_kind",
            details={"unknown": unknown, "known": sorted(EVENT_KINDS)},
        )
    return sorted(set(kinds))


async def _own(
    conn: Conn, actor: Principal, sub_id: int, lock: Literal["", "UPDATE", "KEY SHARE"] = ""
) -> dict[str, Any]:
    """The caller's subscription (404 if it is not), locked ``FOR <lock>`` if asked: ``UPDATE``
    to change or delete it (``_held``), ``KEY SHARE`` to queue deliveries of it (a delete under
    way first: then 404)."""
    actor.require(PERMISSION)
    row = await (
        await conn.execute(
            f"SELECT {_SUB}, s.owner_org_id, o.path FROM webhook_subscriptions s "
            "JOIN orgs o ON o.id = s.owner_org_id "
            f"WHERE s.id = %s {f'FOR {lock} OF s' if lock else ''}",
            (sub_id,),
        )
    ).fetchone()
    actor.ensure_sees(row["path"] if row else None, "subscription")
    assert row is not None
    return row


def _out(row: dict[str, Any], secret: str | None = None) -> SubscriptionOut:
    return SubscriptionOut(
        id=row["id"],
        org_id=row["org_id"],
        url=row["url"],
        description=row["description"],
        event_kinds=list(row["event_kinds"]),
        active=row["active"],
        previous_secret_until=max(row["previous_secrets_until"], default=None),
        previous_secrets_until=list(row["previous_secrets_until"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        secret=secret,
    )


def _audited(out: SubscriptionOut) -> dict[str, Any]:
    """A subscription as the audit log keeps it: its URL without the query, where a receiver
    may keep its token (a probe: every reader of the audit log, webhooks.manage or not, read
    it there)."""
    kept = msgspec.to_builtins(out)
    if "?" in kept["url"]:
        kept["url"] = kept["url"].split("?", 1)[0] + "?…"
    return kept  # type: ignore[no-any-return]


async def create(
    conn: Conn, actor: Principal, settings: Settings, data: SubscriptionIn
) -> SubscriptionOut:
    """A new subscription and its secret (shown in this answer only)."""
    actor.require(PERMISSION)
    org_id = data.org_id if data.org_id is not None else actor.org_id
    actor.ensure_sees(await org_path(conn, org_id))
    url = await check_subscribed(data.url, allow_private=settings.webhook_allow_private)
    kinds = _check_kinds(data.event_kinds)
    check_text(data.description, "description", "body")
    secret = signing.new_secret()
    row = await (
        await conn.execute(
            f"""INSERT INTO webhook_subscriptions AS s
                    (brand_id, org_id, owner_org_id, url, description, event_kinds,
                     secret_sealed, created_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_SUB}""",
            (
                actor.brand_id,
                org_id,
                actor.org_id,
                url,
                data.description,
                kinds,
                signing.seal(settings, secret),
                actor.person,  # a key's subscription: its maker's
            ),
        )
    ).fetchone()
    assert row is not None
    out = _out(row)
    await audit.record(conn, actor, "create", "webhook_subscription", out.id, after=_audited(out))
    return _out(row, secret)


async def list_subscriptions(
    conn: Conn, actor: Principal, page: int, per_page: int
) -> Page[SubscriptionOut]:
    """The subscriptions of the caller's subtree, newest first."""
    actor.require(PERMISSION)
    return await fetch_page(
        conn,
        columns=_SUB,
        source="webhook_subscriptions s JOIN orgs o ON o.id = s.owner_org_id",
        where=["o.path LIKE %(prefix)s"],
        params={"prefix": actor.org_path + "%"},
        order="s.id DESC",
        page=page,
        per_page=per_page,
        make=_out,
    )


async def _held(conn: Conn, actor: Principal, sub_id: int) -> dict[str, Any]:
    """The caller's subscription (404 at once if it is not), to change or delete: its attempts
    under way waited for (``Lock.WEBHOOK_ATTEMPTS``, which each holds shared while it is sent,
    ``app.webhooks.sender.Fences``), then its row locked ``FOR UPDATE``."""
    await _own(conn, actor, sub_id)
    await xact_lock(conn, Lock.WEBHOOK_ATTEMPTS, sub_id)
    return await _own(conn, actor, sub_id, lock="UPDATE")


async def get(conn: Conn, actor: Principal, sub_id: int) -> SubscriptionOut:
    return _out(await _own(conn, actor, sub_id))


async def update(
    conn: Conn, actor: Principal, settings: Settings, sub_id: int, data: SubscriptionPatch
) -> SubscriptionOut:
    """Change the URL, the kinds, the description or pause (``active: false``): the row
    locked first, after its attempts under way (``_held``), so that once a pause is answered,
    no delivery of it is sent until it is active again."""
    row = await _held(conn, actor, sub_id)
    before = _out(row)
    changes = changes_of(data)
    if "url" in changes:
        changes["url"] = await check_subscribed(
            changes["url"], allow_private=settings.webhook_allow_private
        )
    if "event_kinds" in changes:
        changes["event_kinds"] = _check_kinds(changes["event_kinds"])
    if "description" in changes:
        check_text(changes["description"], "description", "body")
    # compared in their stored forms (the URL as checked, the kinds sorted once each)
    changes = changed(before, changes)
    if not changes:
        return before
    await update_row(conn, "webhook_subscriptions", sub_id, changes)
    after = await get(conn, actor, sub_id)
    await audit.record(
        conn, actor, "update", "webhook_subscription", sub_id,
        before=_audited(before), after=_audited(after),
        org_id=row["owner_org_id"],  # under its owner's, whoever above acts (probe T)
    )  # fmt: skip
    return after


async def delete(conn: Conn, actor: Principal, sub_id: int) -> None:
    """Remove a subscription with its deliveries and their log: its row locked first (after
    its attempts under way, ``_held``), then its deliveries, by the
    cascade — the order the sender's ``record`` and a replay lock them in too."""
    row = await _held(conn, actor, sub_id)
    await conn.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (sub_id,))
    await audit.record(
        conn, actor, "delete", "webhook_subscription", sub_id, before=_audited(_out(row)),
        org_id=row["owner_org_id"],
    )  # fmt: skip


async def rotate(
    conn: Conn, actor: Principal, settings: Settings, sub_id: int, data: RotateIn
) -> SubscriptionOut:
    """A new secret; the current one keeps signing beside it for the overlap (0: at once no
    more), and so does every secret rotated out before, until its own overlap ends (a probe: a
    second rotation within the first's overlap dropped the original secret before the time the
    first answer promised). At most ``MAX_PREVIOUS_SECRETS`` sign beside the current one: one
    more is 409 ``too_many_secrets`` (a rotation without overlap is always possible). The new
    secret is in this answer only."""
    sub = await _own(conn, actor, sub_id, lock="UPDATE")
    overlap = (
        data.overlap_seconds
        if data.overlap_seconds is not None
        else settings.webhook_rotation_overlap_seconds
    )
    # read after the lock (the answer of ``_own`` may predate a rotation it waited for)
    signing_until = [
        r["valid_until"]
        for r in await (
            await conn.execute(
                """SELECT valid_until FROM webhook_previous_secrets
                    WHERE subscription_id = %s AND valid_until > now()""",
                (sub_id,),
            )
        ).fetchall()
    ]
    if overlap > 0 and len(signing_until) >= MAX_PREVIOUS_SECRETS:
        first_free = min(signing_until)
        raise Conflict(
            f"{len(signing_until)} earlier secrets still sign, the most kept; rotate with "
            f"overlap_seconds 0, or after {first_free.isoformat()}",
            code="too_many_secrets",
            details={"free_at": first_free.isoformat()},
        )
    await conn.execute(
        "DELETE FROM webhook_previous_secrets WHERE subscription_id = %s AND valid_until <= now()",
        (sub_id,),
    )
    if overlap > 0:
        await conn.execute(
            """INSERT INTO webhook_previous_secrets (subscription_id, sealed, valid_until)
               SELECT id, secret_sealed, now() + make_interval(secs => %s)
                 FROM webhook_subscriptions WHERE id = %s""",
            (overlap, sub_id),
        )
    secret = signing.new_secret()
    await conn.execute(
        "UPDATE webhook_subscriptions SET secret_sealed = %s, updated_at = now() WHERE id = %s",
        (signing.seal(settings, secret), sub_id),
    )
    await audit.record(
        conn, actor, "rotate_secret", "webhook_subscription", sub_id,
        after={"overlap_seconds": overlap}, org_id=sub["owner_org_id"],
    )  # fmt: skip
    return _out(await _own(conn, actor, sub_id), secret)


# -- the delivery log -------------------------------------------------------------------------

_DELIVERY = f"""d.id, d.subscription_id, e.msg_id AS webhook_id, e.kind AS event_kind,
               {READABLE_TIME} AS occurred_at, d.state, d.attempts,
               CASE WHEN d.state IN ('pending', 'sending') THEN d.next_attempt_at END
                 AS next_attempt_at,
               d.last_status, d.last_error, d.delivered_at, d.replay_of, d.created_at"""


async def _log(conn: Conn, ids: list[int]) -> dict[int, list[AttemptOut]]:
    rows = await (
        await conn.execute(
            """SELECT delivery_id, at, status_code, latency_ms, error FROM webhook_attempts
                WHERE delivery_id = ANY(%s) ORDER BY delivery_id, id""",
            (ids,),
        )
    ).fetchall()
    out: dict[int, list[AttemptOut]] = {}
    for r in rows:
        out.setdefault(r.pop("delivery_id"), []).append(AttemptOut(**r))
    return out


async def list_deliveries(
    conn: Conn,
    actor: Principal,
    sub_id: int,
    *,
    state: str | None,
    since: datetime | None,
    until: datetime | None,
    page: int,
    per_page: int,
) -> Page[DeliveryOut]:
    """The subscription's deliveries, newest first, each with its attempts (the log)."""
    await _own(conn, actor, sub_id)
    since, until = since and aware(since), until and aware(until)
    check_period(since, until)
    where = ["d.subscription_id = %(sub)s"]
    params: dict[str, Any] = {"sub": sub_id}
    if state is not None:
        where.append("d.state = %(state)s")
        params["state"] = state
    if since is not None:
        where.append("d.created_at >= %(since)s")
        params["since"] = since
    if until is not None:
        where.append("d.created_at < %(until)s")
        params["until"] = until
    found = await fetch_page(
        conn,
        columns=_DELIVERY,
        source="webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id",
        where=where,
        params=params,
        order="d.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: row,
    )
    logs = await _log(conn, [r["id"] for r in found.items])
    items = [DeliveryOut(**r, log=logs.get(r["id"], [])) for r in found.items]
    return Page(items, found.page, found.per_page, found.total)


async def get_delivery(conn: Conn, actor: Principal, delivery_id: int) -> DeliveryOut:
    """One delivery with its attempts; 404 outside the caller's subtree."""
    actor.require(PERMISSION)
    row = await (
        await conn.execute(
            f"""SELECT {_DELIVERY}, o.path FROM webhook_deliveries d
                  JOIN webhook_events e ON e.id = d.event_id
                  JOIN webhook_subscriptions s ON s.id = d.subscription_id
                  JOIN orgs o ON o.id = s.owner_org_id
                 WHERE d.id = %s""",
            (delivery_id,),
        )
    ).fetchone()
    actor.ensure_sees(row.pop("path") if row else None, "delivery")
    assert row is not None
    logs = await _log(conn, [delivery_id])
    return DeliveryOut(**row, log=logs.get(delivery_id, []))


_REPLAY = """
INSERT INTO webhook_deliveries (subscription_id, event_id, replay_of)
SELECT d.subscription_id, d.event_id, d.id FROM webhook_deliveries d
 WHERE {where}
 ORDER BY d.created_at, d.id
 LIMIT %(limit)s
RETURNING id, replay_of
"""


async def replay(conn: Conn, actor: Principal, delivery_id: int) -> ReplayOut:
    """Send the delivery's event again, now (a new delivery, same ``webhook-id``). Its
    subscription is locked first: one being deleted is gone, 404 (a probe: the replay's insert
    met the delete, 409 ``in_use``)."""
    original = await get_delivery(conn, actor, delivery_id)
    sub = await _own(conn, actor, original.subscription_id, lock="KEY SHARE")
    rows = await (
        await conn.execute(_REPLAY.format(where="d.id = %(id)s"), {"id": delivery_id, "limit": 1})
    ).fetchall()
    ids = [r["id"] for r in rows]
    await audit.record(
        conn, actor, "replay", "webhook_delivery", delivery_id,
        after={"subscription_id": original.subscription_id, "deliveries": ids},
        org_id=sub["owner_org_id"],  # under its owner's, as an update (a probe)
    )  # fmt: skip
    return ReplayOut(replayed=len(ids), delivery_ids=ids)


async def replay_range(conn: Conn, actor: Principal, sub_id: int, data: ReplayRangeIn) -> ReplayOut:
    """Send again every delivery of the subscription created in [from, to) (in ``state`` if
    given; replays themselves are not replayed again), at most ``MAX_REPLAY``: past that, those
    made before the first one left out, whose time is ``next_from`` (ask again from there).
    The subscription is locked first: one being deleted is gone, 404 (a probe: 409 ``in_use``)."""
    sub = await _own(conn, actor, sub_id, lock="KEY SHARE")
    start, end = aware(data.from_), aware(data.to)
    if end <= start:
        raise BadRequest("to must be after from", code="bad_range")
    if end - start > timedelta(days=90):
        raise BadRequest("a replay covers at most 90 days", code="bad_range")
    where = "d.subscription_id = %(sub)s AND d.replay_of IS NULL AND d.created_at < %(end)s AND "
    where += (
        "(d.created_at, d.id) > (%(start)s, %(after)s)"
        if data.after_id is not None
        else "d.created_at >= %(start)s"
    )
    if data.state is not None:
        where += " AND d.state = %(state)s"
    params = {
        "sub": sub_id,
        "start": start,
        "end": end,
        "after": data.after_id,
        "state": data.state,
        "limit": MAX_REPLAY,
    }
    # past MAX_REPLAY, the range ends where the first delivery left out was made: the answer
    # says from where to go on (probe M: the rest was left out without a word); more than that
    # made at ``from`` itself go 10,000 at a time, the answer saying after which one (a probe:
    # the same first ones were replayed on every call, the rest never)
    beyond = await (
        await conn.execute(
            f"SELECT d.created_at FROM webhook_deliveries d WHERE {where} "
            "ORDER BY d.created_at, d.id OFFSET %(limit)s LIMIT 1",
            params,
        )
    ).fetchone()
    next_from = beyond["created_at"] if beyond else None
    if next_from is not None and next_from > start:
        params["end"] = next_from
    rows = await (await conn.execute(_REPLAY.format(where=where), params)).fetchall()
    ids = [r["id"] for r in rows]
    # all made at ``from`` then: the cursor is the last of them by id
    after = max(r["replay_of"] for r in rows) if rows and next_from == start else None
    await audit.record(
        conn, actor, "replay", "webhook_subscription", sub_id,
        after={"from": start, "to": params["end"], "state": data.state, "deliveries": len(ids)},
        org_id=sub["owner_org_id"],  # under its owner's, as an update (a probe)
    )  # fmt: skip
    return ReplayOut(replayed=len(ids), delivery_ids=ids, next_from=next_from, next_after_id=after)
