"""Organisations from the ERP: agents, distributors, stores … with their parent, region, address,
contact and position (``OrgRow``), by ERP code, through the organisation service.

A row's parent is named by ERP code: an organisation the caller administers, or a row of the
same file — rows are applied parents first (whatever their order in the file), and a row whose
new parent was rejected is rejected too (``parent_rejected``); rows whose parents name each other
in a ring are rejected (``parent_cycle``). A changed parent moves the organisation with its
subtree (``move_org``: same brand, allowed kinds, no cycle); a changed ``status`` (de)activates it
(``set_status``): activations before the file's other rows, deactivations after them, so a file
that closes an agent can still create or move its stores (a probe: a closed agent's closed store
was refused ``parent_inactive`` on every import, and a store moved out of an agent the same file
closed moved or not by the rows' order). A deactivation's rules are tried with the rest of its
row, which is rejected whole if they refuse it. An ERP code held by an organisation of the brand
that the caller does not administer is ``erp_code_taken``; codes are per brand (migration 0045),
so other brands' codes are never looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.auth.principal import Principal
from app.db import Conn
from app.erp.masterdata import Importer, attempt, differences, each_row, given, values_of
from app.erp.rows import Item, Spec
from app.erp.schemas import OrgRow
from app.locks import Lock, xact_lock
from app.orgs.schemas import OrgIn, OrgPatch
from app.orgs.service import create_org, move_org, set_status, update_org

SPEC = Spec(
    entity="orgs",
    row_type=OrgRow,
    text_columns=frozenset({"name", "province_name", "city_name", "address", "contact_name"}),
    max_rows=15_000,  # 3-4.5 ms a row (bench/RESULTS.md): about a minute, the import lock held
)
_FIELDS = (
    "name",
    "province_code",
    "province_name",
    "city_code",
    "city_name",
    "address",
    "contact_name",
    "contact_phone",
    "latitude",
    "longitude",
)
_KNOWN = """SELECT o.id, o.parent_id, o.kind, o.path, o.status, o.erp_code, o.name,
       o.province_code, o.province_name, o.city_code, o.city_name, o.address, o.contact_name,
       o.contact_phone, o.latitude, o.longitude
    FROM orgs o WHERE o.erp_code = ANY(%s) AND o.path LIKE %s"""  # codes are per brand


@dataclass(slots=True)
class _Run:
    """What one import knows: the organisations its codes name (before it), the ERP codes of
    the file's rows (good or not), the ids of the rows applied so far and the rows whose
    deactivation waits for the file's other rows."""

    conn: Conn
    actor: Principal
    known: dict[str, dict[str, Any]]
    in_file: set[str]
    applied: dict[str, int] = field(default_factory=dict)
    closing: list[Item] = field(default_factory=list)

    def administers(self, row: dict[str, Any] | None) -> bool:
        return row is not None and row["path"].startswith(self.actor.admin_scope)

    def save(self) -> tuple[dict[str, int], list[Item]]:
        """What ``each_row`` puts back when it undoes a chunk of rows."""
        return dict(self.applied), list(self.closing)

    def restore(self, saved: tuple[dict[str, int], list[Item]]) -> None:
        self.applied, self.closing = saved


async def apply(conn: Conn, actor: Principal, items: list[Item], dry_run: bool) -> None:
    """Apply the good rows, parents first (activations first of all), then the deactivations.

    The brand's role-name lock first (``Lock.ROLE_NAMES``: before any organisation's or user's
    row): moves, creations and status changes of later rows take it, and an earlier row's update
    has locked its organisation's row by then — a move into that organisation elsewhere, holding
    the lock and waiting for the row, could deadlock with it (a review; not reproduced)."""
    await xact_lock(conn, Lock.ROLE_NAMES, actor.brand_id)
    good = {item.data.erp_code: item for item in items if item.ok}
    codes = set(good) | {
        item.data.parent_erp_code for item in good.values() if given(item.data, "parent_erp_code")
    }
    brand = f"/{actor.brand_id}/%"
    rows = await (await conn.execute(_KNOWN, (sorted(codes), brand))).fetchall()
    in_file = {item.erp_code for item in items if item.erp_code}
    run = _Run(conn, actor, {row["erp_code"]: row for row in rows}, in_file)
    await each_row(conn, _parents_first(good, run.known), lambda item: _apply_row(run, item), run)
    await each_row(conn, list(run.closing), lambda item: _close(run, item))


def _parent_code(item: Item) -> str | None:
    data = item.data
    return data.parent_erp_code if given(data, "parent_erp_code") else None


def _activates(item: Item, known: dict[str, dict[str, Any]]) -> bool:
    """Whether the row reactivates an organisation that is inactive."""
    current = known.get(item.data.erp_code)
    return current is not None and item.data.status == "active" and current["status"] != "active"


def _parents_first(good: dict[str, Item], known: dict[str, dict[str, Any]]) -> list[Item]:
    """The rows ordered by their depth within the file (a row whose parent is not in the file
    is at depth 0), those reactivating an organisation (below none but such rows of the file)
    before all others: a store may move out of an agent a row further down reopens. Rows on a
    ring of parents, or below one, are rejected."""
    depth: dict[str, int | None] = {}
    for start in good:
        chain: dict[str, int] = {}
        code: str | None = start
        while code is not None and code not in depth:
            if code in chain:  # a ring: every row on it from here
                for member in list(chain)[chain[code] :]:
                    depth[member] = None
                break
            chain[code] = len(chain)
            parent = _parent_code(good[code])
            if parent not in good:
                depth[code] = 0
                break
            code = parent
        for member in reversed(chain):
            if member not in depth:
                above = depth[_parent_code(good[member])]  # type: ignore[index]
                depth[member] = None if above is None else above + 1
    ordered = []
    for code, item in good.items():
        if depth[code] is None:
            message = f"the parents of {code} lead back to it within this file"
            item.fail("parent_erp_code", "parent_cycle", message)
        else:
            ordered.append(item)
    ordered.sort(key=lambda item: (depth[item.data.erp_code], item.row))
    early: set[str] = set()
    for item in ordered:  # parents first: a parent's row of the file is judged before its own
        parent = _parent_code(item)
        if _activates(item, known) and (parent not in good or parent in early):
            early.add(item.data.erp_code)

    # the reactivations first, parents first, then each after those of the organisations above
    # it now (a store reopened and moved out of an agent the file reopens: a probe, refused
    # parent_inactive when its row came first); the other rows keep their order
    def order(item: Item) -> tuple[int, int, int]:
        code = item.data.erp_code
        if code not in early:
            return (1, 0, 0)
        return (0, depth[code] or 0, known[code]["path"].count("/"))

    return sorted(ordered, key=order)


def _parent_id(run: _Run, item: Item, code: str, current: dict[str, Any] | None) -> int | None:
    """The id of the row's parent, or ``None`` with the row rejected. The parent it already has
    is no move: one the caller does not administer too (a probe: an agent's administrator
    importing its own record with its brand as parent was ``unknown_parent``)."""
    if code in run.applied:
        return run.applied[code]
    row = run.known.get(code)
    if row is not None and current is not None and row["id"] == current["parent_id"]:
        return int(row["id"])
    if row is None and code in run.in_file:
        message = f"the parent {code} is a row of this file that was rejected"
        item.fail("parent_erp_code", "parent_rejected", message)
        return None
    if not run.administers(row):
        message = f"no organisation {code} among those you administer, nor in this file"
        item.fail("parent_erp_code", "unknown_parent", message)
        return None
    assert row is not None
    return int(row["id"])


async def _apply_row(run: _Run, item: Item) -> None:
    data: OrgRow = item.data
    if not item.ok:  # rejected on the way (a ring)
        return
    current = run.known.get(data.erp_code)
    if current is not None and not run.administers(current):
        message = f"ERP code {data.erp_code} belongs to an organisation you do not administer"
        item.fail("erp_code", "erp_code_taken", message)
        return
    parent = _parent_code(item)
    parent_id = _parent_id(run, item, parent, current) if parent is not None else None
    if not item.ok:
        return
    if current is None:
        await _create(run, item, parent_id)
    else:
        await _update(run, item, current, parent_id)
    if item.ok:
        assert item.id is not None
        run.applied[data.erp_code] = item.id


async def _create(run: _Run, item: Item, parent_id: int | None) -> None:
    data: OrgRow = item.data
    for column in ("kind", "name", "parent_erp_code"):
        if not given(data, column):
            item.fail(column, "missing_value", f"{column} is required for a new organisation")
    if not item.ok:
        return
    fields = values_of(data, _FIELDS)
    org = OrgIn(kind=data.kind, erp_code=data.erp_code, parent_id=parent_id, **fields)  # type: ignore[arg-type]

    async def work() -> int:
        out = await create_org(run.conn, run.actor, org)
        if data.status == "inactive":
            await _try_closing(run, out.id)
        return out.id

    org_id = await attempt(run.conn, item, work)
    if org_id is not None:
        item.result, item.id = "created", org_id
        if data.status == "inactive":
            run.closing.append(item)


async def _update(run: _Run, item: Item, current: dict[str, Any], parent_id: int | None) -> None:
    data: OrgRow = item.data
    if given(data, "kind") and data.kind != current["kind"]:
        message = f"{data.erp_code} is a {current['kind']}; the kind of an organisation stays"
        item.fail("kind", "kind_changed", message)
        return
    changes = differences(values_of(data, _FIELDS), current)
    move = parent_id is not None and parent_id != current["parent_id"]
    status = given(data, "status") and data.status != current["status"]
    item.id = current["id"]
    if not (changes or move or status):
        item.result = "unchanged"
        return

    closing = status and data.status == "inactive"

    async def work() -> bool:
        if status and not closing:
            await set_status(run.conn, run.actor, current["id"], data.status)  # type: ignore[arg-type]
        if changes:
            await update_org(run.conn, run.actor, current["id"], OrgPatch(**changes))
        if move:
            assert parent_id is not None
            await move_org(run.conn, run.actor, current["id"], parent_id)
        if closing:
            await _try_closing(run, current["id"])
        return True

    if await attempt(run.conn, item, work):
        if closing:
            run.closing.append(item)
        item.result = "updated"
        item.changed = list(changes)
        if move:
            item.changed.append("parent_erp_code")
        if status:
            item.changed.append("status")


async def _try_closing(run: _Run, org_id: int) -> None:
    """Raise what ``set_status`` would refuse a deactivation with (``own_org``,
    ``stronger_account`` …), trying it now and undoing it: the row it belongs to is rejected
    whole rather than applied but for its status."""
    async with run.conn.transaction(force_rollback=True):
        await set_status(run.conn, run.actor, org_id, "inactive")


async def _close(run: _Run, item: Item) -> None:
    """Deactivate a row's organisation after the file's other rows (tried with its row)."""
    assert item.id is not None
    org_id = item.id

    async def work() -> bool:
        await set_status(run.conn, run.actor, org_id, "inactive")
        return True

    await attempt(run.conn, item, work)


IMPORTER = Importer(spec=SPEC, permission="orgs.write", apply=apply)
