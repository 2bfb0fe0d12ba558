"""The ring detector (B5): rules over the recent claims that put the parties they flag on hold
(``app.forensics.holds``). A periodic job in every worker (``workers.forensics``), one process at
a time (``Lock.FORENSICS_RINGS``), and ``tracecode forensics rings`` to run it now.

Rules, each over the last ``RING_WINDOW_MINUTES`` (each party's evidence only after its last
decided hold counts, before any grouping and threshold: a reviewer who released a party is not
overruled by the evidence already judged, nor by it and one new scan):

* ``shared_device`` (members): ``RING_SHARED_DEVICE_MEMBERS`` or more members signed in and
  checking codes with the right PIN — a points claim's verification, or a member's PIN check —
  from one client address (its IP and user agent as recorded). Every member of the group is held.
* ``distant_stores`` (clerks): a clerk whose rebate claims were refused for units supposed to be
  sold at ``RING_DISTANT_STORES`` or more other stores (or holders) in other provinces than the
  clerk's store: codes collected from far away and claimed in bulk.
* ``verified_elsewhere`` (clerks and members): ``RING_VERIFIED_ELSEWHERE_CLAIMS`` or more claims
  of codes verified with the right PIN in another province (than the clerk's store; than the
  member's own province) by someone else within ``RING_VERIFIED_BEFORE_MINUTES`` before the
  claim: codes bought from the consumers who checked them.

Unknown geography is not elsewhere: a store with no province recorded (``province_name`` is
optional), a member with none, or a check of no province counts for neither geographic rule (a
probe: ``IS DISTINCT FROM`` put a store of no province in another province than every check).

Each run first settles held claims of holds decided meanwhile (``holds.sweep``): the claim a
round wrote ``held`` just as its hold was released; a hold whose claims cannot be credited is set
aside in the dead letters (``fraud_settle``) and the others are settled. The settling and each
rule run in a transaction of their own: one failing is logged and counted (``failed``), and the
others run.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from app.config import Settings
from app.db import Conn
from app.forensics import holds
from app.forensics.schemas import RingRunOut
from app.locks import Lock, run_alone

log = logging.getLogger("tracecode.forensics")

# Each party's last decision (its holds released or confirmed): only its evidence after that
# counts, before any grouping and threshold — a released party's old evidence, which the
# reviewer judged, never adds up with one new scan to hold it again.
_DECIDED = """LEFT JOIN (
    SELECT party_id, max(decided_at) AS decided_at FROM fraud_holds
     WHERE party_kind = %(kind)s AND state <> 'open' GROUP BY party_id
) d ON d.party_id = {party}"""
_AFTER_DECIDED = "(d.decided_at IS NULL OR {at} > d.decided_at)"

# A check with the right PIN (``app.verify.fallback.RIGHT_PIN``): a PIN was entered and the
# result is genuine or suspicious. Without ``pin_given`` a PIN-less scan of a code never shipped
# or over the repeat threshold (``suspicious``) would count: it proves nothing about the pack.
_RIGHT_PIN = "v.pin_given AND v.result IN ('genuine', 'suspicious')"

_SHARED_DEVICE = f"""
WITH g AS (
    SELECT v.brand_id, host(v.client_ip) AS ip, coalesce(v.user_agent, '') AS agent,
           array_agg(DISTINCT v.member_id) AS members, count(*) AS checks
    FROM verifications v {_DECIDED.format(party="v.member_id")}
    WHERE v.at >= %(since)s AND v.member_id IS NOT NULL AND v.client_ip IS NOT NULL
      AND v.brand_id IS NOT NULL AND {_RIGHT_PIN}
      AND {_AFTER_DECIDED.format(at="v.at")}
    GROUP BY 1, 2, 3
    HAVING count(DISTINCT v.member_id) >= %(n)s
)
SELECT g.brand_id, m.member_id AS party_id,
       jsonb_build_object('client_ip', g.ip, 'user_agent', g.agent, 'members', g.members,
                          'checks', g.checks, 'window_minutes', %(window)s) AS evidence
FROM g, unnest(g.members) AS m(member_id)
"""

_DISTANT_STORES = f"""
SELECT r.brand_id, r.clerk_id AS party_id,
       jsonb_build_object('stores', array_agg(DISTINCT elsewhere.id),
                          'provinces', array_agg(DISTINCT elsewhere.province_name),
                          'refusals', count(*), 'window_minutes', %(window)s) AS evidence
FROM rebate_refusals r
JOIN orgs here ON here.id = r.store_id
JOIN orgs elsewhere ON elsewhere.id = coalesce(r.expected_store_id, r.holder_org_id)
{_DECIDED.format(party="r.clerk_id")}
WHERE r.at >= %(since)s AND elsewhere.id <> r.store_id
  -- unknown geography is not elsewhere: both stores' provinces known (a probe: a store of no
  -- province recorded was "in another province" than every store)
  AND here.province_name IS NOT NULL AND elsewhere.province_name IS NOT NULL
  AND elsewhere.province_name <> here.province_name
  AND {_AFTER_DECIDED.format(at="r.at")}
GROUP BY 1, 2
HAVING count(DISTINCT elsewhere.id) >= %(n)s
"""

# A code verified (right PIN) elsewhere shortly before the claim, by someone else: not the
# claim's own verification (a rebate claim's retry key names the claimer; a member's carries
# the member's id).
_ELSEWHERE = f"""EXISTS (
    SELECT 1 FROM verifications v
    WHERE v.code_id = c.code_id AND v.at >= c.claimed_at - %(before)s AND v.at < c.claimed_at
      AND {_RIGHT_PIN} AND v.province IS NOT NULL
      AND v.province IS DISTINCT FROM {{province}} AND {{other}})"""

_NOT_THE_CLERKS = (
    "(v.retry IS NULL OR v.retry NOT LIKE 'tracecode-rebate-claims:' || c.clerk_id || ':%%')"
)

_VERIFIED_ELSEWHERE_CLERKS = f"""
SELECT c.brand_id, c.clerk_id AS party_id,
       jsonb_build_object('claims', count(*), 'codes', (array_agg(c.code_id ORDER BY c.id))[1:20],
                          'window_minutes', %(window)s) AS evidence
FROM rebate_claims c JOIN orgs s ON s.id = c.store_id {_DECIDED.format(party="c.clerk_id")}
WHERE c.claimed_at >= %(since)s AND s.province_name IS NOT NULL  -- as a member's province
  AND {_AFTER_DECIDED.format(at="c.claimed_at")}
  AND {_ELSEWHERE.format(province="s.province_name", other=_NOT_THE_CLERKS)}
GROUP BY 1, 2
HAVING count(*) >= %(n)s
"""

_VERIFIED_ELSEWHERE_MEMBERS = f"""
SELECT c.brand_id, c.member_id AS party_id,
       jsonb_build_object('claims', count(*), 'codes', (array_agg(c.code_id ORDER BY c.id))[1:20],
                          'window_minutes', %(window)s) AS evidence
FROM point_claims c JOIN members m ON m.id = c.member_id {_DECIDED.format(party="c.member_id")}
WHERE c.claimed_at >= %(since)s AND m.province IS NOT NULL
  AND {_AFTER_DECIDED.format(at="c.claimed_at")}
  AND {_ELSEWHERE.format(province="m.province", other="v.member_id IS DISTINCT FROM c.member_id")}
GROUP BY 1, 2
HAVING count(*) >= %(n)s
"""


def _rules(settings: Settings) -> list[tuple[str, str, str, int]]:
    """(rule, party kind, SQL, threshold) of every rule."""
    return [
        ("shared_device", "member", _SHARED_DEVICE, settings.ring_shared_device_members),
        ("distant_stores", "clerk", _DISTANT_STORES, settings.ring_distant_stores),
        (
            "verified_elsewhere",
            "clerk",
            _VERIFIED_ELSEWHERE_CLERKS,
            settings.ring_verified_elsewhere_claims,
        ),
        (
            "verified_elsewhere",
            "member",
            _VERIFIED_ELSEWHERE_MEMBERS,
            settings.ring_verified_elsewhere_claims,
        ),
    ]


async def detect_rings(conn: Conn, settings: Settings, *, wait: bool = False) -> RingRunOut:
    """One run: the held claims of holds decided meanwhile settled first, then every rule;
    ``ran`` false when another process is running it (``wait``: wait for it instead).
    ``conn``: autocommit; the settling and each rule's holds commit in a transaction of their
    own, and one failing (logged, counted ``failed``) never stops the others."""

    async def work() -> RingRunOut:
        settled = failed = 0
        try:  # a hold that cannot be settled is set aside (holds.sweep): the others settle
            settled = await holds.sweep(conn)
        except Exception:
            failed += 1
            log.exception("settling the claims of decided holds failed")
        window = settings.ring_window_minutes
        now = (await (await conn.execute("SELECT now() AS now")).fetchone())["now"]  # type: ignore[index]
        params: dict[str, Any] = {
            "since": now - timedelta(minutes=window),
            "window": window,
            "before": timedelta(minutes=settings.ring_verified_before_minutes),
        }
        held: dict[str, int] = {}
        for rule, kind, sql, threshold in _rules(settings):
            try:
                async with conn.transaction():
                    opened = await _apply(conn, rule, kind, sql, {**params, "n": threshold})
            except Exception:  # one rule's failure never stops the others
                failed += 1
                log.exception("ring rule %s (%s) failed", rule, kind)
                continue
            if opened:
                held[rule] = held.get(rule, 0) + opened
        return RingRunOut(ran=True, held=held, settled=settled, failed=failed)

    out = await run_alone(conn, Lock.FORENSICS_RINGS, work, wait=wait)
    return out if out is not None else RingRunOut(ran=False)


async def _apply(conn: Conn, rule: str, kind: str, sql: str, params: dict[str, Any]) -> int:
    """One rule run: the parties it finds put on hold; how many holds were opened."""
    rows = await (await conn.execute(sql, {**params, "kind": kind})).fetchall()
    by_brand: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for row in rows:
        by_brand.setdefault(row["brand_id"], []).append((row["party_id"], row["evidence"]))
    opened = 0
    for brand, found in by_brand.items():
        opened += await holds.open_holds(conn, brand, kind, rule, found)
    return opened
