"""Fraud holds (B5): a member or a store clerk put on hold — by the ring detector
(``app.forensics.rings``) or by hand — keeps claiming, but credits nothing until a reviewer
decides.

The claim path. Each claim round (``app.members.points._CREDIT``, ``app.rebates.claims._CREDIT``)
looks the claimant up in ``fraud_holds`` with ONE probe of the partial unique index of open
holds (``fraud_holds_open_idx``), inside the round's one statement: no statement added. A claim
of a party on hold is written like any other — its unique key takes the code, exactly once,
ever — with ``hold_id`` and ``hold_state = 'held'``, and nothing is credited: no ledger row and
no balance move for points, no row in the rankings' queue for a rebate (and statements and the
rebate reports skip it), no ``points.claimed`` / ``rebate.claimed`` webhook event (the claims'
triggers skip held claims, migration 0118). The claimant is answered 201 with
``status: under_review``.

Decisions (``fraud.review``, brand staff). ``release``: the hold's state goes from open to
released under its row lock, then ``settle`` credits its held claims — points: the ledger rows
and balances; rebates: their rows in the rankings' queue — each claim moved from ``held`` to
``released`` by an UPDATE whose row locks make a second release (or a sweep) running at the same
time find it moved already: credited exactly once, however often release is clicked, and
announced then (``points.claimed`` / ``rebate.claimed``, written by the functions the claims'
triggers call: migration 0123). A held claim (or draw) of a code whose batch is void by then
is ``rejected`` instead, as the claim rounds refuse it (reason ``void``): nothing credited,
queued, announced or drawn; the release's audit row counts them (``rejected: {"void": n}``).
``confirm``: the hold's claims become ``rejected`` (never credited nor announced; their codes
stay taken), audited. A
decided hold is answered as it is when decided again the same way, and 409 ``hold_decided``
the other way.

A claim round that read the hold open just before a release committed writes its claim
``held`` after the release: the periodic sweep (``settle`` of every decided hold,
``workers.forensics``) settles such claims, as it settles any left behind (``sweep``): every
decided hold in one statement of each kind; when that fails for a reason of the data (a claim
whose credit cannot be stored: a balance at the top of its bigint), hold by hold, by halves
(``app.deadletters.abisect``), each part in a transaction of its own — the holds that settle are
credited, a hold that fails alone is set aside in the dead letters (queue ``fraud_settle``, its
payload ``{"hold_id": …}``, the reason) and left out of the sweeps after it until an operator
deletes its letter (after a repair: the next sweep settles it).

Locks: a release (and the sweep) takes them in a consumer's return's order — the rebate claims,
the draws, their prizes, the points claims, the balances last (``settle``) — and an erasure's
(the holds, the draws, the claims, the balance): none waits for a row another holds while that
one waits for a row it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.deadletters import FRAUD_SETTLE, abisect, abury, is_poison, reason_of
from app.errors import Conflict, NotFound
from app.forensics.schemas import DecisionIn, HoldClaims, HoldIn, HoldOut
from app.localtime import TODAY_SQL
from app.members.principal import brand_of_staff
from app.paging import Page, fetch_page

PERMISSION = "fraud.review"
log = logging.getLogger("tracecode.forensics")

_COLUMNS = """h.id, h.brand_id, h.party_kind, h.party_id, h.rule, h.evidence, h.note,
    h.decision_note, h.state,
    h.created_by, h.created_at, h.decided_by, h.decided_at,
    (SELECT u.username FROM users u WHERE h.party_kind = 'clerk' AND u.id = h.party_id)
        AS party_name,
    (SELECT count(*) FILTER (WHERE hold_state = 'held') || ',' ||
            count(*) FILTER (WHERE hold_state = 'released') || ',' ||
            count(*) FILTER (WHERE hold_state = 'rejected')
       FROM (SELECT hold_state FROM point_claims WHERE hold_id = h.id
             UNION ALL
             SELECT hold_state FROM rebate_claims WHERE hold_id = h.id
             UNION ALL
             SELECT hold_state FROM draws WHERE hold_id = h.id) c) AS claim_counts"""


def _hold(row: dict[str, Any]) -> HoldOut:
    held, released, rejected = (int(n) for n in row["claim_counts"].split(","))
    return HoldOut(
        id=row["id"],
        brand_id=row["brand_id"],
        party_kind=row["party_kind"],
        party_id=row["party_id"],
        party_name=row["party_name"],
        rule=row["rule"],
        evidence=row["evidence"],
        note=row["note"],
        decision_note=row["decision_note"],
        state=row["state"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        claims=HoldClaims(held=held, released=released, rejected=rejected),
    )


async def list_holds(
    conn: Conn,
    actor: Principal,
    *,
    state: str | None,
    party_kind: str | None,
    page: int,
    per_page: int,
) -> Page[HoldOut]:
    """The brand's holds, newest first."""
    brand = brand_of_staff(actor, PERMISSION, "fraud holds are reviewed")
    where = ["h.brand_id = %(brand)s"]
    if state:
        where.append("h.state = %(state)s")
    if party_kind:
        where.append("h.party_kind = %(kind)s")
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source="fraud_holds h",
        where=where,
        params={"brand": brand, "state": state, "kind": party_kind},
        order="h.created_at DESC, h.id DESC",
        page=page,
        per_page=per_page,
        make=_hold,
    )


async def get_hold(conn: Conn, actor: Principal, hold_id: int) -> HoldOut:
    brand = brand_of_staff(actor, PERMISSION, "fraud holds are reviewed")
    return await _read(conn, brand, hold_id)


async def _read(conn: Conn, brand: int, hold_id: int) -> HoldOut:
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM fraud_holds h WHERE h.id = %s AND h.brand_id = %s",
            (hold_id, brand),
        )
    ).fetchone()
    if row is None:  # another brand's is not found either
        raise NotFound("hold not found", code="hold_not_found")
    return _hold(row)


# The party, if it is the brand's: a member not erased, or a user of an organisation in the
# brand's tree (a store's clerk, typically).
_PARTY = {
    "member": "SELECT id FROM members WHERE id = %s AND brand_id = %s AND status <> 'erased'",
    "clerk": """SELECT u.id FROM users u JOIN orgs o ON o.id = u.org_id
                WHERE u.id = %s AND o.path LIKE '/' || %s || '/%%'""",
}

_OPEN = """
INSERT INTO fraud_holds (brand_id, party_kind, party_id, rule, evidence, note, created_by)
VALUES (%(brand)s, %(kind)s, %(party)s, %(rule)s, %(evidence)s, %(note)s, %(by)s)
ON CONFLICT (party_kind, party_id) WHERE state = 'open' DO NOTHING
RETURNING id
"""


async def put_on_hold(conn: Conn, actor: Principal, data: HoldIn) -> HoldOut:
    """Put a member or a clerk of the brand on hold by hand (rule ``manual``); 409
    ``already_on_hold`` (naming the open hold) when it is."""
    brand = brand_of_staff(actor, PERMISSION, "fraud holds are reviewed")
    found = await (await conn.execute(_PARTY[data.party_kind], (data.party_id, brand))).fetchone()
    if found is None:
        raise NotFound(f"{data.party_kind} not found", code="party_not_found")
    row = await (
        await conn.execute(
            _OPEN,
            {
                "brand": brand,
                "kind": data.party_kind,
                "party": data.party_id,
                "rule": "manual",
                "evidence": Jsonb({}),
                "note": data.note,
                "by": actor.person,  # a key's: its maker (NULL is the ring detector)
            },
        )
    ).fetchone()
    if row is None:
        held = await (
            await conn.execute(
                "SELECT id FROM fraud_holds WHERE party_kind = %s AND party_id = %s "
                "AND state = 'open'",
                (data.party_kind, data.party_id),
            )
        ).fetchone()
        raise Conflict(
            "this party is on hold already",
            code="already_on_hold",
            details={"hold_id": held["id"] if held else None},
        )
    out = await _read(conn, brand, row["id"])
    await audit.record(
        conn, actor, "create", "fraud_hold", out.id, after=_audited(out), org_id=brand
    )
    return out


async def open_holds(
    conn: Conn, brand_id: int, kind: str, rule: str, found: list[tuple[int, dict[str, Any]]]
) -> int:
    """Holds of the ring detector (no author) for the parties ``found`` (id, evidence): a party
    on hold already keeps its hold. How many were opened."""
    opened = 0
    for party, evidence in found:
        row = await (
            await conn.execute(
                _OPEN,
                {
                    "brand": brand_id,
                    "kind": kind,
                    "party": party,
                    "rule": rule,
                    "evidence": Jsonb(evidence),
                    "note": "",
                    "by": None,
                },
            )
        ).fetchone()
        opened += row is not None
    return opened


_DECIDE = """
UPDATE fraud_holds SET state = %(state)s, decided_by = %(by)s, decided_at = now(),
                       decision_note = %(note)s
WHERE id = %(id)s AND brand_id = %(brand)s AND state = 'open'
RETURNING id
"""


async def release(conn: Conn, actor: Principal, hold_id: int, data: DecisionIn) -> HoldOut:
    """Release the hold: its held claims are credited, once (see the module docstring)."""
    return await _decide(conn, actor, hold_id, data, "released")


async def confirm(conn: Conn, actor: Principal, hold_id: int, data: DecisionIn) -> HoldOut:
    """Confirm the hold: its held claims are rejected (never credited), audited."""
    return await _decide(conn, actor, hold_id, data, "confirmed")


async def _decide(
    conn: Conn, actor: Principal, hold_id: int, data: DecisionIn, state: str
) -> HoldOut:
    brand = brand_of_staff(actor, PERMISSION, "fraud holds are reviewed")
    before = await _read(conn, brand, hold_id)  # 404 first
    decided = await (
        await conn.execute(
            _DECIDE,
            {"state": state, "by": actor.person, "note": data.note, "id": hold_id, "brand": brand},
        )
    ).fetchone()
    if decided is None:  # decided before (or meanwhile, by a concurrent click)
        now = await _read(conn, brand, hold_id)
        if now.state == state:
            return now  # the same decision again: answered as it is, nothing credited again
        raise Conflict(
            f"this hold was {now.state} already", code="hold_decided", details={"state": now.state}
        )
    settled, void = await _settle(conn, [hold_id])
    out = await _read(conn, brand, hold_id)
    after = {**_audited(out), "settled": settled}
    if void:  # why a released hold's claims were rejected: their batch is void (the rounds' word)
        after["rejected"] = {"void": void}
    action = "release" if state == "released" else "confirm"
    await audit.record(
        conn, actor, action, "fraud_hold", hold_id, before=_audited(before), after=after,
        org_id=brand,
    )  # fmt: skip
    return out


# What of a member's evidence is personal (the ring detector's copies of verification records'
# fields): kept on the hold, for its reviewers, until the erasure of the member or the end of
# its retention (``app.retention``); never in the audit log, which neither clears and which
# more staff read (``audit.read``). So with the staff's notes, words about the party (a phone
# rung, an address: a probe read them there after the erasure had cleared the hold's own):
# the hold keeps them beside who wrote them (``created_by``, ``decided_by``).
CLIENT_DETAILS = ("client_ip", "user_agent")
NOTES = ("note", "decision_note")


def _audited(hold: HoldOut) -> dict[str, Any]:
    """The hold as its audit row records it: no notes, the evidence without
    ``CLIENT_DETAILS``."""
    out: dict[str, Any] = {k: v for k, v in msgspec.to_builtins(hold).items() if k not in NOTES}
    evidence = out.get("evidence")
    if isinstance(evidence, dict):
        out["evidence"] = {k: v for k, v in evidence.items() if k not in CLIENT_DETAILS}
    return out


def _settled_state(t: str) -> str:
    """The state a held claim or draw (alias ``t``, of a decided hold ``h``) settles in:
    ``released`` with its hold, but ``rejected`` — as ``confirm`` settles it — when its code's
    batch is void by then: a void batch's units earn no rebate, points or prize from then on
    (README, "Voiding a batch"), the claim rounds refuse them (``not_genuine``, reason
    ``void``), and a held claim is no exception (a probe: a release paid the claim of a unit
    whose print file had leaked — the fraud the hold had kept it back for)."""
    void = (
        f"EXISTS (SELECT 1 FROM code_batches b WHERE b.batch_no = {t}.code_id >> 32 "
        "AND b.state = 'void')"
    )
    return f"CASE WHEN h.state = 'released' AND NOT {void} THEN 'released' ELSE 'rejected' END"


def _voided(t: str) -> str:
    """In the RETURNING of a settle: the claim (alias ``t``, its new row) was rejected by the
    release because its batch is void (``_settled_state``)."""
    return f"(h.state = 'released' AND {t}.hold_state = 'rejected')"


# The held claims of decided holds (``%(ids)s``, or every decided hold: the sweep) settled, each
# ONCE: the UPDATE moves a claim out of ``held`` under its row lock, so a concurrent settle waits
# and then finds it moved. Released points: a ledger row each (kind claim) and the balances, in
# member order as a claim round writes them, and their points.claimed events (the claims'
# trigger skipped them, held); a claim withdrawn meanwhile (a consumer's return) is released but
# neither credited nor announced. Rejected claims are never announced.
_SETTLE_POINTS = f"""
WITH c AS (
    UPDATE point_claims pc
       SET hold_state = {_settled_state("pc")}
      FROM fraud_holds h
     WHERE pc.hold_state = 'held' AND h.id = pc.hold_id AND h.state <> 'open'
       AND (%(ids)s::bigint[] IS NULL OR h.id = ANY(%(ids)s::bigint[]))
       AND NOT h.id = ANY(%(aside)s::bigint[])
    RETURNING pc AS claim, pc.id, pc.member_id, pc.brand_id, pc.points, pc.hold_state,
              pc.withdrawn_at, {_voided("pc")} AS void
), credit AS MATERIALIZED (
    SELECT * FROM c WHERE hold_state = 'released' AND withdrawn_at IS NULL
), e AS (  -- points.claimed, written as the claims' trigger writes it (migration 0123)
    SELECT webhook_points_claimed(array_agg(claim ORDER BY id)) AS events FROM credit
), l AS (
    INSERT INTO points_ledger (member_id, brand_id, kind, points, claim_id)
    SELECT member_id, brand_id, 'claim', points, id FROM credit ORDER BY id
), b AS (
    INSERT INTO point_balances AS b (member_id, balance, updated_at)
    SELECT member_id, sum(points), clock_timestamp() FROM credit GROUP BY member_id
    ORDER BY member_id
    ON CONFLICT (member_id) DO UPDATE SET balance = b.balance + EXCLUDED.balance,
                                          updated_at = EXCLUDED.updated_at
)
SELECT (SELECT count(*) FROM c) AS n, (SELECT count(*) FILTER (WHERE void) FROM c) AS void,
       (SELECT events FROM e) AS events  -- e: read, so it runs
"""

# Released rebates go to the rankings' queue (the roll-up ranks them; statements take them
# from now on: they skip only held and rejected claims) and are announced (rebate.claimed).
_SETTLE_REBATES = f"""
WITH c AS (
    UPDATE rebate_claims rc
       SET hold_state = {_settled_state("rc")}
      FROM fraud_holds h
     WHERE rc.hold_state = 'held' AND h.id = rc.hold_id AND h.state <> 'open'
       AND (%(ids)s::bigint[] IS NULL OR h.id = ANY(%(ids)s::bigint[]))
       AND NOT h.id = ANY(%(aside)s::bigint[])
    RETURNING rc AS claim, rc.id, rc.hold_state, {_voided("rc")} AS void
), q AS (
    INSERT INTO rebate_tally_queue (claim_id)
    SELECT id FROM c WHERE hold_state = 'released' ON CONFLICT DO NOTHING
), e AS (  -- rebate.claimed, written as the claims' trigger writes it (migration 0123)
    SELECT webhook_rebate_claimed(array_agg(claim ORDER BY id)) AS events
      FROM c WHERE hold_state = 'released'
)
SELECT (SELECT count(*) FROM c) AS n, (SELECT count(*) FILTER (WHERE void) FROM c) AS void,
       (SELECT events FROM e) AS events  -- e: read, so it runs
"""


# Held draws (``app.draws``) settled the same way, each ONCE under its row lock: released ones
# not withdrawn meanwhile (a consumer's return) are drawn now (``app.draws.prizes.award``: the
# prizes' stock at this time, under their locks, taken before the points claims'), rejected
# ones never. The campaign is the one the draw took its code for, whether or not it still runs.
# A draw drawn now is drawn on today's Asia/Shanghai day: ``day`` (the day a prize's daily cap
# counts it on) becomes the release's, returned as such to ``award`` — a probe: a draw held
# yesterday and released today was counted on yesterday's cap, two prizes of a daily cap of 1
# went out today (and one of a cap used up yesterday was refused today). Its ``drawn_at`` stays
# the scan's. No prize counts it yet: its day moves while it has none, before the prizes' locks.
_SETTLE_DRAWS = f"""
UPDATE draws d
   SET hold_state = {_settled_state("d")},
       day = CASE WHEN {_settled_state("d")} = 'released' AND d.withdrawn_at IS NULL
                  THEN {TODAY_SQL} ELSE d.day END
  FROM fraud_holds h
 WHERE d.hold_state = 'held' AND h.id = d.hold_id AND h.state <> 'open'
   AND (%(ids)s::bigint[] IS NULL OR h.id = ANY(%(ids)s::bigint[]))
   AND NOT h.id = ANY(%(aside)s::bigint[])
RETURNING d.id, d.campaign_id, d.member_id, d.brand_id, d.day, d.drawn_at, d.hold_state,
          d.withdrawn_at, {_voided("d")} AS void
"""


async def settle(conn: Conn, hold_ids: list[int] | None, aside: Sequence[int] = ()) -> int:
    """Settle the held claims and draws of the decided holds ``hold_ids`` (None: of every
    decided hold but those ``aside``), in the caller's transaction; how many were settled now.

    In the order a consumer's return takes its locks (``app.logistics.documents``: the rebate
    claim, the draw, its prize, the points claim, the balance last): the rebate claims, the
    draws, the prizes of the released draws' campaigns, the points claims (and their
    balances), then the released draws' prizes drawn (``award``: the prizes locked already, the
    balances again). A review: the draws' prizes were drawn before the points claims were
    settled, so a release held a member's balance (a points prize) while it waited for a held
    claim's row that a return held while it waited for the balance — a deadlock.

    A released hold's claims and draws of a void batch's codes are rejected instead
    (``_settled_state``): nothing credited, queued, announced or drawn."""
    return (await _settle(conn, hold_ids, aside))[0]


async def _settle(
    conn: Conn, hold_ids: list[int] | None, aside: Sequence[int] = ()
) -> tuple[int, int]:
    """``settle``: (how many were settled, how many of them a release rejected because their
    batch is void)."""
    # here, not at the top: the draws import the points claims, which import this package
    from app.draws.prizes import award, lock_prizes

    params = {"ids": hold_ids, "aside": list(aside)}
    n, void = await _settled(conn, _SETTLE_REBATES, params)  # (settled, rejected: void batch)
    draws = await (await conn.execute(_SETTLE_DRAWS, params)).fetchall()
    n += len(draws)
    void += sum(1 for d in draws if d["void"])
    released = sorted(
        (d for d in draws if d["hold_state"] == "released" and d["withdrawn_at"] is None),
        key=lambda d: d["id"],
    )
    if released:
        await lock_prizes(conn, released)
    points, points_void = await _settled(conn, _SETTLE_POINTS, params)
    await award(conn, released, released=True)
    if void + points_void:
        log.info("%d released claims rejected: their batch is void", void + points_void)
    return n + points, void + points_void


async def _settled(conn: Conn, sql: str, params: dict[str, Any]) -> tuple[int, int]:
    """How many claims ``sql`` (``_SETTLE_POINTS`` or ``_SETTLE_REBATES``) settled, and how
    many of them it rejected for their void batch."""
    row = await (await conn.execute(sql, params)).fetchone()
    return (int(row["n"]), int(row["void"])) if row else (0, 0)


# The decided holds with something still held (the sweep's list once it goes hold by hold).
_UNSETTLED = """
SELECT h.id FROM fraud_holds h
 WHERE h.state <> 'open' AND NOT h.id = ANY(%(aside)s::bigint[])
   AND (EXISTS (SELECT 1 FROM point_claims c WHERE c.hold_id = h.id AND c.hold_state = 'held')
        OR EXISTS (SELECT 1 FROM rebate_claims c WHERE c.hold_id = h.id AND c.hold_state = 'held')
        OR EXISTS (SELECT 1 FROM draws d WHERE d.hold_id = h.id AND d.hold_state = 'held'))
 ORDER BY h.id
"""
_ASIDE = "SELECT payload FROM dead_letters WHERE queue = %s"


class _Aside(msgspec.Struct):
    hold_id: int


async def set_aside(conn: Conn) -> list[int]:
    """The holds the sweep set aside (their letters not deleted yet)."""
    ids = set()
    for row in await (await conn.execute(_ASIDE, (FRAUD_SETTLE,))).fetchall():
        try:
            ids.add(msgspec.json.decode(bytes(row["payload"]), type=_Aside).hold_id)
        except msgspec.DecodeError:
            continue  # a letter edited by hand: not ours to read
    return sorted(ids)


async def sweep(conn: Conn) -> int:
    """Settle every decided hold's held claims and draws (the workers' pass, ``conn`` in
    autocommit); how many were settled. One transaction for all; on a failure of the data, hold
    by hold, setting aside those that fail alone (the module docstring). Other failures (the
    database is down, a lock conflict) propagate: the next pass tries again."""
    aside = await set_aside(conn)
    try:
        async with conn.transaction():
            return await settle(conn, None, aside)
    except Exception as exc:
        if not is_poison(exc):
            raise
        log.warning("settling every decided hold at once failed (%s): hold by hold", exc)
    rows = await (await conn.execute(_UNSETTLED, {"aside": aside})).fetchall()
    settled = 0

    async def write(part: Sequence[int]) -> None:
        nonlocal settled
        async with conn.transaction():
            n = await settle(conn, list(part))
        settled += n

    async def dead(hold_id: int, exc: BaseException) -> None:
        log.error("the claims of hold %s cannot be settled, set aside: %s", hold_id, exc)
        payload = msgspec.json.encode(_Aside(hold_id=hold_id))
        await abury(conn, FRAUD_SETTLE, payload, reason_of(exc))

    await abisect([row["id"] for row in rows], write, dead)
    return settled
