"""Store clerks' rebate claims by scan + PIN (R1), on the claim mechanism of ``app.claims``.

Clerks. A claim's clerk is looked up with the other claims in flight (``Clerks``): the staff
access token, then the user, their organisation and permissions in one query per round. An
inactive account or organisation is refused (401 ``account_inactive``, as every staff route),
a user without ``sales.claim`` 403 (``Principal.require``), a user of an organisation that is
not a store 403 ``not_a_store``.

Rounds. The claim is verified (void, forged, wrong PIN and lockout answer as ``/v1/verify``),
then credited in a round that is ONE statement (``_CREDIT``: one round trip, one transaction):

1. the round's units are locked (``FOR UPDATE``, in code order) where they can earn a rebate:
   the clerk still active, the unit the clerk's brand's, active or sold by a retail sale (not
   given away or written off), not returned damaged or expired, of a batch not void
   (a void leaves a sold unit sold: a probe's claim right after the void, verified from a
   process's batch cache, was paid; the void's active units are voided under their locks, so
   a round waiting for them reads them void; a sold unit's batch is asked again after its
   lock, in a fresh snapshot, migration 0143: a probe's round waiting for a sold unit was paid
   on a batch voided meanwhile), held by the clerk's store and not in transit,
   the store in the area of the unit's designated agent (``_IN_AREA``, as an inspection judges
   it: the nearest agent at or above the unit's channel organisation), not claimed
   before, with a rule amount above 0 — the amount in force at the clerk's store (SPEC R1:
   "the product's rule for the store's agent"): the rule of the nearest agent on the store's
   path, else the product's default, the very expression of the stock rows' ``rebate``
   (``app.logistics.center.rebate_in_force``); that agent (NULL: none above the store) is the
   claim's ``agent_id``, the agent whose rule applied, as the claims list, settlement lines and
   rankings show it;
2. the claims are written (``ON CONFLICT DO NOTHING``: ``rebate_claims.code_id`` is unique, so a
   code earns one rebate, ever, and so is a clerk's client id), with one ``claiming`` ObjectEvent
   per claim and the claims' rows in ``rebate_tally_queue``, which the workers' periodic roll-up
   folds into the rankings (``app.rebates.ranking``);
3. the units of the claims written that were not yet sold are sold now (L7), as the ``sale``
   movement of ``app.logistics.movements`` sells them (its state change, events, unpacking and
   stock delta; a test holds the two equal), per store and clerk, with the sale's document
   as ``POST /sales`` writes one (``app.logistics.movements.claim_sale_documents``: the store
   sales query lists it, the clerk its handler). A claim the unique keys dropped sells nothing.

A concurrent round of another process claiming the same unit waits for the unit's lock and then
sees it sold: it sells nothing and its claim is dropped by the unique key.

A claim a round did not credit is explained: a replay of the same client id (answered as the
first time), a clerk made inactive meanwhile, a client id used for another code, a code claimed
before, another brand's unit, a void or destroyed unit, a unit given away or written off
(422 ``not_a_sale``) or returned damaged or expired (409 ``not_sellable``, wherever it moved
after), a unit of a batch voided since its
verification (422 ``not_genuine``, reason ``void``, as ``/v1/verify`` answers it), and — the
anti-diversion signal — a unit not delivered to the clerk's store, or on hand at a store outside
its designated agent's area: refused with where it was supposed to be (its designated store, or
its designated agent), and kept in ``rebate_refusals`` with an open ``diversion`` alert for the
brand — once per attempt: the till's retry of it (same clerk, client id and code) is answered
again, neither kept nor counted again. No rule (or 0): 422 ``no_rebate``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NoReturn

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.auth.principal import Principal
from app.auth.service import ORG_STATUS, org_status, password_change_required, session_live
from app.claims import (
    Claimants,
    ClaimIn,
    Claims,
    Pending,
    fetch,
    judge,
    partitions,
    refuse,
    settle,
    void_answer,
)
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import Conflict, Forbidden, Unauthorized, Unprocessable
from app.forensics.status import claim_status
from app.logistics.center import agents_rebate, nearest_agent, rebate_in_force
from app.logistics.movements import NOT_FOR_SALE, claim_sale_documents
from app.rebates.schemas_claims import RebateClaimOut
from app.verify.service import Verifier

# The clerks of the claims in flight: the user, their organisation and permissions.
_CLERKS = f"""
SELECT r.ord, u.username, u.status, u.org_id, o.path, o.kind, {ORG_STATUS} AS org_status,
       u.must_change_password, {session_live("r.sid", "r.iat")} AS session_live,
       coalesce((SELECT array_agg(DISTINCT p)
                   FROM user_roles ur JOIN roles ro ON ro.id = ur.role_id,
                        unnest(ro.permissions) p
                  WHERE ur.user_id = u.id), '{{}}') AS permissions
FROM unnest(%(ord)s::int[], %(id)s::bigint[], %(jti)s::uuid[], %(sid)s::uuid[],
            %(iat)s::bigint[]) AS r(ord, user_id, jti, sid, iat)
JOIN users u ON u.id = r.user_id
JOIN orgs o ON o.id = u.org_id
"""

# The unit's designated agent, as an inspection judges it (``app.inspect.service._UNITS``' ``ag``):
# the nearest agent at or above its channel organisation ``ch`` (goods the factory shipped
# straight to an agent's store or distributor are the agent's), else the channel itself; its
# subtree is the unit's sales area. ``_IN_AREA``: the clerk's store ``here`` is in that area —
# the channel's own subtree tested first, so the common case (goods shipped to the agent) looks
# nothing up and the rest one probe of ``orgs``' primary key (a probe: the channel's subtree
# was the area, so goods a store passed on to a sister store of its agent were refused
# ``wrong_agent``, kept with a diversion alert, while an inspection there found them in channel).
_AGENT = f"coalesce({nearest_agent('ch.path')}, ch.id)"
_IN_AREA = f"(here.path LIKE ch.path || '%%' OR here.path LIKE '%%/' || {_AGENT} || '/%%')"

# A round, ONE statement (one round trip, one transaction): step 1 locks the units that can
# earn their rebate; step 2 writes the claims, their claiming events and their rows in the
# roll-up's queue; step 3 sells the units of the claims written that were not yet sold, as the
# ``sale`` movement of ``app.logistics.movements`` does (one ObjectEvent OBSERVE retail_selling /
# retail_sold per store and clerk, at the store, naming its sale document, whose lines and items
# ``claim_sale_documents`` writes; the units leave their cases, one AggregationEvent DELETE
# unpacking per case; the store's stock delta per product and lot; tests/test_rebate_claims.py
# checks the rows equal those of ``POST /sales``). Event ids come
# from the events' sequence; ``partitions`` keeps the partitions ahead of them. The amount is
# the one in force at the clerk's store, as its stock rows show it (``rebate_in_force``'s two
# parts; a probe: the override was looked up by the unit's channel organisation only, so goods
# shipped straight to a store were paid the default while its stock rows showed its agent's
# rule), and the claim's agent is the agent whose rule that is: the store's nearest agent,
# looked up once per unit in the same LATERAL (a probe: the claim stored the unit's channel
# organisation, so goods shipped straight to a store under AGENT-ZJ named the store as the
# agent, and ``GET /rebates?agent_id=`` of AGENT-ZJ missed the claim its rule paid). Each
# computed once per unit (OFFSET 0: not inlined into both the WHERE and the SELECT list).
_CREDIT = f"""
WITH r AS (
    SELECT * FROM unnest(%(ord)s::int[], %(clerk)s::bigint[], %(brand)s::bigint[],
                         %(store)s::bigint[], %(code)s::bigint[], %(client)s::text[],
                         %(at)s::timestamptz[])
           AS r(ord, clerk_id, brand_id, store_id, code_id, client_id, at)
), u AS MATERIALIZED (
    SELECT r.*, u.product_id, u.lot, u.status, u.parent_sscc, u.line_id, in_force.agent_id,
           in_force.amount, fh.id AS hold_id
    FROM r
    -- the clerk still active and still the store's (a move ends the clerk's sessions: a claim
    -- queued before it was paid to the old store under a clerk of another — a probe)
    JOIN users k ON k.id = r.clerk_id AND k.status = 'active' AND k.org_id = r.store_id
    -- a clerk on hold (``app.forensics.holds``): one probe of the open holds' unique index
    LEFT JOIN fraud_holds fh ON fh.party_kind = 'clerk' AND fh.party_id = r.clerk_id
                            AND fh.state = 'open'
    JOIN unit_state u ON u.code = r.code_id AND u.brand_id = r.brand_id
    JOIN orgs here ON here.id = r.store_id
    LEFT JOIN orgs ch ON ch.id = u.channel_org_id
    CROSS JOIN LATERAL (
        SELECT near.agent_id, {agents_rebate("u.product_id", "near.agent_id")} AS amount
        FROM (SELECT {nearest_agent("here.path")} AS agent_id OFFSET 0) near
        OFFSET 0
    ) in_force
    WHERE u.holder_org_id = r.store_id AND u.transit_to IS NULL
      -- the store open, and every organisation above it (a probe: a claim queued while the
      -- brand closed the store was paid to the closed store)
      AND {org_status("here")} = 'active'
      AND (ch.path IS NULL OR {_IN_AREA})  -- in its agent's area
      -- sold only by a retail sale: not given away or written off (``_given_away``), so a sold
      -- unit returned damaged or expired is out here and an active one on the next line
      AND (u.status = 'active' OR u.disposition = 'retail_sold')
      AND in_force.amount > 0
      AND NOT (u.status = 'active' AND u.disposition IN ('damaged', 'expired'))  -- NOT_FOR_SALE
      AND NOT EXISTS (SELECT 1 FROM rebate_claims c WHERE c.code_id = r.code_id)
      AND NOT EXISTS (SELECT 1 FROM code_batches b  -- no void batch's (its sold units stay sold)
                       WHERE b.batch_no = r.code_id >> 32 AND b.state = 'void')
      AND NOT EXISTS (SELECT 1 FROM rebate_claims_withdrawn w  -- a withdrawn claim's retry
                       WHERE w.clerk_id = r.clerk_id AND w.client_id = r.client_id)
    ORDER BY u.code
    FOR UPDATE OF u
), sales AS MATERIALIZED (
    SELECT store_id, clerk_id, brand_id, nextval('events_id_seq') AS event_id
    FROM u WHERE status = 'active' GROUP BY store_id, clerk_id, brand_id
), c AS (
    INSERT INTO rebate_claims (code_id, brand_id, store_id, clerk_id, agent_id, product_id, amount,
                               client_id, event_id, sale_event_id, claimed_at, hold_id,
                               hold_state)
    SELECT u.code_id, u.brand_id, u.store_id, u.clerk_id, u.agent_id, u.product_id, u.amount,
           u.client_id, nextval('events_id_seq'), s.event_id, u.at, u.hold_id,
           CASE WHEN u.hold_id IS NOT NULL THEN 'held' END
    FROM u LEFT JOIN sales s ON u.status = 'active' AND s.store_id = u.store_id
                            AND s.clerk_id = u.clerk_id AND s.brand_id = u.brand_id
    -- the batch asked again of the unit's row ``u`` returned locked, in a fresh snapshot
    -- (migration 0143): a void leaves a sold unit's row alone, so ``u`` read it before the wait
    WHERE NOT code_batch_void(u.code_id)
    ORDER BY u.code_id
    ON CONFLICT DO NOTHING
    RETURNING id, code_id, brand_id, store_id, clerk_id, agent_id, product_id, amount, client_id,
              event_id, sale_event_id, claimed_at, hold_state
), sold AS MATERIALIZED (  -- only the units whose claim was written (a probe: a claim refused
    -- as client_id_reused by the unique key still sold its unit, with no claim behind the sale)
    SELECT c.code_id, c.store_id, c.clerk_id, c.brand_id, c.product_id, u.lot, u.parent_sscc,
           u.line_id, c.sale_event_id, c.claimed_at AS sold_at
    FROM c JOIN u USING (code_id) WHERE c.sale_event_id IS NOT NULL
), {claim_sale_documents("sold", "store_id", "clerk_id", "sold_at")}, loose AS MATERIALIZED (
    SELECT parent_sscc, store_id, clerk_id, brand_id, min(sold_at) AS at, count(*) AS n,
           nextval('events_id_seq') AS event_id
    FROM sold WHERE parent_sscc IS NOT NULL GROUP BY parent_sscc, store_id, clerk_id, brand_id
), moved AS (
    UPDATE unit_state t
    SET status = 'sold', sold_at = s.sold_at, disposition = 'retail_sold',
        last_event_id = s.sale_event_id, updated_at = s.sold_at, parent_sscc = NULL
    FROM sold s WHERE t.code = s.code_id
), sale_events AS (
    INSERT INTO events (id, event_uuid, brand_id, event_type, action, biz_step, disposition,
                        event_time, tz_offset, biz_location, source_org, parent_kind,
                        parent_code, child_count, recorded_by, details)
    SELECT sale_event_id, gen_random_uuid(), brand_id, 'ObjectEvent', 'OBSERVE',
           'retail_selling', 'retail_sold', min(sold_at), '+00:00', store_id, store_id, NULL,
           NULL, count(*), clerk_id,
           jsonb_build_object('rebate_claim', true, 'document', min(d.doc_no))
    FROM sold JOIN sale_docs d ON d.event_id = sold.sale_event_id
    GROUP BY sale_event_id, brand_id, store_id, clerk_id
    UNION ALL
    SELECT event_id, gen_random_uuid(), brand_id, 'AggregationEvent', 'DELETE', 'unpacking',
           NULL, at, '+00:00', store_id, NULL, 'c', parent_sscc, n, clerk_id, NULL
    FROM loose
), sale_codes AS (
    INSERT INTO event_codes (code, kind, event_id)
    SELECT code_id, 'u', sale_event_id FROM sold
    UNION ALL
    SELECT s.code_id, 'u', l.event_id
    FROM sold s JOIN loose l USING (parent_sscc, store_id, clerk_id, brand_id)
    UNION ALL
    SELECT parent_sscc, 'c', event_id FROM loose
), deltas AS (
    INSERT INTO stock_deltas (org_id, product_id, lot, on_hand, in_transit, event_id)
    SELECT store_id, product_id, lot, -count(*), 0, sale_event_id
    FROM sold GROUP BY store_id, product_id, lot, sale_event_id
), e AS (
    INSERT INTO events (id, event_uuid, brand_id, event_type, action, biz_step, disposition,
                        event_time, tz_offset, child_count, details)
    SELECT event_id, gen_random_uuid(), brand_id, 'ObjectEvent', 'OBSERVE', 'claiming', NULL,
           claimed_at, '+00:00', 1,
           jsonb_build_object('rebate_claim_id', id, 'clerk_id', clerk_id, 'store_id', store_id,
                              'amount', amount, 'product_id', product_id, 'agent_id', agent_id)
    FROM c
), ec AS (
    INSERT INTO event_codes (code, kind, event_id) SELECT code_id, 'u', event_id FROM c
), q AS (
    -- a held claim is ranked when its hold is released (``app.forensics.holds``)
    INSERT INTO rebate_tally_queue (claim_id) SELECT id FROM c WHERE hold_state IS NULL
)
SELECT * FROM c
"""

# Why claims were not credited: the code's claim, the claim made under the same client id, the
# clerk, the unit, where it was supposed to be, and its rule (the amount in force at the store).
_EXPLAIN = f"""
SELECT r.ord, c.id, c.code_id, c.brand_id, c.store_id, c.clerk_id, c.agent_id, c.product_id,
       c.amount, c.client_id, c.event_id, c.sale_event_id, c.claimed_at, c.hold_state,
       coalesce(cc.code_id, w.code_id) AS client_code, w.code_id IS NOT NULL AS client_withdrawn,
       k.status AS clerk_status, k.org_id AS clerk_org, {org_status("here")} AS store_status,
       u.brand_id AS unit_brand, u.status AS unit_status, u.disposition AS unit_disposition,
       u.holder_org_id, u.transit_to,
       u.store_org_id, ag.id AS designated_agent,
       {rebate_in_force("u.product_id", "here.path")} AS rule_amount,
       h.name AS holder_name, h.path AS holder_path, ds.name AS store_name, ag.name AS agent_name,
       here.path AS here_path, b.state = 'void' AS batch_void
FROM unnest(%(ord)s::int[], %(clerk)s::bigint[], %(store)s::bigint[], %(code)s::bigint[],
            %(client)s::text[]) AS r(ord, clerk_id, store_id, code_id, client_id)
LEFT JOIN users k ON k.id = r.clerk_id
LEFT JOIN orgs here ON here.id = r.store_id
LEFT JOIN rebate_claims c ON c.code_id = r.code_id
LEFT JOIN rebate_claims cc ON cc.clerk_id = r.clerk_id AND cc.client_id = r.client_id
LEFT JOIN rebate_claims_withdrawn w ON w.clerk_id = r.clerk_id AND w.client_id = r.client_id
LEFT JOIN unit_state u ON u.code = r.code_id
LEFT JOIN orgs h ON h.id = u.holder_org_id
LEFT JOIN orgs ds ON ds.id = u.store_org_id
LEFT JOIN orgs ch ON ch.id = u.channel_org_id
LEFT JOIN orgs ag ON ag.id = {_AGENT}
LEFT JOIN code_batches b ON b.batch_no = r.code_id >> 32
"""

# The refusals, and an open ``diversion`` alert per unit for the brand counting those kept now:
# a refusal the till sends again (same clerk, client id and code) is the same attempt, neither
# kept again nor counted (migration 0088; a probe: a till's retries counted the diversion thrice).
_REFUSALS = """
WITH f AS (
    INSERT INTO rebate_refusals (brand_id, code_id, serial, clerk_id, client_id, store_id, reason,
                                 expected_store_id, expected_agent_id, holder_org_id)
    SELECT * FROM unnest(%(brand)s::bigint[], %(code)s::bigint[], %(serial)s::text[],
                         %(clerk)s::bigint[], %(client)s::text[], %(store)s::bigint[],
                         %(reason)s::text[], %(expected_store)s::bigint[],
                         %(expected_agent)s::bigint[], %(holder)s::bigint[])
    ON CONFLICT (clerk_id, client_id, code_id) WHERE client_id IS NOT NULL DO NOTHING
    RETURNING *
)
INSERT INTO alerts (brand_id, org_id, kind, severity, code_id, serial, message, details,
                    dedup_key, occurrences)
SELECT DISTINCT ON (code_id) brand_id, brand_id, 'diversion', 'warning', code_id, serial,
       'Rebate claim refused (' || reason || '): ' || serial
           || ' claimed at a store it was not delivered to',
       jsonb_build_object('reason', reason, 'store_id', store_id, 'clerk_id', clerk_id,
                          'holder_org_id', holder_org_id, 'expected_store_id', expected_store_id,
                          'expected_agent_id', expected_agent_id),
       'diversion:rebate:' || code_id, count(*) OVER (PARTITION BY code_id)
FROM f
ORDER BY code_id, id DESC  -- one row per code, the latest (a probe: a round's repeats of one
                           -- code were a 500, "ON CONFLICT DO UPDATE command cannot affect row
                           -- a second time")
ON CONFLICT (dedup_key) WHERE acknowledged_at IS NULL
DO UPDATE SET occurrences = alerts.occurrences + EXCLUDED.occurrences, last_at = now(),
              details = EXCLUDED.details
"""


class Clerks(Claimants[Principal]):
    """Who the claiming clerks are (``app.claims.Claimants``), as ``load_user`` would say, and
    that they may claim: ``sales.claim`` in a store."""

    name = "tracecode-rebate-clerks"
    token_type = "access"
    sql = _CLERKS

    def answer(self, claimant_id: int, row: dict[str, Any] | None) -> Principal:
        if row is None or row["status"] != "active" or row["org_status"] != "active":
            raise Unauthorized("the account is inactive or gone", code="account_inactive")
        if not row["session_live"]:  # as ``load_user``: signed out, or a password set since
            raise Unauthorized("the session was ended: sign in again", code="token_revoked")
        if row["must_change_password"]:  # as ``app.deps``
            raise password_change_required()
        clerk = Principal(
            org_id=row["org_id"],
            org_path=row["path"],
            permissions=frozenset(row["permissions"]),
            user_id=claimant_id,
            username=row["username"],
        )
        clerk.require("sales.claim")
        if row["kind"] != "store":
            raise NotAStore(clerk)
        return clerk


class NotAStore(Forbidden):
    """403 ``not_a_store``: the clerk is not (or no longer) of a store. It carries the clerk: a
    re-send of a claim the clerk made at a store before a move still answers that claim
    (``Claimer.replay``)."""

    def __init__(self, clerk: Principal | None = None) -> None:
        super().__init__("only a store's clerks claim sales rebates", code="not_a_store")
        self.clerk = clerk


class Claimer(Claims[RebateClaimOut]):
    """Clerks' rebate claims: ``app.claims.Claims`` with the rebates' ``credit`` and
    ``explain``."""

    name = "tracecode-rebate-claims"

    def __init__(self, pool: AsyncConnectionPool[Conn], verifier: Verifier, scheme: Scheme) -> None:
        super().__init__(pool, verifier, scheme)
        self.clerks = Clerks(pool, verifier.settings)

    async def close(self) -> None:
        await super().close()
        await self.clerks.close()

    async def claim_rebate(
        self, clerk: Principal, data: ClaimIn, ip: str | None, user_agent: str | None
    ) -> tuple[RebateClaimOut, bool]:
        """Verify, then credit; (the claim, created). Refusals raise ``AppError``s."""
        assert clerk.user_id is not None
        out, answer, created = await self.claim(
            data, clerk.user_id, clerk.brand_id, clerk.org_id, ip, user_agent
        )
        if created:
            out = RebateClaimOut(**{**_fields(out), "verification": answer})
        return out, created

    async def replay(
        self, refused: NotAStore, data: ClaimIn, ip: str | None, user_agent: str | None
    ) -> tuple[RebateClaimOut, bool]:
        """A claim of a clerk refused ``not_a_store``: a re-send of the claim the clerk made
        under the same client id and code at a store, before a move out of stores, answers it
        as any replay does (verified, then the first claim, 200: a probe's moved clerk got 403
        and the app dropped a claim the server holds); anything else is the refusal, before
        any verification. Only such clerks pay this lookup (one probe of the clerk's client id
        key, pooled: they are rare); the replay itself is explained by a round, as any."""
        clerk = refused.clerk
        assert clerk is not None and clerk.user_id is not None
        async with self.pool.connection() as conn:
            row: Any = await (  # a dict (the pool's rows)
                await conn.execute(
                    "SELECT code_id FROM rebate_claims WHERE clerk_id = %s AND client_id = %s",
                    (clerk.user_id, data.client_id),
                )
            ).fetchone()
        if row is None or row["code_id"] != self.code_of(data.serial):
            raise refused
        # no store: the round credits nothing to it, only explains it (``credit``, ``_why_not``)
        out, _, created = await self.claim(
            data, clerk.user_id, clerk.brand_id, None, ip, user_agent
        )
        return out, created

    async def credit(
        self, conn: AsyncConnection[Any], group: list[Pending[RebateClaimOut]]
    ) -> dict[int, RebateClaimOut]:
        group = [p for p in group if p.org_id is not None]  # a replay of a clerk of no store
        if not group:
            return {}
        params = {
            "ord": list(range(len(group))),
            "clerk": [p.claimant for p in group],
            "brand": [p.brand_id for p in group],
            "store": [p.org_id for p in group],
            "code": [p.code for p in group],
            "client": [p.client_id for p in group],
            "at": [p.at for p in group],
        }
        rows = await fetch(conn, _CREDIT, params)
        if not rows:
            return {}
        await partitions(conn, max(row["event_id"] for row in rows))
        by_code = {p.code: p for p in group}
        return {id(by_code[r["code_id"]]): _claim_out(r, by_code[r["code_id"]]) for r in rows}

    async def explain(
        self, conn: AsyncConnection[Any], rest: list[Pending[RebateClaimOut]]
    ) -> None:
        params = {
            "ord": list(range(len(rest))),
            "clerk": [p.claimant for p in rest],
            "store": [p.org_id for p in rest],
            "code": [p.code for p in rest],
            "client": [p.client_id for p in rest],
        }
        outcomes = judge(rest, await fetch(conn, _EXPLAIN, params), _why_not)
        diverted = [(p, row, o) for p, row, o in outcomes if isinstance(o, Diverted)]
        if diverted:  # kept before anyone is answered
            await _keep_refusals(conn, diverted)
        settle(outcomes)


def _claim_out(row: dict[str, Any], p: Pending[RebateClaimOut]) -> RebateClaimOut:
    return RebateClaimOut(
        claim_id=row["id"],
        serial=p.serial,
        amount=float(row["amount"]),
        product_id=row["product_id"],
        store_id=row["store_id"],
        agent_id=row["agent_id"],
        clerk_id=row["clerk_id"],
        claimed_at=row["claimed_at"],
        sale_recorded=row["sale_event_id"] is not None,
        verification=None,
        status=claim_status(row["hold_state"]),
    )


def _fields(out: RebateClaimOut) -> dict[str, Any]:
    return {f: getattr(out, f) for f in out.__struct_fields__}


class Diverted(Unprocessable):
    """A unit not delivered to the clerk's store: kept as an anti-diversion signal."""

    def __init__(self, message: str, code: str, details: dict[str, Any]) -> None:
        super().__init__(message, code=code, details=details)


def _why_not(row: dict[str, Any], p: Pending[RebateClaimOut]) -> RebateClaimOut:
    if row["id"] is not None and row["clerk_id"] == p.claimant and row["client_id"] == p.client_id:
        return _claim_out(row, p)  # the same claim again: answered as the first time
    if p.org_id is None:  # a clerk of no store (``Claimer.replay``): only a replay is answered
        raise NotAStore()
    if row["clerk_status"] != "active" or row["store_status"] != "active":
        # made inactive, or the store closed (or one above it), while the claim was in flight:
        # as the clerk's look-up answers either
        raise Unauthorized("the account is inactive or gone", code="account_inactive")
    if row["clerk_org"] != p.org_id:  # moved since its look-up: the move ended its sessions,
        # as the look-up answers them (``Clerks.answer``)
        raise Unauthorized("the session was ended: sign in again", code="token_revoked")
    if row["batch_void"]:  # voided since the verification (or its process's batch cache)
        refuse(void_answer(p.serial, p.lang))
    if row["client_code"] is not None and row["client_code"] != p.code:
        raise Conflict("this client id was used for another claim", code="client_id_reused")
    if row["client_withdrawn"]:  # a probe: credited again, a second rebate
        raise Conflict(
            "此返利已因退货撤回 / this claim was withdrawn: the unit was returned",
            code="claim_withdrawn",
        )
    if row["id"] is not None:
        raise Conflict(
            "此防伪码的返利已被领取 / the rebate of this code has already been claimed",
            code="already_claimed",
        )
    if row["unit_brand"] != p.brand_id:
        raise Unprocessable("this product is not of your brand", code="other_brand")
    if row["unit_status"] not in ("active", "sold"):
        raise Unprocessable("this unit cannot earn a rebate", code="not_claimable")
    if row["unit_status"] == "sold" and row["unit_disposition"] != "retail_sold":
        _given_away(row)  # as ``_CREDIT``: a sold unit earns its rebate only if retail-sold
    if row["holder_org_id"] != p.org_id or row["transit_to"] is not None:
        _elsewhere(row, p)
    _outside_agent_area(row, p)  # on hand here, moved in from another agent's area
    if row["unit_disposition"] in NOT_FOR_SALE:  # active here (a sold one: ``_given_away``)
        _not_sellable()
    if not row["rule_amount"]:
        raise Unprocessable("此产品没有返利 / this product earns no rebate", code="no_rebate")
    raise Conflict("the claim met another one; try again", code="claim_conflict")


def _given_away(row: dict[str, Any]) -> None:
    """The refusal of a unit ``sold`` by no retail sale: an approved exception outbound gave it
    away (a gift, a sample, staff welfare) or wrote it off — 409 ``not_sellable`` if it was
    returned damaged or expired (it keeps the mark), else 422 ``not_a_sale`` (a probe: a
    damaged return written off fell through to 409 ``claim_conflict``, "try again", which a
    till retries for ever)."""
    if row["unit_disposition"] in NOT_FOR_SALE:
        _not_sellable()
    raise Unprocessable(  # a probe: a staff-welfare unit earned the rebate of a sale
        "此产品为赠品、样品或员工福利，不是销售 / given away (a gift, a sample, staff "
        "welfare): not a sale, no rebate",
        code="not_a_sale",
    )


def _not_sellable() -> NoReturn:
    raise Conflict(  # review R6: as a sale of it is (app.logistics.movements)
        "此产品因损坏或过期被退回，不能再次销售 / returned damaged or expired: not sold again",
        code="not_sellable",
    )


def _elsewhere(row: dict[str, Any], p: Pending[RebateClaimOut]) -> None:
    """The refusal of a unit not delivered to the clerk's store, naming where it should be."""
    if row["transit_to"] == p.org_id:
        raise Unprocessable(
            "此产品尚未入库 / receive this unit into your store first", code="not_received"
        )
    if row["holder_org_id"] == p.org_id:  # shipped out (returned upstream): nothing diverted
        raise Unprocessable(
            "此产品已从本店退回 / this unit is on its way back from your store",
            code="not_on_hand",
        )
    if _sent_back(row, p):
        raise Unprocessable(
            "此产品已从本店退回 / this unit was returned from your store", code="not_on_hand"
        )
    details = _expected(row)
    if row["store_org_id"] is not None and row["store_org_id"] != p.org_id:
        name = row["store_name"]
        raise Diverted(
            f"此产品应在{name}销售 / this unit was supposed to be sold at {name}",
            "wrong_store",
            details,
        )
    _outside_agent_area(row, p)
    held = row["holder_name"]
    raise Diverted(
        f"此产品未发往您的门店(现在{held}) / this unit was not delivered to your store (it is"
        f" recorded at {held})",
        "not_delivered",
        {**details, "held_by": _named(row["holder_org_id"], held)},
    )


def _sent_back(row: dict[str, Any], p: Pending[RebateClaimOut]) -> bool:
    """Whether the unit is one the clerk's store returned upstream: the store is its designated
    store, and it is held above the store within its designated agent's area (a probe: the
    agent's receipt of the store's return made its clerk's claim ``not_delivered``, kept with a
    diversion alert, while the return on its way was ``not_on_hand``)."""
    held, here, agent = row["holder_path"], row["here_path"], row["designated_agent"]
    return (
        row["store_org_id"] == p.org_id
        and held is not None
        and here is not None
        and here.startswith(held)
        and agent is not None
        and f"/{agent}/" in held
    )


def _outside_agent_area(row: dict[str, Any], p: Pending[RebateClaimOut]) -> None:
    """``wrong_agent``: the clerk's store is outside the area of the unit's designated agent
    (``_IN_AREA``), wherever the unit is now — as an inspection judges it (a probe: goods moved
    store to store into another agent's area were received there and earned its clerk the
    rebate, no alert, while an inspection at that store called them diverted)."""
    agent = row["designated_agent"]
    if agent is not None and f"/{agent}/" not in (row["here_path"] or ""):
        name = row["agent_name"]
        raise Diverted(
            f"此产品应由{name}的门店销售 / this unit was supposed to be sold by {name}'s stores",
            "wrong_agent",
            _expected(row),
        )


def _expected(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "expected_store": _named(row["store_org_id"], row["store_name"]),
        "expected_agent": _named(row["designated_agent"], row["agent_name"]),
    }


def _named(org_id: int | None, name: str | None) -> dict[str, Any] | None:
    return None if org_id is None else {"id": org_id, "name": name}


async def _keep_refusals(
    conn: AsyncConnection[Any], diverted: list[tuple[Pending[RebateClaimOut], dict[str, Any], Any]]
) -> None:
    """The refused claims of units not delivered to the clerk's store, and an open
    ``diversion`` alert per unit for the brand (``_REFUSALS``: a till's retry counts once)."""
    params: dict[str, list[Any]] = defaultdict(list)
    for p, row, refusal in diverted:
        params["brand"].append(p.brand_id)
        params["code"].append(p.code)
        params["serial"].append(p.serial)
        params["clerk"].append(p.claimant)
        params["client"].append(p.client_id)
        params["store"].append(p.org_id)
        params["reason"].append(refusal.code)
        params["expected_store"].append(row["store_org_id"])
        params["expected_agent"].append(row["designated_agent"])
        params["holder"].append(row["holder_org_id"])
    await fetch(conn, _REFUSALS, params)
