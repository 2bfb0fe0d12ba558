"""Points: the brand's rules, members' claims by scan + PIN, and the ledger (K2 points, M2).

Rules. A product earns the points of its rule; a rule for an organisation of the unit's channel
overrides the product's default (``agent_id`` NULL): the rule of the organisation the unit's
channel (``unit_state.channel_org_id``: the one the brand's side last shipped it to), else of
the nearest one above it that has one — a store's own rule, else its distributor's, else its
agent's (``points_in_force``). No rule, or 0 points: the unit earns nothing.

Claims (``app.claims``, the mechanism rebates share). The member comes first, looked up by
``Members`` with the other claims in flight: a frozen member is refused (403) and a signed-out
token (401) before anything is verified. The claim is then verified (``member_id`` on the
record) and credited by ``Claimer`` in rounds; a round is ONE statement, so one transaction —
the claims inserted with ``ON CONFLICT DO NOTHING`` (``point_claims.code_id`` is unique among
claims not withdrawn: a code is credited once, unless a consumer's return withdrew its claim,
``app.members.returns``), their ledger rows, the balances, and one ``claiming`` ObjectEvent per
credited unit; only members still active when the round runs are credited, so a freeze
committed while a claim is in flight holds too. A claim the round did not insert is then
explained: the same client id again (a replay, answered as the first time), a frozen member, a
code of a batch voided since its verification (422 ``not_genuine``, reason ``void``), a client
id used for another code, a code already claimed, another brand's code, no points.

Sales (issue 17). A member's claim is a sale when nothing recorded one yet: a credited claim of
a unit not yet sold that a store holds (or an agent or a distributor, the retail channel) sells
it there in the round's statement, as a rebate claim does (``_CREDIT`` below), with the sale's
document (``app.logistics.movements.claim_sale_documents``, no handler: the store sales query
lists it); the unit_state trigger of migration 0022 then queues the sale for the analytics
roll-up. A unit sold before
(the till, a rebate claim) is not sold again and the till refuses a unit a claim has sold, so a
unit is one sale whichever comes first. A unit at the brand, a factory, a warehouse or a branch,
or in transit, is not sold by a claim (it never reached the channel); ``point_claims
.sale_event_id`` names the sale a claim recorded.

Ledger. ``points_ledger`` is append-only (a trigger refuses UPDATE and DELETE, but for the
erasure's replacing an erased member's reasons: ``app.members.erasure``); kinds claim,
redemption, refund, expiry and adjustment (with a reason). ``point_balances`` caches each
member's sum in the same transaction as every ledger row and can never go negative (a CHECK);
``check_balances`` recomputes every sum from the ledger (``tracecode points check``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app import audit
from app.auth.principal import Principal
from app.catalog.service import check_rule_target
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
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from app.forensics.status import claim_status
from app.locks import Lock, xact_lock
from app.logistics.movements import NOT_FOR_SALE, claim_sale_documents
from app.members.principal import MEMBER_TOKEN, Member, brand_of_staff
from app.members.schemas_points import (
    AdjustmentIn,
    AdjustmentOut,
    ClaimOut,
    LedgerEntryOut,
    PointsOut,
    RuleIn,
    RuleOut,
)
from app.paging import Page, fetch_page
from app.verify.schemas import ProductInfo
from app.verify.service import Verifier

# -- rules -----------------------------------------------------------------------------------


_RULE = "id, product_id, agent_id, points, updated_at"


def points_in_force(unit: str) -> str:
    """The SQL expression of the points a unit earns (NULL: no rule), given the alias of its
    ``unit_state`` row: the rule of the nearest organisation at or above the unit's channel
    organisation that has one — the organisation itself, else the distributor or agent above
    it, so goods the factory shipped straight to an agent's store earn the agent's rule — else
    the product's default. A primary-key probe of ``orgs``, then one probe of ``point_rules``'
    unique (product_id, agent_id) index per level of the path, and one for the default."""
    return f"""coalesce((
        SELECT rule_org.points
          FROM orgs channel
          JOIN point_rules rule_org
            ON rule_org.product_id = {unit}.product_id
           AND rule_org.agent_id = ANY (
               string_to_array(trim(both '/' FROM channel.path), '/')::bigint[])
          JOIN orgs rule_at ON rule_at.id = rule_org.agent_id
         WHERE channel.id = {unit}.channel_org_id
         ORDER BY length(rule_at.path) DESC LIMIT 1
    ), (
        SELECT rule_default.points FROM point_rules rule_default
         WHERE rule_default.product_id = {unit}.product_id AND rule_default.agent_id IS NULL
    ))"""


async def put_rule(conn: Conn, actor: Principal, data: RuleIn) -> tuple[RuleOut, bool]:
    """Set the points of a product (for one agent, or its default); (rule, created). The rule
    in place before is locked and audited as ``before`` (a probe: ``null``, the log could not
    tell what the points had been), as a rebate rule's (``app.rebates.rules.put_rule``); the
    points it has already change nothing."""
    brand_of_staff(actor, "points.rules")
    await check_rule_target(conn, actor, data.product_id, data.agent_id)
    # the product's points rules' lock (FOR UPDATE locks no rule yet): two first
    # settings at once would both read "no rule" and audit two creations
    await xact_lock(conn, Lock.POINT_RULES, data.product_id)
    found = await (
        await conn.execute(
            f"SELECT {_RULE} FROM point_rules "
            "WHERE product_id = %s AND agent_id IS NOT DISTINCT FROM %s FOR UPDATE",
            (data.product_id, data.agent_id),
        )
    ).fetchone()
    before = RuleOut(**found) if found else None
    if before is not None and before.points == data.points:  # saved unchanged: no write, no row
        return before, False
    row = await (
        await conn.execute(
            f"""INSERT INTO point_rules (brand_id, product_id, agent_id, points, updated_by)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (product_id, agent_id) DO UPDATE
                   SET points = EXCLUDED.points, updated_by = EXCLUDED.updated_by,
                       updated_at = now()
                RETURNING {_RULE}""",
            (actor.brand_id, data.product_id, data.agent_id, data.points, actor.person),
        )
    ).fetchone()
    assert row is not None
    out = RuleOut(**row)
    created = before is None
    await audit.record(
        conn,
        actor,
        "create" if created else "update",
        "point_rule",
        out.id,
        before=before,
        after=out,
    )
    return out, created


async def list_rules(
    conn: Conn,
    actor: Principal,
    product_id: int | None,
    agent_id: int | None,
    page: int,
    per_page: int,
) -> Page[RuleOut]:
    """The brand's points rules: its own staff's, as their changes (a probe: an agent's user
    holding ``points.rules``, refused a change, read every agent's overrides)."""
    brand_of_staff(actor, "points.rules")
    where = ["brand_id = %(brand)s"]
    if product_id is not None:
        where.append("product_id = %(product)s")
    if agent_id is not None:
        where.append("agent_id = %(agent)s")
    return await fetch_page(
        conn,
        columns=_RULE,
        source="point_rules",
        where=where,
        params={"brand": actor.brand_id, "product": product_id, "agent": agent_id},
        order="product_id, agent_id NULLS FIRST",
        page=page,
        per_page=per_page,
        make=lambda row: RuleOut(**row),
    )


async def delete_rule(conn: Conn, actor: Principal, rule_id: int) -> None:
    brand_of_staff(actor, "points.rules")
    row = await (
        await conn.execute(
            f"DELETE FROM point_rules WHERE id = %s AND brand_id = %s RETURNING {_RULE}",
            (rule_id, actor.brand_id),
        )
    ).fetchone()
    if row is None:
        raise NotFound("rule not found")
    await audit.record(conn, actor, "delete", "point_rule", rule_id, before=RuleOut(**row))


# -- the ledger ------------------------------------------------------------------------------


async def balance(conn: Conn, member_id: int) -> int:
    """A member's points balance (0 for a member who never had any)."""
    row = await (
        await conn.execute("SELECT balance FROM point_balances WHERE member_id = %s", (member_id,))
    ).fetchone()
    return int(row["balance"]) if row else 0


# When a balance moved: the time of the write, not of its transaction's start (``now()``). The
# reminder sweep (``app.sms.reminders``) looks again at a balance whose ``updated_at`` is after
# its last check, stamped with the sweep's ``now()``: a claim or a redemption whose transaction
# began before a sweep but wrote the balance after the sweep read it would carry an older time
# than the check and never be looked at (a probe). ``clock_timestamp()`` at the write is later
# than the read of any sweep that missed it: a balance written before a sweep's read is either
# committed (read as it is) or still locked (skipped, so not checked). Not tested: the window
# lies between two statements of concurrent transactions, which no test opens without faking.
BALANCE_TOUCHED = "clock_timestamp()"


async def post_entry(
    conn: Conn,
    *,
    member_id: int,
    brand_id: int,
    kind: str,
    points: int,
    redemption_id: int | None = None,
    reason: str | None = None,
    recorded_by: int | None = None,
    client_id: str | None = None,
    client_owner: str | None = None,
) -> tuple[int, int] | None:
    """Append one ledger row and move the balance with it, in the caller's transaction; (entry
    id, new balance), or None when the balance would go below zero (nothing written). Not for
    claims (``Claimer`` writes those in bulk). The balance row is locked first, so debits of one
    member run one at a time. ``updated_at`` is the time of the write (``BALANCE_TOUCHED``). A
    ``client_id`` comes with its ``client_owner`` (``client_owner``)."""
    if points < 0:  # a debit: only while the balance covers it (no row: a balance of 0)
        sql = f"""UPDATE point_balances SET balance = balance + %(points)s,
                         updated_at = {BALANCE_TOUCHED}
                  WHERE member_id = %(member)s AND balance + %(points)s >= 0 RETURNING balance"""
    else:  # a credit (the CHECK is evaluated on an upsert's proposed row: credits only)
        sql = f"""INSERT INTO point_balances AS b (member_id, balance, updated_at)
                  VALUES (%(member)s, %(points)s, {BALANCE_TOUCHED}) ON CONFLICT (member_id)
                  DO UPDATE SET balance = b.balance + %(points)s, updated_at = EXCLUDED.updated_at
                  RETURNING balance"""
    moved = await (await conn.execute(sql, {"member": member_id, "points": points})).fetchone()
    if moved is None:
        return None
    entry = await (
        await conn.execute(
            """INSERT INTO points_ledger (member_id, brand_id, kind, points, redemption_id, reason,
                                          recorded_by, client_id, client_owner)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                member_id,
                brand_id,
                kind,
                points,
                redemption_id,
                reason,
                recorded_by,
                client_id,
                client_owner,
            ),
        )
    ).fetchone()
    assert entry is not None
    return int(entry["id"]), int(moved["balance"])


def client_owner(actor: Principal) -> str:
    """Whose an adjustment's client id is (``points_ledger.client_owner``, migration 0136): an
    API key's its own, a user's shared by the user's organisation — the owner text of
    ``app.codes.service.request_key_owner``. A probe: client ids were per member, so the CRM
    key's "welcome-1" was answered with a person's entry of that id (its credit dropped) or 409.
    Entries kept from before that the audit log could not attribute are ``BRAND_OWNED``: any
    caller of the brand."""
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return f"org:{actor.org_id}"


BRAND_OWNED = "brand"


async def adjust(conn: Conn, actor: Principal, data: AdjustmentIn) -> tuple[AdjustmentOut, bool]:
    """A manual ledger entry by the brand (``points.rules``): an adjustment with its reason, or
    an expiry of points; (entry, created). The same caller's client id again answers the first
    entry (``client_owner``); the member's row is locked first, so racing retries run one at a
    time and exactly one writes."""
    brand_of_staff(actor, "points.rules")
    if data.points == 0 or (data.kind == "expiry" and data.points > 0):
        raise Unprocessable(
            "an expiry takes points away; an adjustment moves at least one point",
            code="bad_points",
            details={"field": "points"},
        )
    member = await (
        await conn.execute(
            "SELECT id FROM members WHERE id = %s AND brand_id = %s AND status <> 'erased' "
            "FOR NO KEY UPDATE",  # not FOR UPDATE: a redemption's rows refer to the member
            (data.member_id, actor.brand_id),
        )
    ).fetchone()
    if member is None:
        raise NotFound("member not found")
    owner = client_owner(actor)
    earlier = await (
        await conn.execute(
            "SELECT id, kind, points, reason FROM points_ledger "
            "WHERE member_id = %s AND client_id = %s AND client_owner IN (%s, %s)",
            (data.member_id, data.client_id, owner, BRAND_OWNED),
        )
    ).fetchone()
    if earlier is not None:  # the reason too: another adjustment of the same size is no retry
        if (earlier["kind"], earlier["points"], earlier["reason"]) != (
            data.kind,
            data.points,
            data.reason,
        ):
            raise Conflict("this client id was used for another entry", code="client_id_reused")
        out = AdjustmentOut(
            entry_id=earlier["id"],
            member_id=data.member_id,
            kind=data.kind,
            points=data.points,
            balance=await balance(conn, data.member_id),
        )
        return out, False
    posted = await post_entry(
        conn,
        member_id=data.member_id,
        brand_id=actor.brand_id,
        kind=data.kind,
        points=data.points,
        reason=data.reason,
        recorded_by=actor.person,  # a key's: its maker (as a redemption's fulfiller)
        client_id=data.client_id,
        client_owner=owner,
    )
    if posted is None:
        raise Unprocessable("the balance would go below zero", code="insufficient_points")
    entry_id, new_balance = posted
    out = AdjustmentOut(
        entry_id=entry_id,
        member_id=data.member_id,
        kind=data.kind,
        points=data.points,
        balance=new_balance,
    )
    await audit.record(conn, actor, "create", "points_entry", entry_id, after=out)
    return out, True


async def history(conn: Conn, member: Member, page: int, per_page: int) -> PointsOut:
    """The member's balance and ledger, newest first, with the product of each claim and the
    gift of each redemption."""
    items = await ledger(conn, member.id, page, per_page)
    return PointsOut(
        balance=await balance(conn, member.id),
        items=items.items,
        page=items.page,
        per_page=items.per_page,
        total=items.total,
    )


async def ledger(conn: Conn, member_id: int, page: int, per_page: int) -> Page[LedgerEntryOut]:
    """A page of the member's ledger entries, newest first (claims with their product,
    redemptions and refunds with their gift)."""
    return await fetch_page(
        conn,
        columns="""l.id, l.at, l.kind, l.points, l.claim_id, l.redemption_id, l.reason,
                   p.id AS p_id, p.name AS p_name, p.spec AS p_spec, p.gtin AS p_gtin,
                   p.image_url AS p_image, p.video_url AS p_video, g.name AS gift_name""",
        source="""points_ledger l
                  LEFT JOIN point_claims c ON c.id = l.claim_id
                  LEFT JOIN products p ON p.id = c.product_id
                  LEFT JOIN redemptions r ON r.id = l.redemption_id
                  LEFT JOIN gifts g ON g.id = r.gift_id""",
        where=["l.member_id = %(member)s"],
        params={"member": member_id},
        order="l.id DESC",
        page=page,
        per_page=per_page,
        make=_entry,
    )


def _entry(row: dict[str, Any]) -> LedgerEntryOut:
    product = None
    if row["p_id"] is not None:
        product = ProductInfo(
            id=row["p_id"],
            name=row["p_name"],
            spec=row["p_spec"],
            gtin=row["p_gtin"],
            image_url=row["p_image"],
            video_url=row["p_video"],
        )
    return LedgerEntryOut(
        id=row["id"],
        at=row["at"],
        kind=row["kind"],
        points=row["points"],
        claim_id=row["claim_id"],
        redemption_id=row["redemption_id"],
        reason=row["reason"],
        product=product,
        gift_name=row["gift_name"],
    )


class Mismatch(msgspec.Struct, frozen=True):
    member_id: int
    balance: int  # point_balances
    ledger: int  # the sum of the member's ledger rows


async def check_balances(conn: Conn) -> list[Mismatch]:
    """Every member whose cached balance differs from the sum of its ledger (none: all agree)."""
    rows = await (
        await conn.execute(
            """SELECT coalesce(b.member_id, l.member_id) AS member_id,
                      coalesce(b.balance, 0) AS balance, coalesce(l.total, 0) AS ledger
               FROM point_balances b
               FULL JOIN (SELECT member_id, sum(points) AS total FROM points_ledger
                          GROUP BY member_id) l ON l.member_id = b.member_id
               WHERE coalesce(b.balance, 0) <> coalesce(l.total, 0)
               ORDER BY 1"""
        )
    ).fetchall()
    return [Mismatch(int(r["member_id"]), int(r["balance"]), int(r["ledger"])) for r in rows]


# -- claims ------------------------------------------------------------------------------------

# A unit back from a consumer and not sold since: its PIN is the refunded buyer's (a probe
# claimed the points again at once, and "sold" the unit). Only a consumer's return (``POST
# /returns``, which sets ``returned_at``, never cleared) makes a sold unit active again, and only
# a retail sale (the till, a rebate or a member's claim) makes it sold ``retail_sold`` — the sale
# of the analytics (migration 0022) — so a unit with a ``returned_at`` that is not sold so was not
# sold since, wherever it went (a probe: one returned before anyone claimed it, sent back to its
# agent and received there, kept no other mark, and the refunded buyer's claim was credited and
# "sold" it at the agent; migration 0078). An approved exception outbound (a gift, a sample, a
# write-off) makes it ``sold`` too, but no sale (a probe: the refunded buyer claimed a returned
# pack again once the store gave it away as a sample). ``u`` is the unit's ``unit_state`` row.
RETURNED_UNSOLD = (
    "(u.returned_at IS NOT NULL"
    " AND NOT coalesce(u.status = 'sold' AND u.disposition = 'retail_sold', false))"
)
# A unit a consumer returned damaged or expired (``NOT_FOR_SALE``): no sale to claim, whatever
# its status — it keeps the mark through every later move, a write-off's too (a probe: written
# off, ``sold``, it was credited the points of its refunded sale again).
SPOILT = "coalesce(u.disposition IN ('damaged', 'expired'), false)"

# One round: the claims in, credited where the member is (still) active and the unit is this
# brand's, of a batch not void, and earns points (a void leaves a sold unit sold: a probe's claim
# right after the void, verified from a process's batch cache, was credited; the void's active
# units are voided under their locks, so a round waiting for them reads them void, and a sold
# unit's batch is asked again after its lock, in a fresh snapshot: a probe's round waiting for a
# sold unit was credited on a batch voided meanwhile; a claim refused so is answered
# ``not_genuine`` / ``void`` as the verification answers it); the code's
# unique key drops every claim of a code claimed before (in this round or ever). ONE statement —
# one round trip, one transaction: the claims, their ledger rows, the balances (upserted in
# member order, so concurrent rounds lock them in the same order) and one ``claiming``
# ObjectEvent per credited unit with its code row, the event ``app.events.builders.observe``
# makes (OBSERVE, no disposition, details member_id, claim_id, points, product_id, agent_id;
# claim times are UTC, so the offset is +00:00). Event ids come from the events' sequence;
# ``partitions`` keeps the partitions ahead of them as ``allocate_ids`` does.
#
# The sale (issue 17: member claims count as sales, once). A credited claim of a unit not yet
# sold that a store holds (or an agent or a distributor: the retail channel, which may sell to
# consumers as ``POST /sales`` lets it) and that is not in transit sells the unit at that holder,
# exactly as the rebate claims' ``_CREDIT`` (``app.rebates.claims``) and the ``sale`` movement of
# ``app.logistics.movements`` do: status sold, disposition retail_sold (the ``sales_queue``
# trigger of migration 0022 counts it), one ObjectEvent OBSERVE retail_selling per holder at the
# holder (details ``member_claim`` and its ``document``, recorded by no user) with the sale's
# document (``claim_sale_documents``: no handler), the units leave their cases (one
# AggregationEvent DELETE unpacking per case) and the holder's stock delta per product and lot.
# A unit held by the brand, a factory, a warehouse or a branch, or in transit, is NOT sold by a
# claim: it never reached the sales channel (the verification already flags a unit never
# shipped), it stays in that stock, and its sale is counted when a store sells it. A unit sold
# before (at the till or by a rebate claim) is not sold again, and a store sale or rebate claim
# after the member's claim finds it sold: one sale, whichever comes first. ``sellable`` locks
# the units it sells (in code order) and re-reads their status under the lock, so a concurrent
# till sale or rebate claim of the same unit sells it once; it sells only for a code never
# claimed before, and ``sold`` only the units whose claim this round inserted.
_CREDIT = (
    """
WITH r AS (
    SELECT * FROM unnest(%(ord)s::int[], %(member)s::bigint[], %(brand)s::bigint[],
                         %(code)s::bigint[], %(client)s::text[], %(at)s::timestamptz[])
           AS r(ord, member_id, brand_id, code_id, client_id, at)
), ok AS MATERIALIZED (
    SELECT r.*, u.product_id, u.channel_org_id AS agent_id, u.status,
           in_force.points, nextval('events_id_seq') AS event_id, fh.id AS hold_id
    FROM r
    JOIN members m ON m.id = r.member_id AND m.status = 'active'
    -- a member on hold (``app.forensics.holds``): one probe of the open holds' unique index
    LEFT JOIN fraud_holds fh ON fh.party_kind = 'member' AND fh.party_id = r.member_id
                            AND fh.state = 'open'
    JOIN unit_state u ON u.code = r.code_id AND u.brand_id = r.brand_id
                     AND u.status IN ('active', 'sold')
                     -- shipped into the channel (SPEC B4: rewards only on codes shipped
                     -- through it; ``_why_not``: ``not_shipped``)
                     AND u.channel_org_id IS NOT NULL  -- and not returned as NOT_FOR_SALE
                     -- (``SPOILT``), nor back from a consumer and not sold since
                     -- (``RETURNED_UNSOLD``), whatever its status
                     AND NOT """
    + SPOILT
    + """
                     AND NOT """
    + RETURNED_UNSOLD
    + """
    CROSS JOIN LATERAL (SELECT """
    + points_in_force("u")
    + """ AS points OFFSET 0) in_force
    WHERE in_force.points > 0
      AND NOT EXISTS (SELECT 1 FROM code_batches b  -- no void batch's (its sold units stay sold)
                       WHERE b.batch_no = r.code_id >> 32 AND b.state = 'void')
    ORDER BY u.code
    -- an erasure under way holds the member (FOR NO KEY UPDATE): wait, and read what it
    -- committed. Not KEY SHARE, which it would not wait for: the erasure cannot take the member
    -- FOR UPDATE without deadlocking with redemptions (bench/RESULTS.md: claims/s, 2026-12-04).
    -- A consumer's return holds the unit (FOR UPDATE, ``app.members.returns``): wait, and read
    -- it returned (a probe: a sold unit read unlocked was claimed as the return withdrew "its"
    -- claim, none yet, and kept the refunded points). In code order, as ``sellable`` and the
    -- rebates' claims lock units.
    FOR SHARE OF m FOR UPDATE OF u
), sellable AS MATERIALIZED (
    SELECT ok.code_id, ok.brand_id, ok.at, u.holder_org_id AS seller_id, u.lot, u.parent_sscc,
           u.line_id
    FROM ok
    JOIN unit_state u ON u.code = ok.code_id AND u.status = 'active' AND u.transit_to IS NULL
    JOIN orgs h ON h.id = u.holder_org_id AND h.kind IN ('store', 'agent', 'distributor')
    WHERE ok.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM point_claims pc
                       WHERE pc.code_id = ok.code_id AND pc.withdrawn_at IS NULL)
    ORDER BY u.code
    FOR UPDATE OF u
), sales AS MATERIALIZED (
    SELECT seller_id, brand_id, nextval('events_id_seq') AS sale_event_id
    FROM sellable GROUP BY seller_id, brand_id
), c AS (
    INSERT INTO point_claims (code_id, member_id, brand_id, product_id, agent_id, points,
                              client_id, event_id, sale_event_id, claimed_at, hold_id,
                              hold_state)
    SELECT ok.code_id, ok.member_id, ok.brand_id, ok.product_id, ok.agent_id, ok.points,
           ok.client_id, ok.event_id, s.sale_event_id, ok.at, ok.hold_id,
           CASE WHEN ok.hold_id IS NOT NULL THEN 'held' END
    FROM ok LEFT JOIN sellable v ON v.code_id = ok.code_id
         LEFT JOIN sales s ON s.seller_id = v.seller_id AND s.brand_id = v.brand_id
    -- one owner per code: not one another member drew (``app.draws``; ``drawn_by_another``),
    -- asked of the unit's row ``ok`` returned locked: a fresh snapshot (migration 0119), which
    -- sees a draw committed while this statement waited for the lock; so does the batch's void
    -- (migration 0143: a void leaves a sold unit's row alone, so ``ok`` read it before the wait)
    WHERE NOT code_drawn_by_another(ok.code_id, ok.member_id) AND NOT code_batch_void(ok.code_id)
    ORDER BY ok.ord
    ON CONFLICT DO NOTHING
    RETURNING id, code_id, member_id, brand_id, product_id, agent_id, points, client_id,
              event_id, sale_event_id, claimed_at, hold_state
), sold AS MATERIALIZED (
    SELECT c.code_id, c.brand_id, c.product_id, c.sale_event_id, c.claimed_at AS at,
           s.seller_id, s.lot, s.parent_sscc, s.line_id
    FROM c JOIN sellable s USING (code_id) WHERE c.sale_event_id IS NOT NULL
), """
    + claim_sale_documents("sold", "seller_id", "NULL::bigint", "at")
    + """, loose AS MATERIALIZED (
    SELECT parent_sscc, seller_id, brand_id, min(at) AS at, count(*) AS n,
           nextval('events_id_seq') AS event_id
    FROM sold WHERE parent_sscc IS NOT NULL GROUP BY parent_sscc, seller_id, brand_id
), moved AS (
    UPDATE unit_state t
    SET status = 'sold', sold_at = s.at, disposition = 'retail_sold',
        last_event_id = s.sale_event_id, updated_at = s.at, parent_sscc = NULL
    FROM sold s WHERE t.code = s.code_id
), sale_events AS (
    INSERT INTO events (id, event_uuid, brand_id, event_type, action, biz_step, disposition,
                        event_time, tz_offset, biz_location, source_org, parent_kind,
                        parent_code, child_count, recorded_by, details)
    SELECT sale_event_id, gen_random_uuid(), brand_id, 'ObjectEvent', 'OBSERVE',
           'retail_selling', 'retail_sold', min(at), '+00:00', seller_id, seller_id, NULL, NULL,
           count(*), NULL::bigint,
           jsonb_build_object('member_claim', true, 'document', min(d.doc_no))
    FROM sold JOIN sale_docs d ON d.event_id = sold.sale_event_id
    GROUP BY sale_event_id, brand_id, seller_id
    UNION ALL
    SELECT event_id, gen_random_uuid(), brand_id, 'AggregationEvent', 'DELETE', 'unpacking',
           NULL, at, '+00:00', seller_id, NULL, 'c', parent_sscc, n, NULL, NULL
    FROM loose
), sale_codes AS (
    INSERT INTO event_codes (code, kind, event_id)
    SELECT code_id, 'u', sale_event_id FROM sold
    UNION ALL
    SELECT s.code_id, 'u', l.event_id
    FROM sold s JOIN loose l USING (parent_sscc, seller_id, brand_id)
    UNION ALL
    SELECT parent_sscc, 'c', event_id FROM loose
), deltas AS (
    INSERT INTO stock_deltas (org_id, product_id, lot, on_hand, in_transit, event_id)
    SELECT seller_id, product_id, lot, -count(*), 0, sale_event_id
    FROM sold GROUP BY seller_id, product_id, lot, sale_event_id
), l AS (
    INSERT INTO points_ledger (member_id, brand_id, kind, points, claim_id, at)
    SELECT member_id, brand_id, 'claim', points, id, claimed_at FROM c WHERE hold_state IS NULL
), e AS (
    INSERT INTO events (id, event_uuid, brand_id, event_type, action, biz_step, disposition,
                        event_time, tz_offset, child_count, details)
    SELECT event_id, gen_random_uuid(), brand_id, 'ObjectEvent', 'OBSERVE', 'claiming', NULL,
           claimed_at, '+00:00', 1,
           jsonb_build_object('member_id', member_id, 'claim_id', id, 'points', points,
                              'product_id', product_id, 'agent_id', agent_id)
    FROM c
), ec AS (
    INSERT INTO event_codes (code, kind, event_id) SELECT code_id, 'u', event_id FROM c
), b AS (
    INSERT INTO point_balances AS b (member_id, balance, updated_at)  -- ``BALANCE_TOUCHED``
    SELECT member_id, sum(points), clock_timestamp() FROM c WHERE hold_state IS NULL
    GROUP BY member_id ORDER BY member_id
    ON CONFLICT (member_id) DO UPDATE SET balance = b.balance + EXCLUDED.balance,
                                          updated_at = EXCLUDED.updated_at
    RETURNING member_id, balance
)
-- a held claim credits nothing: its member's balance is the one before the statement (all of a
-- held member's claims of the round are held)
SELECT c.*, coalesce(b.balance, (SELECT pb.balance FROM point_balances pb
                                  WHERE pb.member_id = c.member_id), 0) AS balance,
       (SELECT max(event_id) FROM loose) AS top_event_id
FROM c LEFT JOIN b USING (member_id)
"""
)

# Why claims were not credited: the member's status, the code's claim, the claim made under the
# same client id, the unit and its rule.
_EXPLAIN = (
    """
SELECT r.ord, c.id, c.member_id, c.client_id, c.code_id, c.product_id, c.agent_id, c.points,
       c.claimed_at, c.hold_state, cc.code_id AS client_code,
       cc.withdrawn_at IS NOT NULL AS client_withdrawn,
       u.brand_id AS unit_brand, u.status AS unit_status, u.channel_org_id AS unit_channel,
       u.disposition AS unit_disposition, """
    + RETURNED_UNSOLD
    + """ AS returned_unsold,
       """
    + points_in_force("u")
    + """ AS rule_points, coalesce(pb.balance, 0) AS balance,
       m.status AS member_status, b.state = 'void' AS batch_void,
       EXISTS (SELECT 1 FROM draws dr WHERE dr.code_id = r.code_id
                  AND dr.member_id <> r.member_id AND dr.withdrawn_at IS NULL)
           AS drawn_by_another
FROM unnest(%(ord)s::int[], %(member)s::bigint[], %(code)s::bigint[], %(client)s::text[])
     AS r(ord, member_id, code_id, client_id)
LEFT JOIN members m ON m.id = r.member_id
LEFT JOIN point_claims c ON c.code_id = r.code_id AND c.withdrawn_at IS NULL
LEFT JOIN point_claims cc ON cc.member_id = r.member_id AND cc.client_id = r.client_id
LEFT JOIN unit_state u ON u.code = r.code_id
LEFT JOIN point_balances pb ON pb.member_id = r.member_id
LEFT JOIN code_batches b ON b.batch_no = r.code_id >> 32
"""
)

# The members of the claims in flight, and whether their tokens were revoked (signed out).
_MEMBERS = """
SELECT r.ord, m.brand_id, m.phone, m.status, v.jti IS NOT NULL AS revoked
FROM unnest(%(ord)s::int[], %(id)s::bigint[], %(jti)s::uuid[]) AS r(ord, member_id, jti)
JOIN members m ON m.id = r.member_id
JOIN orgs b ON b.id = m.brand_id AND b.status = 'active'  -- as member_from_token (a probe)
LEFT JOIN member_token_revocations v ON v.jti = r.jti
"""


class Members(Claimants[Member]):
    """Who the claiming members are (``app.claims.Claimants``): the member and the token's
    revocation looked up for every claim, coalesced. A freeze or a sign-out therefore holds for
    every claim looked up after it commits; a claim looked up just before is still refused at
    credit time by a frozen member (``_CREDIT`` credits active members only)."""

    name = "tracecode-claim-members"
    token_type = MEMBER_TOKEN
    sql = _MEMBERS

    def answer(self, claimant_id: int, row: dict[str, Any] | None) -> Member:
        if row is None:
            raise Unauthorized("unknown member", code="invalid_token")
        if row["revoked"]:
            raise Unauthorized("signed out: sign in again", code="token_revoked")
        if row["status"] == "erased":
            raise Unauthorized("the membership was erased", code="member_erased")
        return Member(claimant_id, row["brand_id"], row["phone"], row["status"])

    async def member(self, authorization: str | None) -> Member:
        """The member of an ``Authorization: Bearer`` header, as ``provide_member``."""
        return await self.lookup(authorization)


class Claimer(Claims[ClaimOut]):
    """Members' points claims: ``app.claims.Claims`` with the points' ``credit`` and
    ``explain``."""

    name = "tracecode-claims"

    def __init__(self, pool: AsyncConnectionPool[Conn], verifier: Verifier, scheme: Scheme) -> None:
        super().__init__(pool, verifier, scheme)
        self.members = Members(pool, verifier.settings)

    async def close(self) -> None:
        await super().close()
        await self.members.close()

    async def claim_points(
        self,
        member: Member,
        data: ClaimIn,
        ip: str | None,
        user_agent: str | None,
        checked: str = "",
    ) -> tuple[ClaimOut, bool]:
        """Verify, then credit; (the claim, created). Refusals raise ``AppError``s. A frozen
        member's claim sent again with its client id answers the first claim, as any retry does
        (a probe: 403, so a client that lost the answer never learnt it had been credited).
        ``checked``: as ``Claims.claim``'s."""
        if member.status != "active" and not await self._claimed(member.id, data):
            member.require_active()
        out, answer, created = await self.claim(
            data, member.id, member.brand_id, None, ip, user_agent, member.id, checked
        )
        return msgspec.structs.replace(out, verification=answer) if created else out, created

    async def _claimed(self, member_id: int, data: ClaimIn) -> bool:
        """Whether ``data`` is a retry of a claim the member made: same client id and same code
        — only that is answered to a frozen member; anything else is 403 before any PIN is
        checked (a probe: any claim under the client id of one made before went on to the
        verification, so a frozen member guessed PINs of other codes, counted and recorded)."""
        code = self.code_of(data.serial)
        if code is None:
            return False
        async with self.pool.connection() as conn:
            found = await conn.execute(
                "SELECT 1 FROM point_claims "
                "WHERE member_id = %s AND client_id = %s AND code_id = %s",
                (member_id, data.client_id, code),
            )
            return await found.fetchone() is not None

    async def credit(
        self, conn: AsyncConnection[Any], group: list[Pending[ClaimOut]]
    ) -> dict[int, ClaimOut]:
        return await credit(conn, group)

    async def explain(self, conn: AsyncConnection[Any], rest: list[Pending[ClaimOut]]) -> None:
        await explain(conn, rest)


async def credit(conn: AsyncConnection[Any], group: list[Pending[ClaimOut]]) -> dict[int, ClaimOut]:
    """Credit a round of verified claims (one per code) in one statement; the credited ones by
    ``id()`` of their pending claim. ``conn`` returns dict rows."""
    params = {
        "ord": list(range(len(group))),
        "member": [p.claimant for p in group],
        "brand": [p.brand_id for p in group],
        "code": [p.code for p in group],
        "client": [p.client_id for p in group],
        "at": [p.at for p in group],
    }
    rows = await fetch(conn, _CREDIT, params)
    if rows:
        await partitions(
            conn,
            max(max(r["event_id"], r["sale_event_id"] or 0, r["top_event_id"] or 0) for r in rows),
        )
    by_code = {p.code: p for p in group}
    return {
        id(by_code[row["code_id"]]): _claim_out(row, by_code[row["code_id"]].serial) for row in rows
    }


def _claim_out(row: dict[str, Any], serial: str) -> ClaimOut:
    return ClaimOut(
        claim_id=row["id"],
        serial=serial,
        points=row["points"],
        balance=int(row["balance"]),
        product_id=row["product_id"],
        agent_id=row["agent_id"],
        claimed_at=row["claimed_at"],
        verification=None,
        status=claim_status(row["hold_state"]),
    )


async def explain(conn: AsyncConnection[Any], rest: list[Pending[ClaimOut]]) -> None:
    """Answer the claims a round did not credit: a replay, or why not."""
    params = {
        "ord": list(range(len(rest))),
        "member": [p.claimant for p in rest],
        "code": [p.code for p in rest],
        "client": [p.client_id for p in rest],
    }
    settle(judge(rest, await fetch(conn, _EXPLAIN, params), _why_not))


def _why_not(row: dict[str, Any], p: Pending[ClaimOut]) -> ClaimOut:
    if row["id"] is not None and row["member_id"] == p.claimant and row["client_id"] == p.client_id:
        return _claim_out(row, p.serial)  # the same claim again: answered as the first time
    if row["member_status"] == "erased":  # erased while the claim was in flight
        raise Unauthorized("the membership was erased", code="member_erased")
    if row["member_status"] != "active":  # frozen while the claim was in flight
        raise Forbidden("this membership is frozen", code="member_frozen")
    if row["batch_void"]:  # voided since the verification (or its process's batch cache)
        refuse(void_answer(p.serial, p.lang))
    if row["client_code"] is not None and row["client_code"] != p.code:
        raise Conflict("this client id was used for another claim", code="client_id_reused")
    if row["client_code"] == p.code and row["client_withdrawn"]:  # (a probe: "try again")
        raise Conflict(
            "此积分已因退货撤回 / this claim was withdrawn: the unit was returned",
            code="claim_withdrawn",
        )
    if row["id"] is not None:
        raise Conflict(
            "此防伪码的积分已被领取 / the points of this code have already been claimed",
            code="already_claimed",
        )
    if row["drawn_by_another"]:  # one owner per code (``app.draws``)
        raise Conflict(
            "此防伪码已被其他会员抽奖 / another member drew this code",
            code="claimed_by_another",
        )
    if row["unit_brand"] is None or row["unit_status"] not in ("active", "sold"):
        raise Unprocessable("this unit cannot earn points", code="not_claimable")
    if row["unit_brand"] != p.brand_id:
        raise Unprocessable("this product is not of your membership's brand", code="other_brand")
    if row["unit_disposition"] in NOT_FOR_SALE:  # ``SPOILT``: wherever it moved after
        raise Conflict(  # review R6: returned to the store, it is no sale of the member's
            "此产品已因损坏或过期被退回 / this unit was returned damaged or expired",
            code="not_sellable",
        )
    if row["returned_unsold"]:  # after not_sellable: a unit returned damaged is never sold again
        raise Conflict(
            "此产品已被退回，门店再次售出后方可领取积分 / this unit was returned: it earns points "
            "once the store sells it again",
            code="not_sold_again",
        )
    if not row["rule_points"]:
        raise Unprocessable("this product earns no points", code="no_points")
    if row["unit_channel"] is None:  # a probe (SPEC B4): it earned the product's default points
        raise Unprocessable(  # — a code printed on a fake from a leaked file would too
            "此产品尚未发往销售渠道，不能领取积分 / this unit was never shipped to a seller: it "
            "earns no points",
            code="not_shipped",
        )
    raise Conflict("the claim met another one; try again", code="claim_conflict")
