"""Organisations from the ERP: agents, distributors, stores … with their parent, region, address,
contact and position (``OrgRow``), by ERP code, through the organisation service.

A row's parent is named by ERP code: an organisation the caller administers, or a row of the
same file — rows are applied parents first (whatever their order in the file), and a row whose
new parent was rejected is rejected too (``parent_rejected``); rows whose parents name each other
in a ring are rejected (``parent_cycle``). A changed parent moves the organisation with its
subtree (``move_org``: same brand, allowed kinds, no cycle); a changed ``status`` (de)activates it
(``set_status``): activations before the file's other rows, the closing rows after them, so a
file that closes an agent can still create or move its stores (a probe: a closed agent's closed
store was refused ``parent_inactive`` on every import, and a store moved out of an agent the same
file closed moved or not by the rows' order). A closing row is applied whole in one step, its
other columns and its deactivation together, below an organisation before it (``_close_order``):
a deactivation refused (``goods_in_transit`` because a row moved an agent with goods on their way
under it, ``own_org`` …) undoes the row's changes too (a probe: they were applied a step before
and kept, the row answered ``rejected``). A new organisation the file closes is created, the
rows below it applied and it is deactivated in one step (``_create``): refused, it is not
created, and the rows below it are ``parent_rejected``. A row deeper below the top of its chain
of the file's parents than organisations may nest (``_DEEPEST``, by ``CHILD_KINDS``) is refused
``bad_hierarchy`` before any row is applied: so a chain of new closed rows, each applied within
the one above it, is a few levels deep (a probe: a chain of 900 crashed, too deep a recursion).
An ERP code held by an organisation of the brand that the caller does not administer is
``erp_code_taken``; codes are per brand (migration 0045), so other brands' codes are never
looked at. A row's province is stored as ``POST /orgs`` stores it (``settled_province``): the
code's full name, a name alone giving its code, one that is no province's ``validation_failed``
on ``province_name``; a row naming the stored province another way changes nothing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from app.auth.principal import Principal, path_ids
from app.db import Conn
from app.erp.masterdata import Importer, attempt, differences, each_row, given, values_of
from app.erp.rows import Item, Spec
from app.erp.schemas import OrgRow
from app.locks import Lock, xact_lock
from app.orgs.schemas import OrgIn, OrgPatch
from app.orgs.service import (
    CHILD_KINDS,
    create_org,
    move_org,
    set_status,
    update_org,
    with_settled_province,
)

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


def _levels_below(kind: str) -> int:
    """How many levels of organisations may nest below a ``kind`` (``CHILD_KINDS``)."""
    return max((1 + _levels_below(child) for child in CHILD_KINDS[kind]), default=0)


# the most rows a chain of the file's parents may have below its top row: the top a brand, 4
_DEEPEST = _levels_below("brand")


@dataclass(slots=True)
class _Run:
    """What one import knows: the organisations its codes name (before it), the ERP codes of
    the file's rows (good or not), the ids of the rows applied so far, the parent code each
    good row names (``None``: it keeps its parent) and, for each new organisation the file
    closes, the rows below it in the file (``below``: applied within its row, ``_create``)."""

    conn: Conn
    actor: Principal
    known: dict[str, dict[str, Any]]
    in_file: set[str]
    applied: dict[str, int] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    below: dict[str, list[Item]] = field(default_factory=dict)

    def administers(self, row: dict[str, Any] | None) -> bool:
        return row is not None and row["path"].startswith(self.actor.admin_scope)

    def save(self) -> dict[str, int]:
        """What ``each_row`` puts back when it undoes a chunk of rows."""
        return dict(self.applied)

    def restore(self, saved: dict[str, int]) -> None:
        self.applied = saved


async def apply(conn: Conn, actor: Principal, items: list[Item], dry_run: bool) -> None:
    """Apply the good rows, parents first (activations first of all), then the closing rows
    (``_apply_all``).

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
    await _apply_all(run, _scopes(run, _parents_first(good, run.known)))


def _parent_code(item: Item) -> str | None:
    data = item.data
    return data.parent_erp_code if given(data, "parent_erp_code") else None


def _closes(run: _Run, item: Item) -> bool:
    """Whether the row deactivates its organisation (a new one included)."""
    data: OrgRow = item.data
    current = run.known.get(data.erp_code)
    return data.status == "inactive" and (current is None or current["status"] != "inactive")


def _scopes(run: _Run, ordered: list[Item]) -> list[Item]:
    """The rows (parents first) outside every new organisation the file closes; those below
    one, by the file's parents, in ``run.below`` of the nearest such one above them."""
    rows = {item.data.erp_code: item for item in ordered}
    run.parents = {code: _parent_code(item) for code, item in rows.items()}
    owners: dict[str, str | None] = {}  # the nearest new organisation closed above each row
    for code in rows:  # parents first: a row's parent (a row of the file) is done by then
        parent = run.parents[code]
        if parent is None or parent not in rows:
            owners[code] = None
        elif parent not in run.known and _closes(run, rows[parent]):
            owners[code] = parent
        else:
            owners[code] = owners[parent]
    top = []
    for code, item in rows.items():
        above = owners[code]
        if above is None:
            top.append(item)
        else:
            run.below.setdefault(above, []).append(item)
    return top


async def _apply_all(run: _Run, items: list[Item]) -> None:
    """Apply ``items`` (the file's rows outside the new organisations it closes, or those below
    one): first the rows closing nothing, in their order (parents first); then each new
    organisation closed with rows below it, with them (``_create``); then the other closing
    rows, each whole in one step — its changes and its deactivation —, those of the
    organisations below another first (``_close_order``)."""
    plain: list[Item] = []
    around: list[Item] = []  # new organisations closed with rows below them
    closing: list[Item] = []
    for item in items:  # sorted out before any is applied (a rejected row's data is gone)
        if not _closes(run, item):
            plain.append(item)
        else:
            (around if run.below.get(item.data.erp_code) else closing).append(item)
    rest = _close_order(run, closing)
    await each_row(run.conn, plain, lambda item: _apply_row(run, item), run)
    for item in around:  # alone: the rows below it in savepoints of their own
        await _apply_row(run, item)
    await each_row(run.conn, rest, lambda item: _apply_row(run, item), run)


def _close_order(run: _Run, items: list[Item]) -> list[Item]:
    """The closing rows, the new organisations first, then each existing organisation's after
    those of the organisations below it now or after the file: a move into or out of an
    organisation and a creation under it need it active (``move_org``, ``create_org``; a probe:
    a store moved out of an agent the same file closed). Rows that would each wait for the
    other keep the file's order."""
    new = [item for item in items if item.data.erp_code not in run.known]
    old = [item for item in items if item.data.erp_code in run.known]
    index = {run.known[item.data.erp_code]["id"]: n for n, item in enumerate(old)}
    then: list[list[int]] = [[] for _ in old]  # then[n]: the rows waiting for row n
    waits = [0] * len(old)
    for n, item in enumerate(old):
        for m in {index[i] for i in _above(run, item.data.erp_code) if i in index} - {n}:
            then[n].append(m)
            waits[m] += 1
    ready = [n for n, count in enumerate(waits) if count == 0]
    order: list[int] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for m in then[n]:
            waits[m] -= 1
            if waits[m] == 0:
                heapq.heappush(ready, m)
    order += [n for n, count in enumerate(waits) if count > 0]  # a ring: the file's order
    return new + [old[n] for n in order]


def _above(run: _Run, code: str) -> set[int]:
    """The ids of the organisations above ``code``'s (an existing one) now, and after the
    file as far as its rows' parents tell."""
    start = run.known[code]["id"]
    ids = set(path_ids(run.known[code]["path"]))
    seen = {code}
    while (parent := run.parents.get(code)) is not None and parent not in seen:
        seen.add(parent)
        if parent in run.known:
            ids.add(run.known[parent]["id"])
        code = parent
    if code in run.known:  # where the chain of the file's parents ends: its place now
        ids |= set(path_ids(run.known[code]["path"]))
    ids.discard(start)
    return ids


def _activates(item: Item, known: dict[str, dict[str, Any]]) -> bool:
    """Whether the row reactivates an organisation that is inactive."""
    current = known.get(item.data.erp_code)
    return current is not None and item.data.status == "active" and current["status"] != "active"


def _parents_first(good: dict[str, Item], known: dict[str, dict[str, Any]]) -> list[Item]:
    """The rows ordered by their depth within the file (a row whose parent is not in the file
    is at depth 0), those reactivating an organisation (below none but such rows of the file)
    before all others: a store may move out of an agent a row further down reopens. Rows on a
    ring of parents, or below one, are rejected, and those deeper than ``_DEEPEST``."""
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
        level = depth[code]
        if level is None:
            message = f"the parents of {code} lead back to it within this file"
            item.fail("parent_erp_code", "parent_cycle", message)
        elif level > _DEEPEST:  # no kinds nest so deep: refused before any row is applied
            message = f"{code} is {level} levels down a chain of this file's parents; kinds nest"
            item.fail("parent_erp_code", "bad_hierarchy", f"{message} {_DEEPEST} at most")
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
    if not item.ok:  # a new organisation closed: the rows below it are below a rejected row
        await _apply_all(run, run.below.get(data.erp_code, []))
        return
    if current is None:
        await _create(run, item, parent_id)
    else:
        await _update(run, item, current, parent_id)
    if item.ok:
        assert item.id is not None
        run.applied[data.erp_code] = item.id


async def _create(run: _Run, item: Item, parent_id: int | None) -> None:
    """Create the row's organisation; closed (``status: inactive``), it is created, the rows
    below it in the file applied (``run.below``) and it is deactivated in one step, after the
    file's other rows: refused, none of it is left, and the rows below it are applied again as
    below a rejected row (``parent_rejected``)."""
    data: OrgRow = item.data
    below = run.below.get(data.erp_code, [])
    for column in ("kind", "name", "parent_erp_code"):
        if not given(data, column):
            item.fail(column, "missing_value", f"{column} is required for a new organisation")
    if not item.ok:
        await _apply_all(run, below)
        return
    fields = values_of(data, _FIELDS)
    org = OrgIn(kind=data.kind, erp_code=data.erp_code, parent_id=parent_id, **fields)  # type: ignore[arg-type]

    async def work() -> int:
        out = await create_org(run.conn, run.actor, org)
        if below:
            run.applied[data.erp_code] = out.id
            await _apply_all(run, below)
        if data.status == "inactive":  # checked with what the rows below brought under it
            await set_status(run.conn, run.actor, out.id, "inactive")
        return out.id

    applied = run.save() if below else {}  # to undo the rows below it with it
    states = [_state(member) for member in _within(run, data.erp_code)]
    org_id = await attempt(run.conn, item, work)
    if org_id is not None:
        item.result, item.id = "created", org_id
    elif below:  # undone with the rows below it
        run.restore(applied)
        for state in states:
            _put_back(state)
        await _apply_all(run, below)


def _within(run: _Run, code: str) -> list[Item]:
    """The rows below a new organisation the file closes, and those below them (not applied
    yet: their data is there)."""
    found: list[Item] = []
    pending = [code]
    while pending:
        for item in run.below.get(pending.pop(), []):
            found.append(item)
            pending.append(item.data.erp_code)
    return found


def _state(item: Item) -> tuple[Item, Any, list[Any], Any, int | None, list[str]]:
    return item, item.data, list(item.errors), item.result, item.id, list(item.changed)


def _put_back(state: tuple[Item, Any, list[Any], Any, int | None, list[str]]) -> None:
    item = state[0]
    item.data, item.errors, item.result, item.id, item.changed = state[1:]


async def _update(run: _Run, item: Item, current: dict[str, Any], parent_id: int | None) -> None:
    data: OrgRow = item.data
    if given(data, "kind") and data.kind != current["kind"]:
        message = f"{data.erp_code} is a {current['kind']}; the kind of an organisation stays"
        item.fail("kind", "kind_changed", message)
        return
    changes = differences(values_of(data, _FIELDS), current)
    # the province as it is stored (``update_org``): the same one written another way (浙江,
    # Zhejiang), or its name alone, is no change
    changes = differences(with_settled_province(current, changes), current)
    move = parent_id is not None and parent_id != current["parent_id"]
    status = given(data, "status") and data.status != current["status"]
    item.id = current["id"]
    if not (changes or move or status):
        item.result = "unchanged"
        return

    closing = status and data.status == "inactive"  # last: with what the other rows did

    async def work() -> bool:
        if status and not closing:
            await set_status(run.conn, run.actor, current["id"], data.status)  # type: ignore[arg-type]
        if changes:
            await update_org(run.conn, run.actor, current["id"], OrgPatch(**changes))
        if move:
            assert parent_id is not None
            await move_org(run.conn, run.actor, current["id"], parent_id)
        if closing:
            await set_status(run.conn, run.actor, current["id"], "inactive")
        return True

    if await attempt(run.conn, item, work):
        item.result = "updated"
        item.changed = list(changes)
        if move:
            item.changed.append("parent_erp_code")
        if status:
            item.changed.append("status")


IMPORTER = Importer(spec=SPEC, permission="orgs.write", apply=apply)
