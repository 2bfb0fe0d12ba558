"""Sending the outbox: claim rows, render them, hand them to the gateway, record the outcome.

Each row is sent by one sender at a time and its outcome recorded once:

1. **Claim** (one short transaction): ``pending`` rows that are due move to ``sending``,
   ``attempts + 1``, ``claimed_at`` now — ``FOR UPDATE SKIP LOCKED``, so concurrent senders (the
   ``send_sms`` jobs of every worker thread, every worker's sweeper, a benchmark) take disjoint
   rows and never wait for each other. A claim is one wave of the gateway's at most:
   ``SMS_CONCURRENCY`` × ``SMS_GATEWAY_BATCH`` rows (``BATCH`` at most), all its requests sent at
   once, so its outcome is recorded within one gateway time-out, and one more per level of a
   refused batch's split (``Settings.sms_claim_seconds``, which the lease must outlast): a live
   sender's rows are never taken for a dead one's (a probe: claims of 500 rows took many
   time-outs, past the lease, and two live workers took each other's rows until every SMS had
   been sent 7-8 times and failed, out of attempts). A marketing row whose phone has opted out
   of the brand's marketing since it was queued is failed instead, as ``outbox.drop_marketing``
   fails the rows still pending at the opt-out: that one cannot see a row in flight, which a
   retry (3) or a recovery (4) puts back to ``pending`` (a probe: a campaign message ``sending``
   when its member opted out was answered 5xx, retried, and delivered to the phone that said
   stop). So is a marketing row (a reminder, a campaign's) of a brand turned off
   (``POST /orgs/{id}/deactivate``), with ``last_error`` "the brand is deactivated": nothing is
   advertised in the name of a brand whose members are refused (a probe); one-time codes,
   redemption codes and notices still go. And so is a marketing row of a member no longer
   active (``MEMBER_FROZEN``: frozen since it was queued — a probe: a reminder "your points are
   enough for a gift" queued, the member frozen, and still sent to someone who may not
   redeem); an erased member's row is failed as before, as opted out (the erasure opts the
   member out and gives the row the member's tombstone phone).
2. **Send**, outside any transaction: render each row — a campaign's with the body the
   campaign was accepted with, not its template's as edited since — (a row that cannot be
   rendered is failed at once), pass them to the gateway in batches, ``SMS_CONCURRENCY``
   requests in flight.
3. **Record** (one transaction): ``accepted`` → ``sent`` with the provider's message id;
   ``rejected`` → ``failed``; ``retry`` → back to ``pending`` with ``next_attempt_at`` after an
   exponential back-off (``SMS_BACKOFF_SECONDS`` doubled per attempt, ±20 % jitter, at most
   ``SMS_BACKOFF_MAX_SECONDS``), or ``failed`` once ``SMS_MAX_ATTEMPTS`` are spent. Each update
   is fenced on ``state = 'sending' AND attempts = <the claim's>``: a sender that lost its claim
   (see 4) records nothing. Failed rows are copied to ``dead_letters`` (queue ``sms_outbox``)
   in the same transaction, without an erased phone's keyed hash (``_COPY``); secrets (the
   code) are wiped from rows that are done.
4. **Recover** (the sweeper): a row ``sending`` for longer than ``SMS_LEASE_SECONDS`` was claimed
   by a sender that died (kill -9, OOM, power) somewhere between 1 and 3 — it may or may not
   have reached the gateway. With ``SMS_RESEND_UNCONFIRMED`` (the default) it goes back to
   ``pending`` and is sent again with the same idempotency key: at least once to the gateway,
   exactly once to the phone when the gateway deduplicates on the key (ours does; most
   providers take a client message id for this). Without it the row is failed and
   dead-lettered as "outcome unknown": at most once, a message may be lost but never doubled.

``sweep`` is what every worker runs every ``SMS_SWEEP_SECONDS``: recover, then drain every due
row — rows whose job was never queued (Redis down) or never run, and rows due for a retry.
``drain`` claims again as soon as a claim is recorded, for up to half a lease (so that the next
sweep recovers again, as the webhook sender's sweep does) and while a claim still ends within the
``send_sms`` job's time limit (the lease less 5 s); what is left is the next sweep's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from app.config import Settings
from app.db import Conn
from app.deadletters import SMS_OUTBOX, reason_of
from app.sms.gateway import Gateway, OutMessage, Result, template_ids
from app.sms.outbox import OPTED_OUT
from app.sms.templates import (
    MARKETING,
    SECRET_VARIABLES,
    RenderError,
    body_of,
    language,
    mask_secrets,
    render,
)
from app.textguard import storable

QUEUE = SMS_OUTBOX  # the dead-letter queue of failed rows
BRAND_OFF = "the brand is deactivated"  # the error of a marketing row failed for its brand
MEMBER_FROZEN = "member frozen"  # the error of a marketing row failed for its member's status
BATCH = 500  # rows per claim at most (fewer: one wave of the gateway's, ``claim_size``)


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    phone: str
    template: str
    # the row's variables as JSON text, decoded per row by ``message_of``: a value PostgreSQL
    # holds but Python cannot load (nested 3,000 deep, a 5,000-digit integer) failed the fetch
    # of every claim, so no SMS went out again (as a webhook probe found for its outbox)
    variables: str
    purpose: str
    attempts: int
    idem_key: str
    brand_name: str
    brand_body: str | None
    provider_template_id: str | None


class Stats(msgspec.Struct, kw_only=True):
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    recovered: int = 0

    def add(self, other: Stats) -> None:
        for field in msgspec.structs.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


# Wipe secrets from a row that is done (sent or failed).
_WIPE = "o.variables - %(secrets)s::text[]"

_SENT = f"""
UPDATE sms_outbox o
   SET state = 'sent', provider = %(provider)s, provider_message_id = r.mid,
       sent_at = clock_timestamp(), last_error = NULL, variables = {_WIPE}
  FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(mids)s::text[]) AS r(id, attempts, mid)
 WHERE o.id = r.id AND o.state = 'sending' AND o.attempts = r.attempts
"""

# Delivery reports that came before their message was recorded sent (held by
# ``service.delivery_reports``), applied to the rows sent since; run after every record of sent
# messages, every report call and every sweep, so that none is left whichever commits first.
_APPLY_HELD = """
WITH applied AS (
  DELETE FROM sms_early_reports e USING sms_outbox o
   WHERE o.provider = e.provider AND o.provider_message_id = e.message_id AND o.state = 'sent'
  RETURNING e.provider, e.message_id, e.status, e.error, e.at
)
UPDATE sms_outbox o SET state = a.status, status_at = a.at, last_error = a.error
  FROM applied a
 WHERE o.provider = a.provider AND o.provider_message_id = a.message_id AND o.state = 'sent'"""


async def apply_held_reports(conn: Conn) -> int:
    """Apply the held delivery reports whose message is now recorded sent; how many."""
    return (await conn.execute(_APPLY_HELD)).rowcount


# A failed row's copy for the operators: the row as it was, without the keyed hash of the phone
# an erasure keeps for the throttles (``app.retention`` clears it from the row once their
# windows are over; a probe found it in the copy for ever). A key of the row's, null.
_COPY = """row_to_json(json_populate_record(moved, '{"phone_hash": null}'))::text"""

_RETRY = f"""
WITH r AS (
  SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(errors)s::text[])
           AS r(id, attempts, error)
), moved AS (
  UPDATE sms_outbox o
     SET state = CASE WHEN o.attempts >= %(max)s THEN 'failed' ELSE 'pending' END,
         last_error = r.error,
         -- the jitter within the cap (a probe: applied after it, up to 20%% over)
         next_attempt_at = clock_timestamp() + make_interval(secs =>
             least(%(cap)s::float8,
                   %(base)s::float8 * 2 ^ (o.attempts - 1) * (0.8 + random() * 0.4))),
         variables = CASE WHEN o.attempts >= %(max)s THEN {_WIPE} ELSE o.variables END
    FROM r
   WHERE o.id = r.id AND o.state = 'sending' AND o.attempts = r.attempts
  RETURNING o.*
)
INSERT INTO dead_letters (queue, payload, reason)
SELECT %(queue)s, convert_to({_COPY}, 'UTF8'),
       'out of attempts: ' || coalesce(moved.last_error, '')
  FROM moved WHERE moved.state = 'failed'
"""

_FAILED = f"""
WITH r AS (
  SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(errors)s::text[])
           AS r(id, attempts, error)
), moved AS (
  UPDATE sms_outbox o SET state = 'failed', last_error = r.error, variables = {_WIPE}
    FROM r
   WHERE o.id = r.id AND o.state = 'sending' AND o.attempts = r.attempts
  RETURNING o.*
)
INSERT INTO dead_letters (queue, payload, reason)
SELECT %(queue)s, convert_to({_COPY}, 'UTF8'), moved.last_error FROM moved
"""

_RECOVER = f"""
WITH moved AS (
  UPDATE sms_outbox o
     SET state = CASE WHEN %(resend)s AND o.attempts < %(max)s THEN 'pending' ELSE 'failed' END,
         next_attempt_at = clock_timestamp(),
         last_error = 'outcome unknown: the sender stopped after claiming the row',
         variables = CASE WHEN %(resend)s AND o.attempts < %(max)s THEN o.variables
                          ELSE o.variables - %(secrets)s::text[] END
   WHERE o.state = 'sending'
     AND o.claimed_at < clock_timestamp() - make_interval(secs => %(lease)s)
  RETURNING o.*
), buried AS (
  INSERT INTO dead_letters (queue, payload, reason)
  SELECT %(queue)s, convert_to({_COPY}, 'UTF8'),
         CASE WHEN %(resend)s THEN 'out of attempts: ' ELSE 'not re-sent (at most once): ' END
           || moved.last_error
    FROM moved WHERE moved.state = 'failed'
)
SELECT count(*) AS n FROM moved
"""


async def claim(conn: Conn, limit: int = BATCH, ids: Sequence[int] | None = None) -> list[Claimed]:
    """Claim up to ``limit`` due pending rows (only those of ``ids`` when given); marketing rows
    of a brand turned off, to a phone opted out of the brand's marketing, or of a member not
    active (frozen), are failed, not claimed (step 1)."""
    return (await _claim(conn, limit, ids))[0]


async def _claim(conn: Conn, limit: int, ids: Sequence[int] | None) -> tuple[list[Claimed], int]:
    """The claimed rows, and how many due rows were taken (claimed, or failed as opted out)."""
    only = "AND id = ANY(%(ids)s::bigint[])" if ids is not None else ""
    params = {
        "limit": limit,
        "ids": list(ids or []),
        "marketing": sorted(MARKETING),
        "opted_out": OPTED_OUT,
        "brand_off": BRAND_OFF,
        "member_frozen": MEMBER_FROZEN,
    }
    async with conn.transaction():
        cur = await conn.execute(_claim_sql(only), params)
        rows = await cur.fetchall()
    claimed = [msgspec.convert(row, Claimed) for row in rows if not row["dropped"]]
    return claimed, len(rows)


def _claim_sql(only: str) -> str:
    # The brand, opt-out and member checks read four primary-key/unique lookups per marketing
    # row. The member's status is checked after the opt-out: an erased member is opted out
    # (and its rows carry its tombstone phone), failed as before.
    return f"""
WITH due AS (
  SELECT id FROM sms_outbox
   WHERE state = 'pending' AND next_attempt_at <= clock_timestamp() {only}
   ORDER BY next_attempt_at LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
), checked AS (
  SELECT o.id,
         CASE WHEN o.purpose <> ALL(%(marketing)s::text[]) THEN NULL
              WHEN EXISTS (SELECT 1 FROM orgs x WHERE x.id = o.brand_id AND x.status <> 'active')
                THEN %(brand_off)s
              WHEN EXISTS (SELECT 1 FROM sms_opt_outs x
                            WHERE x.brand_id = o.brand_id AND x.phone = o.phone)
                OR EXISTS (SELECT 1 FROM members x
                            WHERE x.brand_id = o.brand_id AND x.phone = o.phone
                              AND x.marketing_opt_out)
                THEN %(opted_out)s
              WHEN EXISTS (SELECT 1 FROM members x
                            WHERE x.id = o.member_id AND x.status <> 'active')
                THEN %(member_frozen)s END AS why
    FROM due JOIN sms_outbox o ON o.id = due.id
), claimed AS (
  UPDATE sms_outbox o
     SET state = CASE WHEN k.why IS NOT NULL THEN 'failed' ELSE 'sending' END,
         attempts = o.attempts + CASE WHEN k.why IS NOT NULL THEN 0 ELSE 1 END,
         claimed_at = CASE WHEN k.why IS NOT NULL THEN o.claimed_at ELSE clock_timestamp() END,
         last_error = coalesce(k.why, o.last_error)
    FROM checked k WHERE o.id = k.id
  RETURNING o.id, o.brand_id, o.phone, o.template, o.variables, o.purpose, o.attempts,
            o.idem_key::text AS idem_key, k.why IS NOT NULL AS dropped, o.campaign_id
)
SELECT c.id, c.brand_id, c.phone, c.template, c.variables::text AS variables, c.purpose,
       c.attempts, c.idem_key,
       c.dropped, b.name AS brand_name,
       -- a campaign's message as the campaign was accepted (migration 0080), whatever its
       -- template says now; others with the brand's template of that name
       CASE WHEN m.id IS NULL THEN t.body ELSE m.body END AS brand_body,
       CASE WHEN m.id IS NULL THEN t.provider_template_id ELSE m.provider_template_id END
         AS provider_template_id
  FROM claimed c
  JOIN orgs b ON b.id = c.brand_id
  LEFT JOIN sms_campaigns m ON m.id = c.campaign_id
  LEFT JOIN sms_templates t ON t.brand_id = c.brand_id AND t.name = c.template
 ORDER BY c.id
"""


_VARIABLES = msgspec.json.Decoder(dict[str, str])


def message_of(row: Claimed, settings: Settings, ids: dict[str, str]) -> OutMessage:
    """The gateway message of a claimed row (``RenderError`` when it cannot be made)."""
    try:
        variables = _VARIABLES.decode(row.variables)
    except msgspec.ValidationError as exc:
        raise RenderError(f"every variable must be text ({exc})") from None
    lang = language(variables)
    body = body_of(row.template, variables, row.brand_body)
    sign = settings.sms_signature or f"【{row.brand_name}】"
    text = render(body, variables, signature=sign, purpose=row.purpose, lang=lang)
    params = {k: v for k, v in variables.items() if k != "lang"}
    return OutMessage(
        key=row.idem_key,
        phone=row.phone,
        sign=sign,
        template_id=ids.get(row.template) or row.provider_template_id or row.template,
        params=params,
        text=text,
        masked_text=mask_secrets(text, variables),
    )


async def send_rows(conn: Conn, gateway: Gateway, settings: Settings, rows: list[Claimed]) -> Stats:
    """Send claimed rows and record every outcome (steps 2 and 3)."""
    ids = template_ids(settings)
    outcomes: list[tuple[Claimed, Result]] = []
    ready: list[tuple[Claimed, OutMessage]] = []
    for row in rows:
        try:
            ready.append((row, message_of(row, settings, ids)))
        except (RenderError, ValueError, TypeError, KeyError) as exc:
            outcomes.append((row, Result("rejected", error=reason_of(exc))))
    if ready:
        results = await gateway.send([message for _, message in ready])
        outcomes.extend((row, result) for (row, _), result in zip(ready, results, strict=True))
    return await record(conn, gateway.name, settings, outcomes)


async def record(
    conn: Conn, provider: str, settings: Settings, outcomes: list[tuple[Claimed, Result]]
) -> Stats:
    """Write the outcomes of one send in one transaction (step 3)."""
    sent = [(r, x) for r, x in outcomes if x.status == "accepted"]
    retry = [(r, x) for r, x in outcomes if x.status == "retry"]
    failed = [(r, x) for r, x in outcomes if x.status == "rejected"]
    secrets = list(SECRET_VARIABLES)
    async with conn.transaction():
        if sent:
            await conn.execute(
                _SENT,
                {
                    "provider": provider,
                    "ids": [r.id for r, _ in sent],
                    "attempts": [r.attempts for r, _ in sent],
                    "mids": [storable(x.message_id) for _, x in sent],
                    "secrets": secrets,
                },
            )
            await apply_held_reports(conn)
        if retry:
            await conn.execute(
                _RETRY,
                {
                    "ids": [r.id for r, _ in retry],
                    "attempts": [r.attempts for r, _ in retry],
                    "errors": [storable(x.error or "retry") for _, x in retry],
                    "max": settings.sms_max_attempts,
                    "base": settings.sms_backoff_seconds,
                    "cap": settings.sms_backoff_max_seconds,
                    "secrets": secrets,
                    "queue": QUEUE,
                },
            )
        if failed:
            await conn.execute(
                _FAILED,
                {
                    "ids": [r.id for r, _ in failed],
                    "attempts": [r.attempts for r, _ in failed],
                    "errors": [storable(x.error or "rejected") for _, x in failed],
                    "secrets": secrets,
                    "queue": QUEUE,
                },
            )
    return Stats(claimed=len(outcomes), sent=len(sent), retried=len(retry), failed=len(failed))


def claim_size(settings: Settings, limit: int = BATCH) -> int:
    """Rows per claim: one wave of the gateway's — ``SMS_CONCURRENCY`` requests of
    ``SMS_GATEWAY_BATCH`` messages, sent at once — and ``limit`` at most (step 1)."""
    return max(1, min(limit, settings.sms_concurrency * settings.sms_gateway_batch))


async def drain(
    conn: Conn,
    gateway: Gateway,
    settings: Settings,
    *,
    ids: Sequence[int] | None = None,
    limit: int = BATCH,
) -> Stats:
    """Claim and send due rows (only ``ids`` when given), a claim of ``claim_size`` rows at a
    time, until none is left or half a lease has passed (the next sweep sends the rest, after
    recovering). ``conn`` must be in autocommit mode (each claim and each record is a
    transaction of its own)."""
    size = claim_size(settings, limit)
    # no new claim after half a lease, nor once a claim's longest could outlast the send_sms
    # job's time limit (the lease less 5 s, workers/sms.py): its rows would wait for a recovery
    lease = settings.sms_lease_seconds
    until = time.monotonic() + min(lease / 2, max(0.0, lease - 5 - settings.sms_claim_seconds))
    total = Stats()
    while True:
        rows, taken = await _claim(conn, size, ids)
        if rows:
            total.add(await send_rows(conn, gateway, settings, rows))
        if taken < size:  # a batch of opted-out rows only is no sign that none is left
            return total
        if time.monotonic() >= until:
            return total


async def recover(conn: Conn, settings: Settings) -> int:
    """Rows whose sender died mid-send: back to pending, or failed (step 4)."""
    cur = await conn.execute(
        _RECOVER,
        {
            "resend": settings.sms_resend_unconfirmed,
            "max": settings.sms_max_attempts,
            "lease": settings.sms_lease_seconds,
            "secrets": list(SECRET_VARIABLES),
            "queue": QUEUE,
        },
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def sweep(conn: Conn, gateway: Gateway, settings: Settings) -> Stats:
    """What the workers run periodically: recover dead senders' rows, apply the delivery
    reports held for rows sent since, then drain."""
    recovered = await recover(conn, settings)
    await apply_held_reports(conn)
    stats = await drain(conn, gateway, settings)
    stats.recovered = recovered
    return stats
