"""Sending webhook deliveries: claim, sign, post, record — run by every worker's sweeper.

Where deliveries come from: the outbox is written by database triggers (migration 0028), in the
transaction of the change itself — simpler and as correct as tailing the event and alert tables
with a cursor (ids of concurrent transactions commit out of order, so a cursor must track gaps)
and without touching every domain's code: a committed change has its deliveries, a rolled-back
one has none.

Each delivery is sent by one sender at a time and its outcome recorded once:

1. **Claim** (one short transaction): due ``pending`` deliveries of active subscriptions move to
   ``sending``, ``attempts + 1``, ``claimed_at`` now, ``FOR UPDATE SKIP LOCKED`` — concurrent
   senders (every worker process runs a sweeper) take disjoint rows.
2. **Send**, outside the claim's and the record's transactions, up to ``WEBHOOK_CONCURRENCY``
   requests in flight, each
   slot claiming the next delivery as soon as its attempt ends (no round waits for its slowest
   attempt), and one brand's deliveries in about half of the slots at most (probe K: one tenant's
   endpoints that never answer held every other tenant's deliveries back, 50 s in a test with
   3 s time-outs), and as many of its names' look-ups running at most (a probe: look-ups that
   never end, each holding a thread of the loop's default executor after its attempt had timed
   out, took every thread; ``app.webhooks.urls.check_resolved``): the body is
   ``{"type", "timestamp", "data"}`` (the same bytes at every attempt; a subscription below
   the brand is never sent a member's id: ``_CLAIM``), signed as
   ``app.webhooks.signing`` says with the current secret and every rotated-out one still in
   its overlap (newest first). Each attempt has ``WEBHOOK_TIMEOUT_SECONDS`` in all (connect,
   send, answer); redirects are not followed; the answer's body is not read.
   **The fence** (``send``): each attempt holds its subscription's advisory lock
   (``Lock.WEBHOOK_ATTEMPTS``, shared, a session lock on the sweep's fence connection,
   ``Fences``: no transaction, so no open transaction holds back the feeds' horizon,
   ``app.db.HORIZON_CTE``) from a look just before the attempt to its end. The look finds the
   subscription still there, able to receive (``webhook_may_receive``) and at the URL claimed,
   and the delivery still this claim's, else the delivery is *withheld*: not sent, and (step 3)
   back to ``pending`` with its attempt given back, due again after ``WEBHOOK_SWEEP_SECONDS`` —
   a paused subscription's waits until it is active again, a deleted one's is gone, a moved
   one's goes to the new URL. A ``DELETE`` and a ``PATCH`` take the lock exclusively and so
   wait for the attempts under way (at most ``WEBHOOK_TIMEOUT_SECONDS`` each); while one
   waits, no attempt of the subscription starts (withheld): once either has answered, no
   delivery of it is sent (a probe: a delivery claimed before a delete or a pause still went
   out after its answer, and a paused one was recorded ``delivered``). The lock is only ever
   tried (never waited for) by a sender, and a fence connection idle for
   ``WEBHOOK_LEASE_SECONDS`` is ended by PostgreSQL (a sender stuck mid-attempt holds no
   change back for longer). Deactivating an organisation takes no lock of its subscriptions: an
   attempt under way then still ends, the next ones are withheld.
3. **Record** (one transaction): a 2xx answer → ``delivered``; anything else (a status, a
   time-out, a refused connection) → back to ``pending`` after an exponential back-off
   (``WEBHOOK_BACKOFF_SECONDS`` doubled per attempt, ±20 % jitter, at most
   ``WEBHOOK_BACKOFF_MAX_SECONDS``), or ``dead`` (the dead-letter state) once
   ``WEBHOOK_MAX_ATTEMPTS`` are spent. A delivery that cannot be made at all — a bad row (its
   secret cannot be unsealed, its data cannot be decoded or encoded, its time cannot be read) or
   an endpoint that resolves to a non-public address — is ``dead`` at once; the sender goes on
   with the others.
   Every attempt is a row of ``webhook_attempts`` (time, status code, latency, error): the
   delivery log. A dead delivery is also set aside in ``dead_letters`` (queue
   ``webhook_deliveries``: its ids, kind, URL and attempts; ``GET /health`` counts them),
   replayable by the API.
   Updates are fenced on ``state = 'sending' AND attempts = <the claim's>``. The round's
   subscriptions are locked first (``FOR KEY SHARE``, in id order), then its deliveries (in id
   order), as a ``DELETE`` of a subscription locks its row before its deliveries (a probe: the
   record locked them in the order the attempts ended, the delete's cascade in its scan's —
   a deadlock: the record failed, and its other deliveries, delivered, were sent again after
   the lease; or the delete answered 409 ``retry``).
4. **Recover**: a delivery ``sending`` for longer than ``WEBHOOK_LEASE_SECONDS`` was claimed by
   a sender that died; it goes back to ``pending``. Delivery is therefore at least once; the
   ``webhook-id`` header is the receiver's key to process each event once.

Nothing here logs a secret, a signature or a body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from app.config import Settings
from app.db import Conn, pool_conninfo
from app.deadletters import WEBHOOK_DELIVERIES, reason_of
from app.locks import Lock, release_shared, try_acquire_shared
from app.webhooks import signing
from app.webhooks.urls import UrlRefused, check_resolved

log = logging.getLogger("tracecode.webhooks")

USER_AGENT = "Tracecode-Webhooks/1"


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    attempts: int
    subscription_id: int
    brand_id: int
    msg_id: str
    kind: str
    data: str  # the event's data as JSON text, decoded per delivery (``request_of``)
    occurred_at: Any
    url: str
    secret_sealed: bytes
    previous_sealed: list[bytes]  # rotated-out secrets still in their overlap, newest first


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    row: Claimed
    result: str  # delivered | retry | dead | withheld (not sent: ``send``)
    status: int | None = None
    latency_ms: int = 0
    error: str | None = None


class Stats(msgspec.Struct, kw_only=True):
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    recovered: int = 0
    withheld: int = 0


# An event's time as Python can hold it, else NULL (a probe: an event at 'infinity', written by
# SQL, failed the fetch of every claim, and no delivery of any tenant went out again): years
# kept clear of datetime's limits in any time zone.
READABLE_TIME = (
    "CASE WHEN e.occurred_at BETWEEN '0002-01-01 UTC' AND '9998-12-31 UTC' THEN e.occurred_at END"
)
_CLAIM = f"""
WITH due AS (
  SELECT d.id FROM webhook_deliveries d
   WHERE d.state = 'pending' AND d.next_attempt_at <= clock_timestamp()
     AND webhook_may_receive(d.subscription_id)  -- migration 0047
     AND d.subscription_id NOT IN (SELECT id FROM webhook_subscriptions
                                    WHERE brand_id = ANY(%(busy)s))  -- their share in flight
   ORDER BY d.next_attempt_at LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE webhook_deliveries d
     SET state = 'sending', attempts = d.attempts + 1, claimed_at = clock_timestamp()
    FROM due WHERE d.id = due.id
  RETURNING d.id, d.attempts, d.subscription_id, d.event_id
)
SELECT c.id, c.attempts, c.subscription_id, s.brand_id, e.msg_id, e.kind,
       -- as text, decoded per delivery by ``request_of``: data PostgreSQL holds but Python
       -- cannot load (a probe: an array nested 3,000 deep, a 5,000-digit integer) failed the
       -- fetch of every claim, as an 'infinity' time did; now that delivery alone is dead.
       -- Members are the brand head office's (migrations 0092, 0093): a claim's or a
       -- fulfilment's event reaches a subscription below the brand without ``member_id``,
       -- also one an older release wrote for the brand and the agent or store together, still
       -- queued at the upgrade or replayed since (a probe)
       -- (an object's only: deleting from a scalar or an array fails the whole claim)
       CASE WHEN e.kind IN ('points.claimed', 'redemption.fulfilled')
                 AND s.org_id <> s.brand_id AND jsonb_typeof(e.data) = 'object'
            THEN e.data - 'member_id'
            ELSE e.data END::text AS data,
       -- ``request_of`` refuses a NULL time: the delivery is dead at once, the others go on
       {READABLE_TIME} AS occurred_at,
       s.url,
       s.secret_sealed,
       ARRAY(SELECT p.sealed FROM webhook_previous_secrets p  -- migration 0080
              WHERE p.subscription_id = s.id AND p.valid_until > clock_timestamp()
              ORDER BY p.id DESC) AS previous_sealed
  FROM claimed c
  JOIN webhook_events e ON e.id = c.event_id
  JOIN webhook_subscriptions s ON s.id = c.subscription_id
 ORDER BY c.id
"""

# The look of an attempt's fence (``send``), in a statement of its own after the lock (a
# snapshot taken after it): whether the delivery may still be sent.
_MAY_SEND = """SELECT webhook_may_receive(%(sub)s)  -- migration 0047
                  AND EXISTS (SELECT 1 FROM webhook_subscriptions
                               WHERE id = %(sub)s AND url = %(url)s)
                  AND EXISTS (SELECT 1 FROM webhook_deliveries
                               WHERE id = %(id)s AND state = 'sending'
                                 AND attempts = %(attempts)s) AS ok"""

# The round's subscriptions, held until its outcomes are written, in one order (id), before any
# of their deliveries, as a DELETE takes its subscription's row before its deliveries.
_HOLD_SUBSCRIPTIONS = """SELECT id FROM webhook_subscriptions WHERE id = ANY(%s)
                          ORDER BY id FOR KEY SHARE"""

# The delivery, held until the outcome is written (a subscription deleted meanwhile takes its
# deliveries with it: it is gone and its outcome is dropped).
_HELD = "SELECT 1 FROM webhook_deliveries WHERE id = %s FOR KEY SHARE"

# Not sent (``send``): back to pending, the claim's attempt given back, no log row; due again
# after a sweep's interval (a change waiting for the subscription's attempts is not spun on; a
# paused subscription's is not claimed until it is active again).
_WITHHELD = """UPDATE webhook_deliveries SET state = 'pending', attempts = attempts - 1,
                      next_attempt_at = clock_timestamp() + make_interval(secs => %s)
                WHERE id = %s AND state = 'sending' AND attempts = %s"""

_ATTEMPT = """INSERT INTO webhook_attempts (delivery_id, status_code, latency_ms, error)
              VALUES (%s, %s, %s, %s)"""

_DELIVERED = """UPDATE webhook_deliveries
                   SET state = 'delivered', delivered_at = clock_timestamp(), last_status = %s,
                       last_error = NULL
                 WHERE id = %s AND state = 'sending' AND attempts = %s"""

_FAILED = """UPDATE webhook_deliveries
                SET state = CASE WHEN %(dead)s OR attempts >= %(max)s THEN 'dead'
                                 ELSE 'pending' END,
                    last_status = %(status)s, last_error = %(error)s,
                    -- the jitter within the cap (a probe: applied after it, up to 20%% over)
                    next_attempt_at = clock_timestamp() + make_interval(secs =>
                        least(%(cap)s::float8,
                              %(base)s::float8 * 2 ^ (attempts - 1) * (0.8 + random() * 0.4)))
              WHERE id = %(id)s AND state = 'sending' AND attempts = %(attempts)s
          RETURNING state"""

# A dead delivery is also set aside in dead_letters (GET /health counts them per queue): what
# it was, never its secret or body.
_BURY = """INSERT INTO dead_letters (queue, payload, reason)
           VALUES (%s, convert_to(%s, 'UTF8'), %s)"""

_RECOVER = """
WITH moved AS (
  UPDATE webhook_deliveries d
     SET state = CASE WHEN d.attempts >= %(max)s THEN 'dead' ELSE 'pending' END,
         next_attempt_at = clock_timestamp(),
         last_error = 'outcome unknown: the sender stopped after claiming the delivery'
   WHERE d.state = 'sending'
     AND d.claimed_at < clock_timestamp() - make_interval(secs => %(lease)s)
  RETURNING d.id, d.state, d.attempts, d.subscription_id, d.event_id, d.last_error, d.claimed_at
), logged AS (
  INSERT INTO webhook_attempts (delivery_id, latency_ms, error)
  -- capped to the integer column (a probe: a delivery claimed more than 24.8 days ago
  -- overflowed it, and as every sweep starts here, no webhook of any tenant went out again)
  SELECT id, least(extract(epoch FROM clock_timestamp() - claimed_at) * 1000, 2147483647)::int,
         last_error
    FROM moved
), buried AS (
  INSERT INTO dead_letters (queue, payload, reason)
  SELECT %(queue)s,
         convert_to(jsonb_build_object('delivery_id', m.id, 'subscription_id', m.subscription_id,
                                       'webhook_id', e.msg_id, 'kind', e.kind,
                                       'attempts', m.attempts)::text, 'UTF8'),
         m.last_error
    FROM moved m JOIN webhook_events e ON e.id = m.event_id
   WHERE m.state = 'dead'
)
SELECT count(*) AS n FROM moved
"""


async def claim(conn: Conn, limit: int, busy: Sequence[int] = ()) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries, none of the ``busy`` brands (step 1)."""
    async with conn.transaction():
        rows = await (await conn.execute(_CLAIM, {"limit": limit, "busy": list(busy)})).fetchall()
    return [msgspec.convert(row, Claimed) for row in rows]


def request_of(row: Claimed, settings: Settings, now: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt (raises on a bad row)."""
    if row.occurred_at is None:  # the claim could not read the event's time (_CLAIM)
        raise ValueError("the event's time cannot be read (infinite or out of range)")
    # json.loads, as psycopg loaded it before (_CLAIM): the same values, so the same body
    data = json.loads(row.data)
    body = msgspec.json.encode({"type": row.kind, "timestamp": row.occurred_at, "data": data})
    secrets_ = [signing.unseal(settings, row.secret_sealed)]
    secrets_ += [signing.unseal(settings, sealed) for sealed in row.previous_sealed]
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": row.msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": signing.signature_header(secrets_, row.msg_id, now, body),
    }
    return body, headers


async def attempt(client: httpx.AsyncClient, settings: Settings, row: Claimed) -> Outcome:
    """One HTTP attempt of a claimed delivery (step 2); never raises."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        body, headers = request_of(row, settings, int(time.time()))
    except Exception as exc:  # a bad row: dead at once, the others go on
        return Outcome(row=row, result="dead", error=f"bad delivery: {reason_of(exc)}"[:500])
    try:
        async with asyncio.timeout(settings.webhook_timeout_seconds):
            addresses = await check_resolved(
                row.url,
                allow_private=settings.webhook_allow_private,
                brand=row.brand_id,
                share=brand_share(settings),  # its look-ups too, stuck ones counted (probe)
            )
            response = await _send(client, row.url, addresses, body, headers)
            await response.aclose()
    except UrlRefused as exc:
        return Outcome(row=row, result="dead", latency_ms=took(), error=exc.message)
    except TimeoutError:
        return Outcome(row=row, result="retry", latency_ms=took(), error="timed out")
    except (httpx.HTTPError, OSError) as exc:
        return Outcome(row=row, result="retry", latency_ms=took(), error=_error(exc))
    except Exception as exc:  # e.g. a stored URL the HTTP client refuses: no retry helps
        return Outcome(
            row=row, result="dead", latency_ms=took(), error=f"bad delivery: {_error(exc)}"
        )
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(row=row, result="delivered", status=status, latency_ms=took())
    return Outcome(
        row=row, result="retry", status=status, latency_ms=took(), error=f"HTTP {status}"
    )


async def _send(
    client: httpx.AsyncClient,
    url: str,
    addresses: list[str] | None,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """The attempt's request, to each checked address in turn until one takes the connection
    (review R2: only the first was tried, so a name with one address down failed every other
    attempt), or, with None, to the URL as it is (the client resolves it). Each address but the
    last may take its share of the time-out to connect (a probe: one that dropped connection
    attempts silently took the whole attempt's, and the next was never tried)."""
    targets: Sequence[str | None] = addresses or [None]
    *others, last = targets
    limits = client.timeout.as_dict()
    share = {**limits, "connect": (limits["connect"] or 0) / (len(others) + 1) or None}
    for address in others:
        request = _request(client, url, address, body, headers)
        request.extensions["timeout"] = share
        try:
            return await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            continue  # that address does not answer: the next one, in the time left
    return await client.send(_request(client, url, last, body, headers), stream=True)


def _request(
    client: httpx.AsyncClient, url: str, address: str | None, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    """The attempt's request; sent to ``address`` when given (one ``check_resolved`` found
    public), with the URL's own host in ``Host`` and in TLS (the name sent and the certificate
    checked), so that what was checked is what is called."""
    target = httpx.URL(url)
    if address is None:
        return client.build_request("POST", target, content=body, headers=headers)
    return client.build_request(
        "POST",
        target.copy_with(host=address),
        content=body,
        headers={**headers, "host": target.netloc.decode("ascii")},
        extensions={"sni_hostname": target.raw_host.decode("ascii")},
    )


def _error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class Fences:
    """The sweep's fence connection (``send``): opened when first needed, in autocommit mode (a
    session lock per attempt in flight, no transaction), closed with the sweep (``close``),
    which releases whatever it holds. Ended by PostgreSQL once idle ``WEBHOOK_LEASE_SECONDS``."""

    def __init__(self, conn: Conn, settings: Settings) -> None:
        password = {"password": conn.info.password} if conn.info.password else {}
        self._conninfo = pool_conninfo(make_conninfo(conn.info.dsn, **password), settings)
        self._settings = settings
        self._conn: Conn | None = None

    async def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                row_factory=dict_row,
                application_name="tracecode-webhooks",
            )
            idle = self._settings.webhook_lease_seconds * 1000
            await self._conn.execute(f"SET idle_session_timeout = {idle}")
        return self._conn

    async def hold(self, row: Claimed) -> bool:
        """Take the delivery's subscription's lock (shared) and look whether the delivery may
        still be sent; False (nothing held) when it may not, or a change waits."""
        conn = await self._connection()
        fence = try_acquire_shared(Lock.WEBHOOK_ATTEMPTS, row.subscription_id)
        held = await (await conn.execute(*fence)).fetchone()
        if not (held and held["ok"]):
            return False
        args = {"sub": row.subscription_id, "id": row.id, "attempts": row.attempts, "url": row.url}
        try:
            may = await (await conn.execute(_MAY_SEND, args)).fetchone()
        except BaseException:
            await self.let_go(row)
            raise
        if may and may["ok"]:
            return True
        await self.let_go(row)
        return False

    async def let_go(self, row: Claimed) -> None:
        if self._conn is not None and not self._conn.closed:
            await self._conn.execute(*release_shared(Lock.WEBHOOK_ATTEMPTS, row.subscription_id))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def send(
    fences: Fences, client: httpx.AsyncClient, settings: Settings, row: Claimed
) -> Outcome:
    """The attempt of a claimed delivery under its fence (step 2, "The fence"): its
    subscription's lock held shared from a look just before the attempt to its end;
    ``withheld`` (not sent) when the subscription is gone, cannot receive now (paused, its
    organisation deactivated or moved away), was moved to another URL, a change of it waits,
    the delivery is no longer this claim's, or the look fails. Never raises."""
    try:
        if not await fences.hold(row):
            return Outcome(row=row, result="withheld")
    except psycopg.Error as exc:
        log.warning("webhook delivery %d withheld: its fence failed (%s)", row.id, _error(exc))
        return Outcome(row=row, result="withheld")
    try:
        return await attempt(client, settings, row)
    finally:
        try:
            await fences.let_go(row)
        except psycopg.Error as exc:  # the lock goes with the connection
            log.warning("webhook delivery %d: its fence failed (%s)", row.id, _error(exc))
            await fences.close()


async def record(conn: Conn, settings: Settings, outcomes: list[Outcome]) -> Stats:
    """Write the outcomes and the attempts' log in one transaction (step 3): the round's
    subscriptions locked first, in id order, then each delivery in id order (a ``DELETE``
    takes its subscription's row before its deliveries). A delivery gone meanwhile (its
    subscription deleted) is skipped: it failed the whole round's transaction once, and every
    other delivery of the round was sent again after the lease."""
    stats = Stats(claimed=len(outcomes))
    async with conn.transaction():
        subscriptions = sorted({o.row.subscription_id for o in outcomes})
        await conn.execute(_HOLD_SUBSCRIPTIONS, (subscriptions,))
        for o in sorted(outcomes, key=lambda o: o.row.id):
            if await (await conn.execute(_HELD, (o.row.id,))).fetchone() is None:
                continue  # its subscription was deleted while it was sent (probe K)
            if o.result == "withheld":
                await conn.execute(
                    _WITHHELD, (settings.webhook_sweep_seconds, o.row.id, o.row.attempts)
                )
                stats.withheld += 1
                continue
            await conn.execute(_ATTEMPT, (o.row.id, o.status, o.latency_ms, o.error))
            if o.result == "delivered":
                await conn.execute(_DELIVERED, (o.status, o.row.id, o.row.attempts))
                stats.delivered += 1
                continue
            state = await _failed(conn, settings, o)
            if state == "dead":
                await conn.execute(_BURY, (WEBHOOK_DELIVERIES, _summary(o), o.error or "dead"))
                stats.dead += 1
                log.warning("webhook delivery %d dead after %d attempts", o.row.id, o.row.attempts)
            elif state is not None:
                stats.retried += 1
    return stats


async def _failed(conn: Conn, settings: Settings, o: Outcome) -> str | None:
    """A failed attempt's outcome written: the delivery's state now (None: not this claim's)."""
    row = await (
        await conn.execute(
            _FAILED,
            {
                "dead": o.result == "dead",
                "max": settings.webhook_max_attempts,
                "status": o.status,
                "error": o.error,
                "cap": settings.webhook_backoff_max_seconds,
                "base": settings.webhook_backoff_seconds,
                "id": o.row.id,
                "attempts": o.row.attempts,
            },
        )
    ).fetchone()
    return None if row is None else str(row["state"])


def _summary(o: Outcome) -> str:
    """The dead letter's payload: which delivery, of which event, to where."""
    r = o.row
    return msgspec.json.encode(
        {
            "delivery_id": r.id,
            "subscription_id": r.subscription_id,
            "webhook_id": r.msg_id,
            "kind": r.kind,
            "url": r.url,
            "attempts": r.attempts,
        }
    ).decode()


def make_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client of a sender: no redirects, no proxy from the environment. Attempts
    connect to checked addresses (``_request``), so no connection is kept for another: one kept
    for a name at an address shared with other names (a CDN's) would carry their requests under
    its own TLS identity."""
    keep = settings.webhook_concurrency if settings.webhook_allow_private else 0
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(
            max_connections=settings.webhook_concurrency, max_keepalive_connections=keep
        ),
    )


async def recover(conn: Conn, settings: Settings) -> int:
    """Deliveries whose sender died mid-send go back to pending (step 4)."""
    row = await (
        await conn.execute(
            _RECOVER,
            {
                "max": settings.webhook_max_attempts,
                "lease": settings.webhook_lease_seconds,
                "queue": WEBHOOK_DELIVERIES,
            },
        )
    ).fetchone()
    return int(row["n"]) if row else 0


def brand_share(settings: Settings) -> int:
    """One brand's slots at most (``sweep``), and its names' look-ups running at most
    (``attempt``: those whose attempts have timed out still hold a thread)."""
    return max(1, settings.webhook_concurrency // 2)


async def sweep(conn: Conn, client: httpx.AsyncClient, settings: Settings) -> Stats:
    """Recover, then send every due delivery (step 2's slots) for up to half a lease, so that
    the next sweep recovers again (review R2: under steady traffic a sweep never ended, and a
    dead sender's claims were never recovered). A delivery is claimed only when a slot is free
    and sent at once: out for at most one attempt's time-out, well inside the lease (settings:
    lease > time-out), each under its fence (``send``). ``conn`` must be in autocommit mode."""
    total = Stats(recovered=await recover(conn, settings))
    fences = Fences(conn, settings)
    try:
        await _send_due(conn, client, settings, fences, total)
    finally:
        await fences.close()
    return total


async def _send_due(
    conn: Conn, client: httpx.AsyncClient, settings: Settings, fences: Fences, total: Stats
) -> None:
    """``sweep``'s slots: claim, send, record, adding to ``total``, until none is due or half a
    lease has passed."""
    slots = settings.webhook_concurrency
    share = brand_share(settings)
    # a sweep ends (to recover again) within half a lease, its last attempts sent
    until = time.monotonic() + settings.webhook_lease_seconds / 2
    flying: dict[asyncio.Task[Outcome], Claimed] = {}
    while True:
        while len(flying) < slots and time.monotonic() < until:  # fill the free slots
            per_brand = Counter(row.brand_id for row in flying.values())
            busy = [brand for brand, n in per_brand.items() if n >= share]
            most = share - max(per_brand.values(), default=0)  # no brand past its share
            rows = await claim(conn, max(1, min(slots - len(flying), most)), busy)
            for row in rows:
                flying[asyncio.create_task(send(fences, client, settings, row))] = row
            if not rows:
                break
        if not flying:
            return
        # with a slot free, claim again every sweep interval: waiting for an attempt to end
        # left new deliveries behind a hanging endpoint's time-out (a probe: 4 s late, three
        # slots idle)
        free = len(flying) < slots and time.monotonic() < until
        done, _ = await asyncio.wait(
            flying,
            timeout=settings.webhook_sweep_seconds if free else None,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not done:
            continue
        for task in done:
            del flying[task]
        stats = await record(conn, settings, [task.result() for task in done])
        for name in ("claimed", "delivered", "retried", "dead", "withheld"):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
