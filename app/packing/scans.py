"""Bulk and offline upload from line scanners (P2, P3, P6): a packing hot path.

An upload is a list of scans in the order they were made: units, then the case they went into,
then the next units …, then the master case or pallet over the cases. Each scan carries the
scanner's client event id. One upload is one transaction:

1. read every code at once (Rust verifies the serials; batches and case batches in one query each);
2. lock the state rows of the codes involved (they carry the client event id that activated or
   packed each code);
3. plan: decide each scan's result in scan order (duplicate, rejected with a reason, or ok); what
   the next container closes over is kept by level, each item added once and taken once;
4. write: unit and case state and events (by COPY), in a savepoint. If a concurrent
   upload activated or packed one of the same codes first, the savepoint is rolled back and the
   plan made again against the now committed state: exactly one upload wins each code.

The events: one aggregation per container that takes new children, and one commissioning event
of the units activated on each Beijing day of their scans, timed at that day's first scan — the
dashboard counts activations by the event's day. An upload is nearly always of one day (its
first and last scans' days are compared: no grouping); only an offline scanner's upload across
midnight is split. A replay never looks for these events: a scan's id is kept on its code's state.

Retried, partially retried or reordered uploads never count twice: a scan whose client event id
is the one that activated its unit or first packed its case, or one of the later scans accepted
for the code (a unit active before, packed; a case closed again: the last 16), answers
``duplicate`` (the state row keeps those ids, so no separate receipt is written or looked up) —
also once the goods left the caller's subtree, when the id is the one a line of its organisation
activated the unit or first packed the case with (a duplicate with no container: nothing of where
the goods are now). A container's id sent again naming children not all inside it, or closing over
the items scanned before it when one was accepted in this upload and is packed in no container,
is another scan under a used id: ``id_reused`` (those items stay for the next container).
An id repeated with the same code within one upload answers as its first copy did: ``duplicate``
if that one was accepted or a replay, else rejected alike (with another code it is rejected,
``id_reused``). A unit already active with the same product and lot is not activated again; a
child already in its case is not bound again. A scanned unit already in another container is
rejected (``already_bound``) and its container closes over the rest; a scanned case already in
another container keeps its accepted scan (it took its own children) and the container over it
is refused, ``child_rejected``, as for a named child: a rejected scan changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import TypeVar

import msgspec
from psycopg.rows import args_row

from app.auth.principal import Principal
from app.bodies import MAX_OFFSET
from app.codes.lookup import LEVEL_RANK, VOID_STATES, Read, read_codes, sscc_label
from app.codes.scheme import Scheme
from app.db import Conn, array
from app.errors import Conflict, Unprocessable
from app.events import builders
from app.events.log import NewEvent, allocate_ids, write_events
from app.events.stock import new_deltas, write_deltas
from app.localtime import ZONE
from app.logistics.movements import GONE_DISPOSITIONS
from app.packing.lines import brand_product, commissions, get_line
from app.packing.schemas import LineOut, ScanIn, ScanOut, ScanUploadIn, ScanUploadOut

_ATTEMPTS = 3
# Who activates (commissions) new codes: the factories' lines (and the brand's own). An agent's
# or a store's line packs codes already active; activating there made fresh codes, printed for
# the factory, that organisation's stock with no shipment at all.

MESSAGES = {
    "malformed": "not a serial or case code",
    "forged": "not a genuine code (signature check failed)",
    "unknown": "no such code was issued to this brand",
    "void": "the code or its batch is void",
    "wrong_product": "the code's batch is assigned to another product",
    "already_active": "the code was activated with another product or lot",
    "already_bound": "the code is already packed in another container",
    "duplicate_scan": "the code was scanned twice in this upload",
    "id_reused": "the scan id was already used for another code in this upload",
    "in_transit": "the goods are on their way to an organisation: packed only once received",
    "not_held": "the goods are held by another organisation (or were sold or given away): "
    "only their holder packs them",
    "not_a_factory": "only a factory's line activates new codes; this one packs active ones",
    "invalid_sscc": "not a valid SSCC (check digit)",
    "unknown_case": "no such case code was issued to this brand",
    "case_void": "the case code or its batch is void",
    "bad_level": "a container may only hold units or containers of a lower packing level",
    "empty_case": "the container closes over no scanned units or cases",
    "short_case": "fewer items than the packing rule requires",
    "over_full_case": "more items than the packing rule allows",
    "child_rejected": "a named child cannot be packed",
    "unit_with_children": "a unit holds no items: only a container closes over children",
    "bad_time": "the scan's time is before 2000, over a day ahead or at a UTC offset beyond "
    "±14:00: the scanner's clock is wrong",
}
# A scan's time: an offline scanner uploads late, never from before the platform or the future
# (probe L: a scan at 9999-12-31T23:59:59-12:00, year 10000 in UTC, was stored and every trace
# and EPCIS page holding it failed to read; a scan of 2099 made trace list its unpacking first).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)
# Nor at an offset beyond EPCIS's ±14:00 (``app.bodies.MAX_OFFSET``; RFC 3339 writes up to
# ±23:59: a probe's scan at +23:59 made PostgreSQL refuse the whole upload, one at +14:30 was
# served as an event EPCIS refuses). The times are written in UTC all the same (``_utc_times``).


class _Race(Exception):
    """A concurrent upload changed a code between our read and our write: plan again."""


@dataclass(frozen=True, slots=True)
class Context:
    org_id: int
    brand_id: int
    line: LineOut
    product_id: int
    lot: str
    production_date: date
    person: int | None  # who scans: the user, or the maker of the line's API key
    scope: str  # the caller's organisation path: codes held outside it are not known here
    gtin: str | None = None  # the product's: a Digital Link naming another is wrong_product
    commissions: bool = True  # a factory's (or the brand's) line: it may activate new codes


class _Scan(msgspec.Struct, gc=False):
    """One scan of the upload and its result (one per scanned item: untracked by the GC, it
    holds no cycle)."""

    scan: ScanIn
    read: Read
    children: list[Read] | None = None  # the reads of explicitly named children
    result: str = "ok"
    reason: str | None = None
    warning: str | None = None
    message: str | None = None
    parent: int | None = None
    elsewhere: bool = False  # accepted before, its code held outside the caller's subtree now


class _UnitState(msgspec.Struct, frozen=True, gc=False):
    """A locked ``unit_state`` row, in the column order of ``_locked``'s SELECT."""

    code: int
    status: str
    parent_sscc: int | None
    product_id: int
    lot: str
    client_event_id: str | None  # the scan's that activated the unit
    rescans: list[str] | None  # the later accepted scans' (``_update_existing``), newest first
    holder_path: str
    transit_path: str | None


class _CaseState(msgspec.Struct, frozen=True, gc=False):
    """A locked ``case_state`` row, in the column order of ``_locked``'s SELECT."""

    code: int
    status: str
    parent_sscc: int | None
    product_id: int | None  # None until the case is first packed (with the line's product)
    lot: str | None
    level: str
    disposition: str
    client_event_id: str | None  # the scan's that first packed the case
    rescans: list[str] | None  # the later accepted scans' (``_update_existing``), newest first
    holder_path: str
    transit_path: str | None


class _Rule(msgspec.Struct, frozen=True, gc=False):
    """A packing rule of the product: a container of ``level`` holds ``quantity`` items."""

    level: str
    quantity: int
    strict: bool


# what a container closes over: kind, code, rank, the scan (of this upload), the code as read
_Child = tuple[str, int, int, _Scan | None, str]
_UnitRow = tuple[int, int | None, datetime, int, str]  # code, parent, at, event, client event id
_S = TypeVar("_S", _UnitState, _CaseState)


@dataclass(slots=True)
class _Plan:
    activate: dict[int, _Scan] = field(default_factory=dict)  # new units by code
    new_cases: dict[int, _Scan] = field(default_factory=dict)  # new containers by SSCC
    parent_of: dict[tuple[str, int], int] = field(default_factory=dict)  # (kind, code) → SSCC
    children_of: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    closed: list[_Scan] = field(default_factory=list)  # accepted containers, in scan order


class _Pending:
    """What the next container closes over in ``_plan``, by packing rank, in scan order. Of it,
    ``fresh``: the items this upload accepted that a container would take in as new — a
    container's scan replayed over one is ``id_reused`` (``_replay``). A container naming its
    children leaves none of them for the next one (``bind``): they are dropped when taken, never
    searched for (a probe: 10,000 units, then 10,000 cases naming ``children: []`` each rebuilt
    the whole list, 10^8 steps). Every item is added once and taken once: linear."""

    __slots__ = ("fresh", "levels", "named")

    def __init__(self) -> None:
        self.levels: list[list[_Child]] = [[] for _ in LEVEL_RANK]
        self.fresh: list[set[tuple[str, int]]] = [set() for _ in LEVEL_RANK]
        # a child named by an accepted container → how many items of its level were pending then
        self.named: list[dict[tuple[str, int], int]] = [{} for _ in LEVEL_RANK]

    def add(self, child: _Child, fresh: bool = False) -> None:
        self.levels[child[2]].append(child)
        if fresh:
            self.fresh[child[2]].add((child[0], child[1]))

    def bind(self, children: list[_Child]) -> None:
        """Children a container named and took: the items of theirs pending now are no more."""
        for kind, code, rank, _, _ in children:
            self.named[rank][(kind, code)] = len(self.levels[rank])
            self.fresh[rank].discard((kind, code))

    def take(self, rank: int) -> list[_Child]:
        """Everything pending below ``rank``, in scan order; it is pending no more."""
        taken: list[_Child] = []
        for level, named, fresh in zip(
            self.levels[:rank], self.named[:rank], self.fresh[:rank], strict=True
        ):
            if named:  # an item pending when a container named it: bound, so not taken
                taken += [p for i, p in enumerate(level) if i >= named.get((p[0], p[1]), 0)]
                named.clear()
            else:
                taken += level
            level.clear()
            fresh.clear()
        return taken

    def fresh_below(self, rank: int) -> bool:
        return any(self.fresh[:rank])


async def upload(
    conn: Conn, actor: Principal, scheme: Scheme, line_code: str, data: ScanUploadIn
) -> ScanUploadOut:
    """Apply one upload in scan order (the steps of the module's docstring); per-scan results."""
    actor.require("packing.scan")
    ctx = await _context(conn, actor, await get_line(conn, actor, line_code), data)
    scans = await _read_scans(conn, scheme, ctx, data)
    for _ in range(_ATTEMPTS):
        for s in scans:
            s.result, s.reason, s.warning, s.message, s.parent = "ok", None, None, None, None
        try:
            async with conn.transaction():  # a savepoint: a lost race undoes only this attempt
                await _apply(conn, ctx, scans)
            break
        except _Race:
            continue
    else:
        raise Conflict("the codes are being packed by another upload; retry", code="busy")
    return _answer(scans)


async def _context(conn: Conn, actor: Principal, line: LineOut, data: ScanUploadIn) -> Context:
    """The production context of the upload: its own (an offline scanner's, checked to be a
    product of the brand) or else the line's; 422 ``no_line_context`` when neither is set."""
    if data.context is not None:
        product_id, lot, made = (
            data.context.product_id,
            data.context.lot,
            data.context.production_date,
        )
    elif line.product_id is not None and line.lot and line.production_date:
        product_id, lot, made = line.product_id, line.lot, line.production_date
    else:
        raise Unprocessable("set the line's production context first", code="no_line_context")
    product = await brand_product(conn, actor, product_id)
    return Context(
        actor.org_id,
        actor.brand_id,
        line,
        product_id,
        lot,
        made,
        actor.person,
        actor.org_path,
        product["gtin"],
        await commissions(conn, actor),
    )


async def _read_scans(conn: Conn, scheme: Scheme, ctx: Context, data: ScanUploadIn) -> list[_Scan]:
    """Step 1: read every scanned code and every named child at once (one ``read_codes``)."""
    texts = [s.code for s in data.scans]
    for s in data.scans:
        texts.extend(s.children or ())
    reads = await read_codes(conn, scheme, ctx.brand_id, texts)
    latest, widest = datetime.now(UTC) + MAX_AHEAD, MAX_OFFSET
    scans: list[_Scan] = []
    extra = len(data.scans)
    for i, s in enumerate(data.scans):
        children = None
        if s.children is not None:
            children = reads[extra : extra + len(s.children)]
            extra += len(s.children)
        read = reads[i]
        if read.reason is None and not (  # an ``OffsetTime``: its utcoffset() is never None
            EARLIEST <= s.at <= latest and abs(s.at.utcoffset()) <= widest  # type: ignore[arg-type]
        ):
            read = dataclasses.replace(read, reason="bad_time")
        scans.append(_Scan(s, read, children))
    return scans


def _answer(scans: list[_Scan]) -> ScanUploadOut:
    """The per-scan results and their counts."""
    out = [
        ScanOut(
            id=s.scan.id,
            result=s.result,  # type: ignore[arg-type]
            kind=s.read.kind,
            code=s.read.label,
            parent=sscc_label(s.parent) if s.parent is not None else None,
            reason=s.reason,
            warning=s.warning,
            message=s.message or (MESSAGES.get(s.reason) if s.reason else None),
        )
        for s in scans
    ]
    return ScanUploadOut(
        accepted=sum(s.result == "ok" for s in scans),
        duplicates=sum(s.result == "duplicate" for s in scans),
        rejected=sum(s.result == "rejected" for s in scans),
        scans=out,
    )


def _reject(scan: _Scan, reason: str, message: str | None = None) -> None:
    scan.result, scan.reason, scan.message = "rejected", reason, message


async def _apply(conn: Conn, ctx: Context, scans: list[_Scan]) -> None:
    """One attempt: lock the codes' state (step 2), plan (step 3), write (step 4)."""
    all_reads = [s.read for s in scans] + [c for s in scans for c in (s.children or ())]
    units = sorted({r.code for r in all_reads if r.kind == "unit" and r.reason is None})
    cases = sorted({r.code for r in all_reads if r.kind == "case" and r.reason is None})
    await _batches_live(conn, all_reads, units)
    # the cases first, as a movement locks them (``logistics.movements.expand``): once a
    # document holds a case nothing is packed into it, and an upload holding one is waited for
    case_state = await _locked(conn, _CaseState, cases)
    unit_state = await _locked(conn, _UnitState, units)
    unseen = set(cases).difference(case_state)
    if unseen and any(u.parent_sscc in unseen for u in unit_state.values()):
        # an upload packing them committed between the two reads: the cases were read before
        # it, the units after (a retry racing its original answered its own case "rejected",
        # empty_case). Read both again.
        raise _Race
    hidden = _hide_out_of_reach(ctx, all_reads, unit_state, case_state)
    if hidden:
        await _own_replays(conn, ctx, scans, hidden)
    held = await _child_counts(conn, [code for code in cases if code in case_state])
    rules = await _rules(conn, ctx.product_id)
    plan = _plan(ctx, scans, unit_state, case_state, held, rules)
    await _write(conn, ctx, scans, plan, unit_state, case_state)


async def _batches_live(conn: Conn, reads: list[Read], units: list[int]) -> None:
    """Lock the units' batches against a void (``FOR KEY SHARE``, which the void's ``FOR UPDATE``
    waits for, and which waits for it; uploads do not wait for each other) and reject, ``void``,
    the units of a batch voided since their codes were read. Without it a batch voided during
    an upload kept the units the upload activated — active, shipped and stocked, while
    verification called them void (probe I). The cases' batches likewise (``case_void``), against
    ``codes.cases.void_case_batch``."""
    if units:
        rows = await (
            await conn.execute(
                """SELECT batch_no, state FROM code_batches WHERE batch_no = ANY(%s)
                   ORDER BY batch_no FOR KEY SHARE""",
                (sorted({code >> 32 for code in units}),),
            )
        ).fetchall()
        void = {row["batch_no"] for row in rows if row["state"] == "void"}
        for read in reads:
            if read.kind == "unit" and read.reason is None and read.code >> 32 in void:
                read.reason = "void"
    case_batches = sorted({r.batch for r in reads if r.kind == "case" and r.reason is None})
    if case_batches:
        rows = await (
            await conn.execute(
                """SELECT id, state FROM case_batches WHERE id = ANY(%s)
                   ORDER BY id FOR KEY SHARE""",
                (case_batches,),
            )
        ).fetchall()
        void = {row["id"] for row in rows if row["state"] == "void"}
        for read in reads:
            if read.kind == "case" and read.reason is None and read.batch in void:
                read.reason = "case_void"


def _hide_out_of_reach(
    ctx: Context,
    reads: list[Read],
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
) -> dict[tuple[str, int], str | None]:
    """Scoping: a code whose goods are held outside the caller's subtree (and are not on their
    way into it) is rejected ``unknown`` / ``unknown_case``, exactly like a code never issued to
    this brand — never ``already_active``, ``already_bound`` or a count of what its container
    holds — and is never bound into the caller's containers. Returns the hidden codes, each
    with the id of the scan that activated the unit or first packed the case (``_own_replays``)."""
    hidden: dict[tuple[str, int], str | None] = {}
    for kind, states in (("unit", unit_state), ("case", case_state)):
        for code in [c for c, row in states.items() if not _in_reach(ctx.scope, row)]:
            hidden[(kind, code)] = states.pop(code).client_event_id
    if hidden:
        for read in reads:
            if read.reason is None and (read.kind, read.code) in hidden:
                read.reason = "unknown" if read.kind == "unit" else "unknown_case"
    return hidden


async def _own_replays(
    conn: Conn, ctx: Context, scans: list[_Scan], hidden: dict[tuple[str, int], str | None]
) -> None:
    """Marks (``elsewhere``) the scans of hidden codes sent again under the id that activated
    the unit or first packed the case on a line of the caller's organisation: a late retry of
    its own upload after the goods left (shipped, received elsewhere), answered ``duplicate``
    and nothing more (``_replayed``; a probe: six ``unknown`` for goods the retried upload had
    packed itself). A later scan's id kept among a code's ``rescans`` is not told apart by line:
    not marked. The mark outlives a lost race (the code is not read again: ``unknown`` now)."""
    asked = [
        s
        for s in scans
        if s.read.reason in ("unknown", "unknown_case")
        and hidden.get((s.read.kind, s.read.code)) == s.scan.id
    ]
    if not asked:
        return
    rows = await (
        await conn.execute(
            """SELECT 'unit' AS kind, u.code FROM unit_state u JOIN lines n ON n.id = u.line_id
               WHERE u.code = ANY(%(u)s::bigint[]) AND n.org_id = %(org)s
               UNION ALL
               SELECT 'case', c.sscc FROM case_state c JOIN lines n ON n.id = c.line_id
               WHERE c.sscc = ANY(%(c)s::bigint[]) AND n.org_id = %(org)s""",
            {
                "u": array([s.read.code for s in asked if s.read.kind == "unit"]),
                "c": array([s.read.code for s in asked if s.read.kind == "case"]),
                "org": ctx.org_id,
            },
        )
    ).fetchall()
    ours = {(row["kind"], row["code"]) for row in rows}
    for s in asked:
        s.elsewhere = (s.read.kind, s.read.code) in ours


def _in_reach(scope: str, row: _UnitState | _CaseState) -> bool:
    transit = row.transit_path
    return bool(row.holder_path.startswith(scope) or (transit and transit.startswith(scope)))


def _plan(
    ctx: Context,
    scans: list[_Scan],
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
    held: dict[int, int],
    rules: dict[str, _Rule],
) -> _Plan:
    """Step 3: each scan's result in scan order, and what the accepted scans change."""
    plan = _Plan()
    pending = _Pending()
    # scan id -> the code it carried first in this upload, and that first scan
    seen_ids: dict[str, tuple[object, _Scan]] = {}
    copies: list[tuple[_Scan, _Scan]] = []  # a scan sent again in this upload, and its first copy
    seen_codes: set[tuple[str, int]] = set()
    for s in scans:
        read = s.read
        state: _UnitState | _CaseState | None = None
        if read.reason is None:
            state = (unit_state if read.kind == "unit" else case_state).get(read.code)
        scanned: object = (read.kind, read.code) if read.reason is None else s.scan.code
        if s.scan.children is not None:  # a container's scan is its children too
            scanned = (scanned, frozenset(s.scan.children))
        if s.scan.id in seen_ids:  # the id came before in this upload: the same scan again,
            first_scanned, first = seen_ids[s.scan.id]
            if first_scanned == scanned:  # already planned (and pending) once: answered below
                copies.append((s, first))
            else:  # or a scanner reusing an id: never a duplicate of another code's scan
                _reject(s, "id_reused")
            continue
        seen_ids[s.scan.id] = (scanned, s)  # a replay's too (a probe: a:Y after a retried a:X)
        # an id accepted before for the code; or the caller's own scan of goods held outside
        # its subtree now (``elsewhere``, no state)
        if s.elsewhere or (state is not None and _is_replay(state, s.scan.id)):
            _replay(s, state, pending, unit_state, case_state)
            continue
        if read.reason is not None:
            _reject(s, read.reason)
            continue
        key = (read.kind, read.code)
        if key in seen_codes:
            _reject(s, "duplicate_scan")
            continue
        seen_codes.add(key)
        if read.kind == "unit":
            if s.scan.children:  # only a container closes over items (probe: dropped unsaid)
                _reject(s, "unit_with_children")
                continue
            _plan_unit(ctx, s, unit_state, plan)
            if s.result == "ok":
                pending.add(("unit", read.code, 0, s, read.label), _free(ctx, key, state, plan))
            continue
        _plan_case(ctx, s, pending, unit_state, case_state, held, rules, plan)
    # a copy answers as its first copy finally did (a container may reject a unit accepted at
    # first): ``duplicate`` means accepted before, never the copy of a rejected scan (a probe)
    for copy, first in copies:
        if first.result == "rejected":
            copy.result, copy.reason, copy.message = "rejected", first.reason, first.message
        else:
            copy.result = "duplicate"
    return plan


def _is_replay(state: _UnitState | _CaseState, scan_id: str) -> bool:
    """Whether the scan's id was accepted for this code before: the one that activated the unit
    or first packed the case, or one of its later accepted scans (``rescans``)."""
    return state.client_event_id == scan_id or (
        state.rescans is not None and scan_id in state.rescans
    )


def _replay(
    s: _Scan,
    state: _UnitState | _CaseState | None,
    pending: _Pending,
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
) -> None:
    """A scan under an id an earlier upload accepted for its code: ``duplicate`` (``_replayed``)
    — unless it is another scan under a used id, ``id_reused``: a container naming children not
    all inside it, or closing over what was scanned before it when that holds an item this upload
    accepted and the container does not hold (a probe: units 4–6 then case C under the id that
    packed C over units 1–3 answered ``duplicate``, and 4–6 were left out unsaid). Those stay
    pending for the next container; a retry has only replays pending."""
    if s.read.kind == "case" and s.children is None:
        if pending.fresh_below(LEVEL_RANK[s.read.level]):
            _reject(s, "id_reused", "the scan id closed this container over other items")
            return
    elif state is not None and _other_children(s, unit_state, case_state):
        _reject(s, "id_reused", "the scan id was accepted with other children")
        return
    _replayed(s, state, pending)


def _free(
    ctx: Context, key: tuple[str, int], state: _UnitState | _CaseState | None, plan: _Plan
) -> bool:
    """Whether a container would take in an item this upload accepted as new: packed nowhere
    (before, or by this upload) and held here (``_close``)."""
    if key in plan.parent_of:
        return False
    return state is None or (state.parent_sscc is None and _not_here(ctx, state) is None)


def _other_children(
    s: _Scan, unit_state: dict[int, _UnitState], case_state: dict[int, _CaseState]
) -> bool:
    """Whether a container's scan under an id accepted before names children that are not all
    inside it now: another scan under a used id (``id_reused``), not a retry (a probe: the same
    id naming units 6–10 answered ``duplicate``, and they were never packed)."""
    for child in s.children or ():
        states: dict[int, _UnitState] | dict[int, _CaseState]
        states = unit_state if child.kind == "unit" else case_state
        state = states.get(child.code) if child.reason is None else None
        if state is None or state.parent_sscc != s.read.code:
            return True
    return False


def _plan_case(
    ctx: Context,
    s: _Scan,
    pending: _Pending,
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
    held: dict[int, int],
    rules: dict[str, _Rule],
    plan: _Plan,
) -> None:
    """A container's scan in ``_plan``: it closes over the pending items of lower levels (or
    its named children) and is pending itself if accepted."""
    read = s.read
    state = case_state.get(read.code)
    if state is not None and (problem := _not_here(ctx, state)):
        _reject(s, problem)
        return
    rank = LEVEL_RANK[read.level]
    children: list[_Child] | None
    if s.children is None:
        children = pending.take(rank)
    else:
        children = _explicit(ctx, s, unit_state, case_state, plan)
        if children is None:
            return
    _close(ctx, s, rank, children, unit_state, case_state, held, rules, plan)
    if s.result != "ok":
        return
    if s.children is not None:  # named children are not left for the next container
        bound = set(plan.children_of[read.code])
        pending.bind([c for c in children if (c[0], c[1]) in bound])
    key = ("case", read.code)
    pending.add(("case", read.code, rank, s, read.label), _free(ctx, key, state, plan))
    if state is None:
        plan.new_cases[read.code] = s


def _not_here(ctx: Context, state: _UnitState | _CaseState) -> str | None:
    """Why an existing code may not be packed on this line: void, gone (a unit sold or given
    away, a case gone with its units: ``GONE_DISPOSITIONS``), on its way somewhere, or held by
    another organisation (one below the line's, say); None when it may."""
    if isinstance(state, _CaseState):
        if state.status != "active":
            return "case_void"
        if state.disposition in GONE_DISPOSITIONS:
            return "not_held"
    elif state.status != "active":
        return _inactive(state.status)
    if state.transit_path is not None:
        return "in_transit"
    return "not_held" if state.holder_path != ctx.scope else None


def _inactive(status: str) -> str:
    """The reason a unit that is not active is refused: ``void`` (replaced, of a voided batch,
    destroyed), else ``not_held`` — sold or given away, its holder is its buyer now, as a
    movement answers (a probe: a unit given away was refused "the code or its batch is
    void", which verification does not call it)."""
    return "void" if status in VOID_STATES else "not_held"


def _replayed(s: _Scan, state: _UnitState | _CaseState | None, pending: _Pending) -> None:
    """A scan an earlier upload accepted (its id is on the code's state): a duplicate, whose
    code still belongs to the container scanned after it. Without ``state`` the code is held
    outside the caller's subtree now (``_own_replays``): a duplicate with no container, which
    no container scanned after it takes in. A container named its children: what was scanned
    before it stays pending, as when it was first accepted."""
    read = s.read
    s.result, s.parent = "duplicate", state.parent_sscc if state is not None else None
    if read.kind == "unit":
        if state is not None:
            pending.add(("unit", read.code, 0, None, read.label))
    else:
        rank = LEVEL_RANK[read.level]
        if s.children is None:  # what it was scanned over: nothing this upload packs anew
            pending.take(rank)
        elif state is not None:  # its named children are inside it (``_replay``): bound again
            pending.bind([(c.kind, c.code, LEVEL_RANK[c.level], None, c.label) for c in s.children])
        if state is not None:
            pending.add(("case", read.code, rank, None, read.label))


def _plan_unit(ctx: Context, s: _Scan, unit_state: dict[int, _UnitState], plan: _Plan) -> None:
    read = s.read
    if (read.batch_product is not None and read.batch_product != ctx.product_id) or (
        read.gtin is not None and read.gtin != ctx.gtin
    ):
        _reject(s, "wrong_product")
        return
    state = unit_state.get(read.code)
    if state is None and not ctx.commissions:
        _reject(s, "not_a_factory")
    elif state is None:
        plan.activate[read.code] = s
    elif state.status != "active":
        _reject(s, _inactive(state.status))
    elif (state.product_id, state.lot) != (ctx.product_id, ctx.lot):
        _reject(s, "already_active")
    else:
        s.warning = "already_active"


def _explicit(
    ctx: Context,
    s: _Scan,
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
    plan: _Plan,
) -> list[_Child] | None:
    """Named children must be active codes (activated before, or earlier in this upload), and
    units of the line's product and lot, as scanned ones (a probe: a case named with another
    product's units took them, and was recorded as the line's product)."""
    children: list[_Child] = []
    for child in s.children or ():
        reason = child.reason
        state: _UnitState | _CaseState | None
        if reason is None and child.kind == "unit":
            state = unit_state.get(child.code)
            if state is None and child.code not in plan.activate:
                reason = "not_activated"
            elif state is not None and state.status != "active":
                reason = _inactive(state.status)
            elif state is not None and state.product_id != ctx.product_id:
                reason = "wrong_product"
            elif state is not None and state.lot != ctx.lot:
                reason = "wrong_lot"
        elif reason is None:
            state = case_state.get(child.code)
            if state is None and child.code not in plan.new_cases:
                reason = "not_packed"
            elif state is not None and state.status != "active":
                reason = "case_void"
        if reason is not None:
            _reject(s, "child_rejected", f"child {child.label}: {reason}")
            return None
        children.append((child.kind, child.code, LEVEL_RANK[child.level], None, child.label))
    return children


def _other_context(ctx: Context, state: _CaseState | None) -> tuple[str, str] | None:
    """Why an existing case may not take the line's units: it was packed with another product
    (``wrong_product``) or lot (``already_active``, as a unit of another lot is), and holds one
    product and lot (a probe: a lot-A case rescanned after the line switched to lot B closed over
    the lot-B units). None for a new or never packed case, or one of the line's context. A case
    rescanned to close over cases only (a mixed pallet's) is not asked."""
    if state is None or state.product_id is None:
        return None
    if state.product_id != ctx.product_id:
        return "wrong_product", "the case was packed with another product"
    if state.lot != ctx.lot:
        return "already_active", f"the case was packed with lot {state.lot}"
    return None


def _close(
    ctx: Context,
    s: _Scan,
    rank: int,
    children: list[_Child],
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
    held: dict[int, int],
    rules: dict[str, _Rule],
    plan: _Plan,
) -> None:
    """Decide a container: which children it takes, whether the packing rule holds (the line's
    product's, for a container taking new children: one closed again over nothing new is left as
    it was)."""
    sscc = s.read.code
    new: list[tuple[str, int]] = []
    inside = held.get(sscc, 0)
    taken: set[tuple[str, int]] = set()
    for kind, code, child_rank, child_scan, label in children:
        if (kind, code) in taken:  # one code twice (a repeated client event id): once
            continue
        taken.add((kind, code))
        if child_rank >= rank:
            _reject(s, "bad_level", f"child {label}: level not below {s.read.level}")
            return
        states: dict[int, _UnitState] | dict[int, _CaseState]
        states = unit_state if kind == "unit" else case_state
        current = plan.parent_of.get((kind, code))
        if current is None and code in states:
            current = states[code].parent_sscc
        if current == sscc:
            continue  # already in this container (a retry): counted in ``inside``
        if code in states and (problem := _not_here(ctx, states[code])):
            if child_scan is None:
                _reject(s, "child_rejected", f"child {label}: {problem}")
                return
            _reject(child_scan, problem)
            continue
        if current is not None:
            # a named child, or a case scanned here: its scan stands (it closed over its own
            # children), so the container is refused, never the case's scan after the fact (a
            # probe: a case on another pallet answered rejected, yet took the units before it)
            if child_scan is None or kind == "case":
                _reject(s, "child_rejected", f"child {label}: already_bound")
                return
            _reject(child_scan, "already_bound", f"already in container {sscc_label(current)}")
            continue
        new.append((kind, code))
    if any(kind == "unit" for kind, _ in new) and (
        mismatch := _other_context(ctx, case_state.get(sscc))
    ):  # new units of the line's: only into a case of its product and lot (cases may mix)
        _reject(s, *mismatch)
        return
    count = inside + len(new)
    if count == 0:
        _reject(s, "empty_case")
        return
    # the line's product's rule: a container closed again over nothing new (a case of another
    # product onto a mixed pallet: a probe's was short_case by this rule) holds what it did
    rule = rules.get(s.read.level) if new else None
    if rule is not None and count != rule.quantity:
        problem = "short_case" if count < rule.quantity else "over_full_case"
        detail = f"{count} items, the rule says {rule.quantity}"
        if rule.strict:
            _reject(s, problem, detail)
            return
        s.warning, s.message = problem, detail
    for kind, code in new:
        plan.parent_of[(kind, code)] = sscc
    plan.children_of[sscc] = new
    plan.closed.append(s)


# -- step 4: the write ----------------------------------------------------------------------------


async def _write(
    conn: Conn,
    ctx: Context,
    scans: list[_Scan],
    plan: _Plan,
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
) -> None:
    """Step 4: the events, the new state rows, the newly packed existing codes, the stock of the
    new units, each result's container and the batches now in use. Raises ``_Race`` when a
    concurrent upload activated or packed one of the same codes first.

    Events: one commissioning event for the units this upload activates on each Beijing day of
    their scans (one in all but an upload spanning midnight: ``_by_day``), one aggregation event
    per container that takes new children."""
    aggregations = [s for s in plan.closed if plan.children_of[s.read.code]]
    days = _by_day(list(plan.activate.values())) if plan.activate else []
    ids = await allocate_ids(conn, len(days) + len(aggregations))
    agg_id = {s.read.code: ids[len(days) + i] for i, s in enumerate(aggregations)}
    events: list[NewEvent] = []
    unit_rows: list[_UnitRow] = []
    for i, (first, members) in enumerate(days):  # the ids before the aggregations'
        events.append(_commission(ctx, plan, first, members, ids[i], agg_id, unit_rows))
    events += _aggregations(ctx, plan, aggregations, agg_id)
    if unit_rows:
        await _insert_units(conn, ctx, unit_rows)
    if plan.new_cases:
        await _insert_cases(conn, ctx, plan, agg_id)
    await _update_existing(conn, scans, plan, agg_id, unit_state, case_state)
    await write_events(conn, events)
    if plan.activate:  # new units are stock of the line's organisation (the first event's)
        deltas = new_deltas()
        deltas[(ctx.org_id, ctx.product_id, ctx.lot, "on_hand")] = len(plan.activate)
        await write_deltas(conn, deltas, ids[0])
    _fill_parents(scans, plan, unit_state, case_state)
    await batches_in_use(conn, sorted({s.read.batch for s in plan.activate.values()}))


async def batches_in_use(conn: Conn, batches: list[int]) -> None:
    """Batches whose codes were just activated (by an upload, or a replacement's new code)
    are ``active`` (SPEC C2: issued → exported → active); the caller holds them ``FOR KEY
    SHARE`` against a void (``_batches_live``), which this update does not conflict with."""
    if batches:
        await conn.execute(
            "UPDATE code_batches SET state = 'active' "
            "WHERE batch_no = ANY(%s) AND state IN ('issued', 'exported')",
            (batches,),
        )


def _by_day(members: list[_Scan]) -> list[tuple[datetime, list[_Scan]]]:
    """The units this upload activates by the Beijing day of their scans, each day's with its
    first scan's time, in day order: the day of a commissioning event is the day the dashboard
    counts its units on (``app.analytics.dashboard``), which must be each unit's own (a probe:
    a night shift's upload scanned at 23:50 and 00:10 put every unit on the first day). Nearly
    every upload is of one day: its first and last scans tell, and it is one group."""
    first = min(m.scan.at for m in members)
    last = max(m.scan.at for m in members)
    if first.astimezone(ZONE).date() == last.astimezone(ZONE).date():
        return [(first, members)]
    days: dict[date, list[_Scan]] = {}
    for m in members:
        days.setdefault(m.scan.at.astimezone(ZONE).date(), []).append(m)
    return [(min(m.scan.at for m in group), group) for _, group in sorted(days.items())]


def _commission(
    ctx: Context,
    plan: _Plan,
    at: datetime,
    members: list[_Scan],
    event_id: int,
    agg_id: dict[int, int],
    unit_rows: list[_UnitRow],
) -> NewEvent:
    """The commissioning event of ``members``, units this upload activates on one day, timed
    ``at`` (the day's first scan); appends their state rows to ``unit_rows`` (last event:
    their container's aggregation, if packed) and sets each one's result container."""
    for m in members:
        parent = plan.parent_of.get(("unit", m.read.code))
        m.parent = parent
        unit_rows.append(
            (m.read.code, parent, m.scan.at, agg_id[parent] if parent else event_id, m.scan.id)
        )
    return builders.commission(
        id=event_id,
        brand_id=ctx.brand_id,
        at=at,
        units=[m.read.code for m in members],
        recorded_by=ctx.person,
        details={
            "product_id": ctx.product_id,
            "lot": ctx.lot,
            "production_date": ctx.production_date.isoformat(),
            "line": ctx.line.code,
        },
        read_point=f"line:{ctx.line.code}",
        biz_location=ctx.org_id,
    )


def _aggregations(
    ctx: Context, plan: _Plan, aggregations: list[_Scan], agg_id: dict[int, int]
) -> list[NewEvent]:
    """One aggregation event per container that takes new children (one per container, not
    per child)."""
    events = []
    for s in aggregations:
        kids = plan.children_of[s.read.code]
        events.append(
            builders.aggregate(
                id=agg_id[s.read.code],
                brand_id=ctx.brand_id,
                at=s.scan.at,
                parent=s.read.code,
                units=[code for kind, code in kids if kind == "unit"],
                cases=[code for kind, code in kids if kind == "case"],
                recorded_by=ctx.person,
                client_event_id=s.scan.id,
                details={"line": ctx.line.code, "level": s.read.level},
                read_point=f"line:{ctx.line.code}",
                biz_location=ctx.org_id,
            )
        )
    return events


def _utc_times(times: list[datetime]) -> str:
    """Aware times as a ``timestamptz[]`` literal, written in UTC (``app.db.in_utc``: in a text
    array PostgreSQL reads each offset itself and refuses one past ±15:59 for the whole
    statement). Scan times, from 2000 to a day ahead: none overflows. msgspec writes them as
    RFC 3339 (``"…Z"``): a JSON array of them is the array literal, in brackets — cheaper than
    ``isoformat`` without the conversion was."""
    return "{" + msgspec.json.encode([t.astimezone(UTC) for t in times])[1:-1].decode() + "}"


async def _insert_units(conn: Conn, ctx: Context, unit_rows: list[_UnitRow]) -> None:
    """The state rows of the new units, in one statement; ``_Race`` if one already exists.
    Inserted in code order, as the rows are locked (``_locked``): two uploads of the same new
    units in opposite scan orders each waited for a row the other had just inserted, a deadlock
    (a probe: the loser's whole upload 409 ``retry``); now the later one waits for the first
    row, then conflicts and plans again (``_Race``), answered per scan."""
    unit_rows = sorted(unit_rows, key=itemgetter(0))
    inserted = await (
        await conn.execute(
            """INSERT INTO unit_state (code, brand_id, product_id, lot, production_date,
                   status, disposition, holder_org_id, parent_sscc, line_id, activated_at,
                   last_event_id, client_event_id)
               SELECT d.code, %(brand)s, %(product)s, %(lot)s, %(made)s, 'active',
                      CASE WHEN d.parent IS NULL THEN 'active' ELSE 'in_progress' END,
                      %(org)s, d.parent, %(line)s, d.at, d.event, d.client
               FROM unnest(%(codes)s::bigint[], %(parents)s::bigint[],
                           %(times)s::timestamptz[], %(events)s::bigint[], %(clients)s::text[])
                    AS d (code, parent, at, event, client)
               ON CONFLICT (code) DO NOTHING RETURNING code""",
            {
                "brand": ctx.brand_id,
                "product": ctx.product_id,
                "lot": ctx.lot,
                "made": ctx.production_date,
                "org": ctx.org_id,
                "line": ctx.line.id,
                "codes": array([r[0] for r in unit_rows]),
                "parents": array([r[1] for r in unit_rows]),
                "times": _utc_times([r[2] for r in unit_rows]),
                "events": array([r[3] for r in unit_rows]),
                "clients": array([r[4] for r in unit_rows]),
            },
        )
    ).fetchall()
    if len(inserted) != len(unit_rows):
        raise _Race


async def _insert_cases(conn: Conn, ctx: Context, plan: _Plan, agg_id: dict[int, int]) -> None:
    """The state rows of the new containers, in one statement; ``_Race`` if one already exists.
    A container's last event is its parent's aggregation, else its own. In SSCC order, as
    ``_insert_units`` inserts the units."""
    rows = [
        (
            code,
            s.read.batch,
            s.read.level,
            plan.parent_of.get(("case", code)),
            s.scan.at,
            s.scan.id,
        )
        for code, s in sorted(plan.new_cases.items(), key=itemgetter(0))
    ]
    inserted = await (
        await conn.execute(
            """INSERT INTO case_state (sscc, brand_id, case_batch_id, level, product_id, lot,
                   status, disposition, holder_org_id, parent_sscc, line_id, packed_at,
                   last_event_id, client_event_id)
               SELECT d.sscc, %(brand)s, d.batch, d.level, %(product)s, %(lot)s, 'active',
                      'in_progress', %(org)s, d.parent, %(line)s, d.at, d.event, d.client
               FROM unnest(%(ssccs)s::bigint[], %(batches)s::bigint[], %(levels)s::text[],
                           %(parents)s::bigint[], %(times)s::timestamptz[],
                           %(events)s::bigint[], %(clients)s::text[])
                    AS d (sscc, batch, level, parent, at, event, client)
               ON CONFLICT (sscc) DO NOTHING RETURNING sscc""",
            {
                "brand": ctx.brand_id,
                "product": ctx.product_id,
                "lot": ctx.lot,
                "org": ctx.org_id,
                "line": ctx.line.id,
                "ssccs": array([r[0] for r in rows]),
                "batches": array([r[1] for r in rows]),
                "levels": array([r[2] for r in rows]),
                "parents": array([r[3] for r in rows]),
                "times": _utc_times([r[4] for r in rows]),
                "events": array([agg_id.get(r[3] or -1, agg_id.get(r[0], 0)) for r in rows]),
                "clients": array([r[5] for r in rows]),
            },
        )
    ).fetchall()
    if len(inserted) != len(rows):
        raise _Race


_UPDATE_EXISTING = """UPDATE {table} t SET parent_sscc = coalesce(d.parent, t.parent_sscc),
        -- a unit returned damaged or expired stays so (NOT_FOR_SALE; a stock probe: packed
        -- into a case, it was sold again)
        disposition = CASE WHEN d.parent IS NULL OR t.disposition IN ('damaged', 'expired')
                           THEN t.disposition ELSE 'in_progress' END,
        last_event_id = coalesce(d.event, t.last_event_id),
        rescan_client_event_ids = CASE WHEN d.client IS NULL THEN t.rescan_client_event_ids
            ELSE (array_prepend(d.client, t.rescan_client_event_ids))[1:16] END,
        updated_at = now()
    FROM unnest(%({kind}_codes)s::bigint[], %({kind}_parents)s::bigint[],
                %({kind}_events)s::bigint[], %({kind}_clients)s::text[])
         AS d (code, parent, event, client)
    WHERE t.{key} = d.code AND (d.parent IS NULL OR t.parent_sscc IS NULL) RETURNING 1"""


async def _update_existing(
    conn: Conn,
    scans: list[_Scan],
    plan: _Plan,
    agg_id: dict[int, int],
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
) -> None:
    """Codes that existed before this upload, in one statement for both tables: those now packed
    get their container (only codes still unpacked are bound: ``_Race`` otherwise), and those
    whose scan was accepted keep the scan's client event id among their ``rescans``, so that a
    retry of the upload answers ``duplicate`` (a probe: a unit active before and packed, or a
    case closed again over more units, answered ``ok`` again)."""
    if not unit_state and not case_state:  # a line's new codes only: the hot path
        return
    rows: dict[str, dict[int, list[int | str | None]]] = {"unit": {}, "case": {}}
    for (kind, code), parent in plan.parent_of.items():
        if code in (unit_state if kind == "unit" else case_state):
            rows[kind][code] = [parent, agg_id[parent], None]
    for s in scans:
        read = s.read
        if s.result == "ok" and read.code in (unit_state if read.kind == "unit" else case_state):
            rows[read.kind].setdefault(read.code, [None, None, None])[2] = s.scan.id
    if not rows["unit"] and not rows["case"]:
        return
    params = {}
    for kind, by_code in rows.items():
        params[f"{kind}_codes"] = array(list(by_code))
        for i, column in enumerate(("parents", "events", "clients")):
            params[f"{kind}_{column}"] = array([row[i] for row in by_code.values()])
    unit_sql = _UPDATE_EXISTING.format(table="unit_state", key="code", kind="unit")
    case_sql = _UPDATE_EXISTING.format(table="case_state", key="sscc", kind="case")
    row = await (
        await conn.execute(
            f"""WITH u AS ({unit_sql}), c AS ({case_sql})
                SELECT (SELECT count(*) FROM u) AS units, (SELECT count(*) FROM c) AS cases""",
            params,
        )
    ).fetchone()
    assert row is not None
    if (row["units"], row["cases"]) != (len(rows["unit"]), len(rows["case"])):
        raise _Race


def _fill_parents(
    scans: list[_Scan],
    plan: _Plan,
    unit_state: dict[int, _UnitState],
    case_state: dict[int, _CaseState],
) -> None:
    """Each accepted scan's container for its answer: the one it was packed in now, else the
    one it was in before (new units got theirs in ``_commission``)."""
    for s in scans:
        if s.result == "ok" and s.read.kind == "unit" and s.parent is None:
            s.parent = plan.parent_of.get(("unit", s.read.code))
            if s.parent is None and s.read.code in unit_state:
                s.parent = unit_state[s.read.code].parent_sscc
        elif s.result == "ok" and s.read.kind == "case":
            s.parent = plan.parent_of.get(("case", s.read.code))
            if s.parent is None and s.read.code in case_state:
                s.parent = case_state[s.read.code].parent_sscc


# -- reads of step 2 ------------------------------------------------------------------------------


async def _locked(conn: Conn, row: type[_S], codes: list[int]) -> dict[int, _S]:
    """State rows of these codes, locked (in key order) until the upload commits. The rows
    alone are locked (a subquery), then joined to their organisations: locked with the join,
    a row moved meanwhile by a transaction the lock waited for (a receipt) was rechecked
    against its old holder's ``orgs`` row and dropped, read as a code never activated."""
    if not codes:
        return {}
    table, key = ("unit_state", "code") if row is _UnitState else ("case_state", "sscc")
    names = [key, "status", "parent_sscc", "product_id", "lot"]
    names += [] if table == "unit_state" else ["level", "disposition"]
    names += ["client_event_id", "rescan_client_event_ids"]
    columns = ", ".join(f"s.{name}" for name in names)
    cur = conn.cursor(row_factory=args_row(row))  # positional: the SELECT is in field order
    await cur.execute(
        f"SELECT {columns}, h.path AS holder_path, t.path AS transit_path FROM ("
        f"SELECT {', '.join(names)}, holder_org_id, transit_to FROM {table} "
        f"WHERE {key} = ANY(%s::bigint[]) ORDER BY {key} FOR UPDATE) s "
        "JOIN orgs h ON h.id = s.holder_org_id LEFT JOIN orgs t ON t.id = s.transit_to",
        (array(codes),),
    )
    return {state.code: state for state in await cur.fetchall()}


async def _child_counts(conn: Conn, cases: list[int]) -> dict[int, int]:
    """How many units and cases each of these (existing) containers holds now."""
    if not cases:
        return {}
    rows = await (
        await conn.execute(
            """SELECT parent_sscc, count(*) AS n FROM (
                   SELECT parent_sscc FROM unit_state WHERE parent_sscc = ANY(%(c)s::bigint[])
                   UNION ALL
                   SELECT parent_sscc FROM case_state WHERE parent_sscc = ANY(%(c)s::bigint[])) t
               GROUP BY parent_sscc""",
            {"c": array(cases)},
        )
    ).fetchall()
    return {row["parent_sscc"]: row["n"] for row in rows}


async def _rules(conn: Conn, product_id: int) -> dict[str, _Rule]:
    """The product's packing rules by level."""
    cur = conn.cursor(row_factory=args_row(_Rule))
    await cur.execute(
        "SELECT level, quantity, strict FROM packing_rules WHERE product_id = %s", (product_id,)
    )
    return {rule.level: rule for rule in await cur.fetchall()}
