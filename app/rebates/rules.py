"""Rebate rules (K2 rebates): the rebate of each product in yuan, overridable per agent.

A rule with ``agent_id`` NULL is the product's default; a rule for an agent overrides it for the
organisations under it. The amount in force at an organisation is the rule of the nearest agent
on its path (itself when it is one), else the default (``app.logistics.center.rebate_in_force``,
one SQL expression): a claim is paid the amount in force at the claiming store (SPEC R1: "the
product's rule for the store's agent"), which the management center's stock rows show at each
organisation. Amounts are multiples of 0.5 from 0 to 100,000 (the schema refuses anything else
with 400 naming ``amount``; the table's CHECK says the same); 0 or no rule earns nothing. A
claim copies the amount in force when it is made, so a change applies to later claims only;
every change is audited with its before and after, and the audit log (entity ``rebate_rule``)
is the rules' history.

Rules are the brand's own staff's (``rebates.rules``, held at brand level; 403
``brand_staff_only`` below the brand whatever role grants it, as points rules): the product must
be one of the brand's (422 ``unknown_product``) and the agent an organisation of kind ``agent``
in the caller's tree (422 ``unknown_org``: a rule for a distributor, a branch, a store or a
warehouse would never be paid, as the amount in force is the nearest AGENT's rule — a probe:
such a rule was accepted; points rules still take any organisation but the brand); another
brand's rule answers as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.catalog.service import check_rule_target
from app.db import Conn
from app.errors import NotFound, Unprocessable
from app.locks import Lock, xact_lock
from app.members.principal import brand_of_staff
from app.paging import Page, fetch_page
from app.rebates.schemas import RuleIn, RuleOut

PERMISSION = "rebates.rules"

_RULE = """r.id, r.product_id, p.name AS product_name, r.agent_id, a.name AS agent_name,
    r.amount::float8 AS amount, r.updated_at"""
_SOURCE = """rebate_rules r JOIN products p ON p.id = r.product_id
    LEFT JOIN orgs a ON a.id = r.agent_id"""


async def _rule(conn: Conn, where: str, params: tuple[Any, ...]) -> RuleOut | None:
    row = await (
        await conn.execute(f"SELECT {_RULE} FROM {_SOURCE} WHERE {where}", params)
    ).fetchone()
    return RuleOut(**row) if row else None


async def _check_agent(conn: Conn, org_id: int) -> None:
    """An override's organisation (in the caller's tree: ``check_rule_target``) is an agent
    (422 ``unknown_org``): the amount in force is the nearest agent's rule
    (``app.logistics.center.rebate_in_force``), so any other's would never be paid."""
    row = await (await conn.execute("SELECT kind FROM orgs WHERE id = %s", (org_id,))).fetchone()
    if row is None or row["kind"] != "agent":
        raise Unprocessable(
            "no such agent in your tree: a rebate override is an agent's",
            code="unknown_org",
            details={"field": "agent_id"},
        )


async def put_rule(conn: Conn, actor: Principal, data: RuleIn) -> tuple[RuleOut, bool]:
    """Set the rebate of a product (for one agent, or its default); (rule, created). The rule
    in place before is locked and audited as ``before``; the amount it has already changes
    nothing."""
    brand_of_staff(actor, PERMISSION, "rebate rules are set")
    await check_rule_target(conn, actor, data.product_id, data.agent_id)
    if data.agent_id is not None:
        await _check_agent(conn, data.agent_id)
    await xact_lock(conn, Lock.REBATE_RULES, data.product_id)  # FOR UPDATE locks no rule yet
    before = await _rule(
        conn,
        "r.product_id = %s AND r.agent_id IS NOT DISTINCT FROM %s FOR UPDATE OF r",
        (data.product_id, data.agent_id),
    )
    if before is not None and before.amount == data.amount:  # saved unchanged: no write and
        # no row, as a PATCH {} (a probe: another ``update`` row, before and after the same)
        return before, False
    row = await (
        await conn.execute(
            """INSERT INTO rebate_rules (brand_id, product_id, agent_id, amount, updated_by)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (product_id, agent_id) DO UPDATE
                  SET amount = EXCLUDED.amount, updated_by = EXCLUDED.updated_by,
                      updated_at = now()
               RETURNING id""",
            (actor.brand_id, data.product_id, data.agent_id, data.amount, actor.person),
        )
    ).fetchone()
    assert row is not None
    out = await _rule(conn, "r.id = %s", (row["id"],))
    assert out is not None
    created = before is None
    await audit.record(
        conn,
        actor,
        "create" if created else "update",
        "rebate_rule",
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
    """The brand's rules by product, each product's default first, then its overrides."""
    brand_of_staff(actor, PERMISSION, "rebate rules are set")
    where = ["r.brand_id = %(brand)s"]
    if product_id is not None:
        where.append("r.product_id = %(product)s")
    if agent_id is not None:
        where.append("r.agent_id = %(agent)s")
    return await fetch_page(
        conn,
        columns=_RULE,
        source=_SOURCE,
        where=where,
        params={"brand": actor.brand_id, "product": product_id, "agent": agent_id},
        order="p.name, r.product_id, a.name NULLS FIRST, r.agent_id",
        page=page,
        per_page=per_page,
        make=lambda row: RuleOut(**row),
    )


async def delete_rule(conn: Conn, actor: Principal, rule_id: int) -> None:
    """Remove a rule: an override's units fall back to the default, a default's earn nothing."""
    brand_of_staff(actor, PERMISSION, "rebate rules are set")
    before = await _rule(
        conn, "r.id = %s AND r.brand_id = %s FOR UPDATE OF r", (rule_id, actor.brand_id)
    )
    if before is None:
        raise NotFound("rule not found")
    await conn.execute("DELETE FROM rebate_rules WHERE id = %s", (rule_id,))
    await audit.record(conn, actor, "delete", "rebate_rule", rule_id, before=before)
