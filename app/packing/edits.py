"""Operator corrections on the line: undo a binding (P4), replace a unit that failed QC (P5).

Each correction is new events (unpacking, decommissioning, replacing) plus the state change in
the same transaction, and an audit row; nothing already recorded is edited.

Corrections apply only to goods on hand: held by an organisation of the caller's subtree (the
holder or its ancestors), not in transit, not sold. A code that was never activated or packed, or
whose goods are held outside the caller's subtree, answers 404 ``unknown_code`` alike (scoping:
as if it did not exist); goods in transit (to or from the caller's subtree) or sold answer 409
``not_on_hand``. A replacement unit takes over the old one's whole state (holder, container,
designated channel and store), so stock does not change; a unit whose code earned its reward (a
points or rebate claim, a lucky draw) is not replaced (``_unclaimed``), and an undo of a packing
takes out the units that replaced its units in the case (``_replacements``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import msgspec
from psycopg.rows import class_row

from app import audit
from app.auth.principal import Principal
from app.codes.batches import codes_of, serials_of
from app.codes.lookup import VOID_STATES, Read, read_codes, sscc_label
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import Conflict, NotFound, Unprocessable
from app.events import builders
from app.events.log import NewEvent, allocate_ids, write_events
from app.logistics.movements import GONE_DISPOSITIONS, NOT_FOR_SALE, lock_cases
from app.packing.lines import commissions, get_line
from app.packing.scans import batches_in_use
from app.packing.schemas import EditOut, ReplaceIn, UnpackIn


async def _one(
    conn: Conn, scheme: Scheme, actor: Principal, text: str, kind: str, target: bool = True
) -> Read:
    """Read one code. For the code being corrected (``target``) one not issued to this brand is
    not found, like one that was never activated or is held elsewhere (see ``_on_hand``)."""
    read = (await read_codes(conn, scheme, actor.brand_id, [text]))[0]
    if read.kind != kind:
        raise Unprocessable(f"expected a {kind} code, got a {read.kind} code", code="wrong_kind")
    if target and read.reason in ("unknown", "unknown_case"):
        raise _not_found(read.label)
    if read.reason is not None:
        raise Unprocessable(f"{read.label}: {read.reason}", code=read.reason)
    return read


def _not_found(label: str) -> NotFound:
    return NotFound(f"{label}: no such code here", code="unknown_code")


class _Held(msgspec.Struct, frozen=True, gc=False):
    """The state of a case to correct: where its goods are (``_on_hand``)."""

    status: str
    disposition: str  # a case sold or given away whole stays active: ``GONE_DISPOSITIONS``
    holder_org_id: int
    transit_to: int | None
    parent_sscc: int | None
    holder_path: str  # of the holder
    transit_path: str | None  # of the organisation it is in transit to


class _UnitHeld(_Held, frozen=True, gc=False):
    """The state of a unit to correct: also all that its replacement takes over."""

    brand_id: int
    product_id: int
    lot: str
    production_date: date
    channel_org_id: int | None
    line_id: int | None
    store_org_id: int | None
    salesperson_id: int | None
    shipped_at: datetime | None


_H = TypeVar("_H", _Held, _UnitHeld)


def _located(row: type[_Held], table: str, key: str) -> str:
    """The locked state row of a unit or case to correct, with where its goods are. The row
    alone is locked (a subquery), then joined to its organisations: locked with the join
    (``FOR UPDATE OF s``), a row moved by a transaction it waited for was rechecked against
    the old holder's ``orgs`` row and dropped, a 404 for goods just received (a probe)."""
    names = [name for name in row.__struct_fields__ if not name.endswith("_path")]
    columns = ", ".join(f"s.{name}" for name in names)
    return f"""SELECT {columns}, h.path AS holder_path, t.path AS transit_path
    FROM (SELECT {", ".join(names)} FROM {table} WHERE {key} = %s FOR UPDATE) s
    JOIN orgs h ON h.id = s.holder_org_id LEFT JOIN orgs t ON t.id = s.transit_to"""


_LOCATED = {
    _Held: _located(_Held, "case_state", "sscc"),
    _UnitHeld: _located(_UnitHeld, "unit_state", "code"),
}


async def _on_hand(conn: Conn, actor: Principal, row_type: type[_H], code: int, label: str) -> _H:
    """The locked state of the unit (``_UnitHeld``) or case (``_Held``) to correct, if the
    caller may correct it now: 404 unless its goods are held by (or on their way to) the
    caller's subtree, 409 unless they are on hand there (active, not in transit, not sold or
    given away: a case gone with its units stays ``active``, its disposition says it is gone —
    a probe unpacked a pallet given away, an unpacking written for goods that had left)."""
    cur = conn.cursor(row_factory=class_row(row_type))
    await cur.execute(_LOCATED[row_type], (code,))
    row = await cur.fetchone()
    if row is None or not (
        actor.sees(row.holder_path)
        or (row.transit_path is not None and actor.sees(row.transit_path))
    ):
        raise _not_found(label)
    if row.status in VOID_STATES:
        raise Conflict(
            f"{label} is {row.status}", code="void" if row_type is _UnitHeld else "case_void"
        )
    gone = row.status == "sold" or row.disposition in GONE_DISPOSITIONS
    if gone or row.transit_to is not None:
        where = "sold or given away" if gone else "in transit"
        raise Conflict(
            f"{label} is {where}: only goods on hand can be corrected, by their holder",
            code="not_on_hand",
        )
    return row


async def _children(conn: Conn, sscc: int) -> list[tuple[str, int]]:
    """What a container holds now: its units, then its cases; locked until the correction
    commits, the cases first, as a document locks them (``logistics.movements.expand``) — the
    caller has locked the container's case tree before (``lock_cases``; a probe: units first,
    then the container, deadlocked with a confirm)."""
    return [(kind, code) for kind, code, _ in await _inside(conn, sscc)]


async def _inside(
    conn: Conn,
    sscc: int,
    packing: int | None = None,
    lock: bool = True,
    units: Collection[int] = (),
) -> list[tuple[str, int, int]]:
    """``_children`` with each one's last event; with ``packing`` (an aggregation event) only
    the children it put there — those it lists (``event_codes``, by its key) — still inside,
    and the ``units`` named (those that took the place of one of them: ``_replacements``)."""
    found: dict[str, list[tuple[str, int, int]]] = {}
    for kind, table, key in (("case", "case_state", "sscc"), ("unit", "unit_state", "code")):
        rows = await (
            await conn.execute(
                f"""SELECT t.{key} AS code, t.last_event_id FROM {table} t
                    WHERE t.parent_sscc = %(p)s
                      AND (%(e)s::bigint IS NULL OR EXISTS (
                          SELECT 1 FROM event_codes x WHERE x.code = t.{key}
                            AND x.kind = '{kind[0]}' AND x.event_id = %(e)s)
                          OR t.{key} = ANY(%(u)s))
                    ORDER BY t.{key}{" FOR UPDATE OF t" if lock else ""}""",
                {"p": sscc, "e": packing, "u": list(units) if kind == "unit" else []},
            )
        ).fetchall()
        found[kind] = [(kind, row["code"], row["last_event_id"]) for row in rows]
    return found["unit"] + found["case"]


async def _all_on_hand(conn: Conn, children: list[tuple[str, int]]) -> None:
    """Children leave their container only while on hand (a sold unit stays where it was sold;
    its container's other children share its place, so they are checked with the container; a
    case given away or sold whole is gone with its units: ``GONE_DISPOSITIONS``).
    A void unit is goods no more and may always leave: a batch's void left its units inside
    their cases until a probe found those cases stuck (``codes.service._decommission`` takes
    them out now; a case voided before still holds them)."""
    units = [code for kind, code in children if kind == "unit"]
    cases = [code for kind, code in children if kind == "case"]
    row = await (
        await conn.execute(
            """SELECT (SELECT count(*) FROM unit_state WHERE code = ANY(%(u)s)
                         AND status <> ALL(%(void)s)
                         AND (status <> 'active' OR transit_to IS NOT NULL))
                    + (SELECT count(*) FROM case_state WHERE sscc = ANY(%(c)s)
                         AND (status <> 'active' OR transit_to IS NOT NULL
                              OR disposition = ANY(%(gone)s))) AS n""",
            {"u": units, "c": cases, "void": list(VOID_STATES), "gone": list(GONE_DISPOSITIONS)},
        )
    ).fetchone()
    if row is not None and row["n"]:
        raise Conflict(
            f"{row['n']} of these codes are not on hand (sold, given away or in transit)",
            code="not_on_hand",
        )


async def _take_out(
    conn: Conn,
    actor: Principal,
    scheme: Scheme,
    sscc: int,
    children: list[tuple[str, int]],
    reason: str,
    read_point: str | None,
    holder: int,
    at: datetime | None = None,
) -> EditOut:
    """Unpacking: an AggregationEvent DELETE, the children's parent cleared, an audit row.
    The container was checked with ``_on_hand``; ``holder`` holds it. The event is dated
    ``at`` (an EPCIS unpacking's eventTime), else now (an operator's correction)."""
    await _all_on_hand(conn, children)
    [event_id] = await allocate_ids(conn, 1)
    units = [code for kind, code in children if kind == "unit"]
    cases = [code for kind, code in children if kind == "case"]
    for table, key, codes in (("unit_state", "code", units), ("case_state", "sscc", cases)):
        if codes:
            await conn.execute(
                f"""UPDATE {table} SET parent_sscc = NULL, last_event_id = %s, updated_at = now()
                    WHERE {key} = ANY(%s)""",
                (event_id, codes),
            )
    await write_events(
        conn,
        [
            builders.disaggregate(
                id=event_id,
                brand_id=actor.brand_id,
                at=at or datetime.now(UTC),
                disposition="in_progress",
                parent=sscc,
                units=units,
                cases=cases,
                read_point=read_point,
                biz_location=holder,
                recorded_by=actor.person,
                details={"reason": reason},
            )
        ],
    )
    serials = await serials_of(conn, scheme, units)
    labels = [serials.get(code, str(code)) for code in units] + [sscc_label(c) for c in cases]
    out = EditOut(event_ids=[event_id], parent=sscc_label(sscc), codes=labels)
    after = {"reason": reason, "codes": labels}
    await audit.record(conn, actor, "unpack", "case", sscc_label(sscc), after=after, org_id=holder)
    return out


async def unpack(
    conn: Conn, actor: Principal, scheme: Scheme, data: UnpackIn, at: datetime | None = None
) -> EditOut:
    """Undo a binding: take the named children (default: all) out of the container, now — or
    at ``at``, an EPCIS unpacking's eventTime (``app.epcis.capture``), taking out only what was
    inside then: a child packed into the container after ``at`` stays in it when no children
    are named and is refused ``not_in_container`` when named. An unpacking is never written
    before the packing it undoes, and late events leave the same state in any arrival order (a
    probe: a late unpacking of all emptied a case of a unit packed into it an hour after)."""
    actor.require("packing.scan")
    parent = await _one(conn, scheme, actor, data.parent, "case")
    await lock_cases(conn, [parent.code])  # the whole tree in a document's order
    case = await _on_hand(conn, actor, _Held, parent.code, parent.label)
    inside = await _children(conn, parent.code)
    later = await _packed_after(conn, parent.code, inside, at) if at else set()
    if data.children is None:
        chosen = [child for child in inside if child not in later]
    else:
        chosen = await _named(conn, scheme, actor, data.children, inside, later)
    if not chosen:
        raise Conflict(
            "the container is empty" if not inside else "the container was empty at that time",
            code="empty_case",
        )
    return await _take_out(
        conn, actor, scheme, parent.code, chosen, data.reason, None, case.holder_org_id, at
    )


async def _named(
    conn: Conn,
    scheme: Scheme,
    actor: Principal,
    texts: list[str],
    inside: list[tuple[str, int]],
    later: set[tuple[str, int]],
) -> list[tuple[str, int]]:
    """The children an unpacking names, each one inside the container (``inside``) and packed
    into it by the unpacking's time (not in ``later``), else 422 ``not_in_container``."""
    reads = await read_codes(conn, scheme, actor.brand_id, texts)
    held = set(inside)  # a set: a list searched per name was quadratic (a case of 19,999 units)
    # a void unit still inside (see ``_all_on_hand``) is named to take it out
    bad = [r.label for r in reads if r.reason not in (None, "void") or (r.kind, r.code) not in held]
    if bad:
        raise Unprocessable(
            "these codes are not in the container",
            code="not_in_container",
            details={"codes": bad},
        )
    late = [r.label for r in reads if (r.kind, r.code) in later]
    if late:
        raise Unprocessable(
            "these codes were packed into the container after the unpacking's time",
            code="not_in_container",
            details={"codes": late},
        )
    return sorted({(r.kind, r.code) for r in reads})


async def _packed_after(
    conn: Conn, sscc: int, children: list[tuple[str, int]], at: datetime
) -> set[tuple[str, int]]:
    """The children whose packing into the container is dated after ``at``: the newest
    aggregation ADD into it that names each (by event id: the one that put it there now — a
    packing, or a replacement's)."""
    if not children:
        return set()
    units = [code for kind, code in children if kind == "unit"]
    cases = [code for kind, code in children if kind == "case"]
    rows = await (
        await conn.execute(
            """SELECT DISTINCT ON (x.kind, x.code) x.kind, x.code, e.event_time
               FROM event_codes x JOIN events e ON e.id = x.event_id
               WHERE ((x.kind = 'u' AND x.code = ANY(%(u)s))
                      OR (x.kind = 'c' AND x.code = ANY(%(c)s)))
                 AND e.parent_code = %(p)s AND e.event_type = 'AggregationEvent'
                 AND e.action = 'ADD'
               ORDER BY x.kind, x.code, e.id DESC""",
            {"u": units, "c": cases, "p": sscc},
        )
    ).fetchall()
    kinds = {"u": "unit", "c": "case"}
    return {(kinds[r["kind"]], r["code"]) for r in rows if r["event_time"] > at}


async def undo_last(
    conn: Conn, actor: Principal, scheme: Scheme, line_code: str, reason: str
) -> EditOut:
    """Undo the line's newest packing whose children are still in their container; 409
    ``packing_moved`` if that packing was moved since (``_in_place``), never an older one."""
    actor.require("packing.scan")
    line = await get_line(conn, actor, line_code)
    read_point = f"line:{line.code}"
    async for sscc, packing in _packings(conn, actor.org_id, read_point):
        label = sscc_label(sscc)
        if not await _in_place(conn, actor, scheme, sscc, packing, label, lock=False):
            continue  # undone or unpacked at the line already: the packing before it
        await lock_cases(conn, [sscc])  # the whole tree first, in a document's order
        case = await _on_hand(conn, actor, _Held, sscc, label)
        children = await _in_place(conn, actor, scheme, sscc, packing, label)
        if children:  # (none if taken out meanwhile)
            return await _take_out(
                conn, actor, scheme, sscc, children, reason, read_point, case.holder_org_id
            )
    raise NotFound("nothing packed on this line to undo", code="nothing_to_undo")


_PACKINGS = """
SELECT id, parent_code, event_time FROM events
 WHERE biz_location = %(org)s AND read_point = %(point)s AND event_type = 'AggregationEvent'
   AND action = 'ADD' AND (event_time, id) < (%(time)s, %(id)s)
 ORDER BY event_time DESC, id DESC LIMIT 50"""


async def _packings(conn: Conn, org_id: int, read_point: str) -> AsyncIterator[tuple[int, int]]:
    """The line's packings, newest first: (container, packing event), read 50 at a time — all
    of them, past those undone already (a probe: the 51st undo in a row found nothing, the
    line's 50 newest packings all undone)."""
    after: dict[str, Any] = {"time": "infinity", "id": 2**63 - 1}
    while True:
        params = {"org": org_id, "point": read_point, **after}
        rows = await (await conn.execute(_PACKINGS, params)).fetchall()
        for row in rows:
            yield row["parent_code"], row["id"]
        if len(rows) < 50:
            return
        after = {"time": rows[-1]["event_time"], "id": rows[-1]["id"]}


async def _in_place(
    conn: Conn,
    actor: Principal,
    scheme: Scheme,
    sscc: int,
    packing: int,
    label: str,
    lock: bool = True,
) -> list[tuple[str, int]]:
    """The children a packing of the caller's line put into the container that are in it
    still (none: undone or unpacked there), and the units that took the place of one of them
    (``_replacements``), while the packing is where the line left it — else 409
    ``packing_moved``: its children's last event is another than the packing (a replacement's:
    its replacing) — a movement, received into a warehouse, shipped, given away, is the last
    event of every unit and case it moves, inside their containers too —, or the container
    left the caller's organisation. Found by the container and the packing's own list of
    codes: a later event on a child hid it, and the undo took an older case instead (a probe);
    a replacement was left alone in the case, which no later undo reached (a probe)."""
    put = await _replacements(conn, scheme, sscc, packing)
    found = await _inside(conn, sscc, packing, lock, put)
    held = await (
        await conn.execute(
            "SELECT holder_org_id, transit_to FROM case_state WHERE sscc = %s", (sscc,)
        )
    ).fetchone()
    if (
        any(last != put.get(code, packing) for _, code, last in found)
        or held is None
        or held["holder_org_id"] != actor.org_id
        or held["transit_to"] is not None
    ):
        raise Conflict(
            f"{label}, the line's newest packing, was moved since: it cannot be undone here "
            "(its holder unpacks it: POST /packing/unpack)",
            code="packing_moved",
        )
    return [(kind, code) for kind, code, _ in found]


# The replacing aggregations (``_replacing``) that put these units into the container after
# the packing, each unit's newest, and the label of the unit each took the place of.
_REPLACING = """
SELECT DISTINCT ON (x.code) x.code, e.id, e.details->>'replaces' AS replaces
FROM event_codes x JOIN events e ON e.id = x.event_id
WHERE x.kind = 'u' AND x.code = ANY(%(u)s) AND x.event_id > %(e)s
  AND e.event_type = 'AggregationEvent' AND e.action = 'ADD' AND e.biz_step = 'replacing'
  AND e.parent_code = %(p)s
ORDER BY x.code, e.id DESC"""

# The units of the container the packing does not list (the packing's: those it lists).
_NOT_LISTED = """
SELECT t.code FROM unit_state t WHERE t.parent_sscc = %(p)s AND NOT EXISTS (
    SELECT 1 FROM event_codes x WHERE x.code = t.code AND x.kind = 'u' AND x.event_id = %(e)s)"""

_LISTED = """
SELECT code FROM event_codes WHERE kind = 'u' AND code = ANY(%(u)s) AND event_id = %(e)s"""


async def _replacements(conn: Conn, scheme: Scheme, sscc: int, packing: int) -> dict[int, int]:
    """The units in the container that took the place of a unit the packing put there (P5,
    ``replace``: its replacing aggregation into the container names the old label, ``details
    .replaces``), or of a replacement of one, and so on: each with the replacing event that put
    it there — its last event while the packing is where the line left it. An undo takes them
    out with the packing's own units: left alone in the case, no later undo reached them (a
    probe). None in a case no unit of which was replaced (one query)."""
    params: dict[str, Any] = {"p": sscc, "e": packing}
    rows = await (await conn.execute(_NOT_LISTED, params)).fetchall()
    if not rows:
        return {}
    rows = await (
        await conn.execute(_REPLACING, {**params, "u": [r["code"] for r in rows]})
    ).fetchall()
    put = {row["code"]: row["id"] for row in rows}
    step = {row["code"]: _code_of(scheme, row["replaces"]) for row in rows}  # new: old it took
    taken: dict[int, int] = {}
    seen: set[int] = set()
    while step:
        olds = {old for old in step.values() if old is not None and old not in seen}
        seen |= olds
        listed = await (await conn.execute(_LISTED, {**params, "u": list(olds)})).fetchall()
        packed = {row["code"] for row in listed}
        taken.update({new: put[new] for new, old in step.items() if old in packed})
        back = await conn.execute(_REPLACING, {**params, "u": list(olds - packed)})
        before = {row["code"]: _code_of(scheme, row["replaces"]) for row in await back.fetchall()}
        step = {new: before[old] for new, old in step.items() if old in before}
    return taken


def _code_of(scheme: Scheme, label: str | None) -> int | None:
    """The code id of a unit's label as a replacement names it (its canonical serial)."""
    return None if label is None else codes_of(scheme, [label])[0]


async def replace(conn: Conn, actor: Principal, scheme: Scheme, data: ReplaceIn) -> EditOut:
    """The new code takes the old one's place (product info, container); the old is voided.
    The new code is activated by it, so only a factory or the brand replaces (422
    ``not_a_factory``), as only their lines activate codes. An old code that earned its unit's
    reward (claimed, drawn) is not replaced (409, ``_unclaimed``)."""
    actor.require("packing.scan")
    if not await commissions(conn, actor):
        raise Unprocessable(
            "only a factory or the brand relabels units with new codes", code="not_a_factory"
        )
    old = await _one(conn, scheme, actor, data.old, "unit")
    new = await _one(conn, scheme, actor, data.new, "unit", target=False)
    if old.code == new.code:
        raise Unprocessable("the old and the new code are the same", code="same_code")
    # the new code's batch against a void, first, as an upload locks it (``scans._batches_live``;
    # a probe: a replacement racing the void left an active unit in a void batch)
    batch = await (
        await conn.execute(
            "SELECT state FROM code_batches WHERE batch_no = %s FOR KEY SHARE", (new.code >> 32,)
        )
    ).fetchone()
    if batch is None or batch["state"] == "void":
        raise Conflict(f"{new.label} is void: it cannot replace a unit", code="void")
    parent = await _lock_case_of(conn, old.code)
    state = await _on_hand(conn, actor, _UnitHeld, old.code, old.label)
    if state.parent_sscc != parent:  # moved out of (or into) a case meanwhile: not this time
        raise Conflict("the unit was just moved; try again", code="retry")
    await _unclaimed(conn, old)
    await _same_product(conn, new, state.product_id)
    ids = await allocate_ids(conn, 3 if state.parent_sscc else 2)
    now = datetime.now(UTC)
    await _take_over(conn, state, new, ids[-1], now)
    await batches_in_use(conn, [new.code >> 32])  # as an upload's activation does (a probe)
    await conn.execute(
        """UPDATE unit_state SET status = 'void', disposition = 'inactive', parent_sscc = NULL,
               last_event_id = %s, updated_at = now() WHERE code = %s""",
        (ids[0], old.code),
    )
    await write_events(conn, _replacing(actor, state, old, new, data.reason, ids, now))
    await audit.record(
        conn,
        actor,
        "replace",
        "unit",
        old.label,
        after={"new": new.label, "reason": data.reason},
        org_id=state.holder_org_id,
    )
    parent_label = sscc_label(state.parent_sscc) if state.parent_sscc else None
    return EditOut(event_ids=ids, parent=parent_label, codes=[old.label, new.label])


# What a code has earned, live: a points claim or a lucky draw not withdrawn by a consumer's
# return (``withdrawn_at``; a rebate claim withdrawn is deleted), nor rejected by a fraud hold's
# confirmation (``hold_state``: it paid nothing). Held or credited, each owns the code.
_EARNED = """
SELECT EXISTS (SELECT 1 FROM point_claims WHERE code_id = %(c)s AND withdrawn_at IS NULL
                  AND hold_state IS DISTINCT FROM 'rejected') AS points,
       EXISTS (SELECT 1 FROM rebate_claims WHERE code_id = %(c)s
                  AND hold_state IS DISTINCT FROM 'rejected') AS rebate,
       EXISTS (SELECT 1 FROM draws WHERE code_id = %(c)s AND withdrawn_at IS NULL
                  AND hold_state IS DISTINCT FROM 'rejected') AS draw"""


async def _unclaimed(conn: Conn, old: Read) -> None:
    """409 ``already_claimed`` (a points or rebate claim) or ``already_drawn`` (a lucky draw)
    if the old code has earned its unit's reward: the new code would be claimable again, one
    unit paid twice (a probe: a claim made in transit — it sells nothing, the unit stays on
    hand at its receiver — then the unit relabelled, and its new code claimed by another
    member). Asked holding the old unit's row (``_on_hand``), the lock every claim and draw
    round takes on it (``FOR UPDATE OF u``): a claim committed first is read here (a new
    statement, a new snapshot); a round waiting for the lock reads the unit void after it."""
    row = await (await conn.execute(_EARNED, {"c": old.code})).fetchone()
    if row is not None and (row["points"] or row["rebate"]):
        raise Conflict(
            f"{old.label} was claimed: a claimed unit is not relabelled", code="already_claimed"
        )
    if row is not None and row["draw"]:
        raise Conflict(
            f"{old.label} was drawn: a drawn unit is not relabelled", code="already_drawn"
        )


async def _same_product(conn: Conn, new: Read, product_id: int) -> None:
    """422 ``wrong_product`` unless the new code may be a unit of the old one's product: its
    batch assigned to no other product and, read as a Digital Link, naming the product's GTIN —
    as an upload checks a line's scan (``scans._plan_unit``; a probe: a label naming the
    serum's GTIN, of a batch issued without a product, became an active sun-cream unit)."""
    wrong = new.batch_product is not None and new.batch_product != product_id
    if not wrong and new.gtin is not None:
        row = await (
            await conn.execute("SELECT gtin FROM products WHERE id = %s", (product_id,))
        ).fetchone()
        wrong = row is None or row["gtin"] != new.gtin
    if wrong:
        raise Unprocessable(f"{new.label}: wrong_product", code="wrong_product")


async def _lock_case_of(conn: Conn, code: int) -> int | None:
    """Lock the case the unit is in, if any, before the unit — the order of a movement
    (``logistics.movements.expand``): a replacement puts its new unit into that case, which a
    document confirmed at the same moment must not ship without it (probe I). The case."""
    row = await (
        await conn.execute("SELECT parent_sscc FROM unit_state WHERE code = %s", (code,))
    ).fetchone()
    parent = row["parent_sscc"] if row else None
    if parent is not None:
        await conn.execute("SELECT 1 FROM case_state WHERE sscc = %s FOR UPDATE", (parent,))
    return parent  # type: ignore[no-any-return]


async def _take_over(conn: Conn, state: _UnitHeld, new: Read, event_id: int, now: datetime) -> None:
    """The new unit's state row: the old one's place — same holder (on hand, as the old one
    was), container, designated channel and store, shipping time — so stock does not change
    (one active unit out, one in, same organisation, product and lot). 409 ``already_active``
    if the new code is active already, ``void`` if it was voided (replaced itself)."""
    disposition = state.disposition
    if disposition in NOT_FOR_SALE:
        pass  # returned damaged or expired: the new label is not for sale either (a stock probe)
    elif state.parent_sscc:
        disposition = "in_progress"
    elif disposition not in ("sellable_accessible", "sellable_not_accessible"):
        disposition = "active"
    inserted = await (
        await conn.execute(
            """INSERT INTO unit_state (code, brand_id, product_id, lot, production_date, status,
                   disposition, holder_org_id, parent_sscc, channel_org_id, line_id, activated_at,
                   last_event_id, store_org_id, salesperson_id, shipped_at)
               VALUES (%s, %s, %s, %s, %s, 'active', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (code) DO NOTHING RETURNING code""",
            (
                new.code,
                state.brand_id,
                state.product_id,
                state.lot,
                state.production_date,
                disposition,
                state.holder_org_id,
                state.parent_sscc,
                state.channel_org_id,
                state.line_id,
                now,
                event_id,
                state.store_org_id,
                state.salesperson_id,
                state.shipped_at,
            ),
        )
    ).fetchone()
    if inserted is None:  # the code has a state already: active, or void (replaced before)
        row = await (
            await conn.execute("SELECT status FROM unit_state WHERE code = %s", (new.code,))
        ).fetchone()
        if row is not None and row["status"] in VOID_STATES:
            raise Conflict(f"{new.label} is void: it cannot replace a unit", code="void")
        raise Conflict(f"{new.label} is already active", code="already_active")


def _replacing(
    actor: Principal,
    state: _UnitHeld,
    old: Read,
    new: Read,
    reason: str,
    ids: list[int],
    now: datetime,
) -> list[NewEvent]:
    """The replacement's events: the old unit decommissioned, the new one commissioned with the
    old one's product, lot and production date, and put in the old one's container (if any)."""
    brand, holder = actor.brand_id, state.holder_org_id
    info = {
        "product_id": state.product_id,
        "lot": state.lot,
        "production_date": state.production_date.isoformat(),
    }
    events = [
        builders.decommission(
            id=ids[0],
            brand_id=brand,
            at=now,
            units=[old.code],
            recorded_by=actor.person,
            details={"reason": reason, "replaced_by": new.label},
            biz_location=holder,
        ),
        builders.commission(
            id=ids[1],
            brand_id=brand,
            at=now,
            units=[new.code],
            recorded_by=actor.person,
            details={**info, "replaces": old.label},
            biz_location=holder,
        ),
    ]
    if state.parent_sscc:
        events.append(
            builders.aggregate(
                id=ids[2],
                brand_id=brand,
                at=now,
                biz_step="replacing",
                parent=state.parent_sscc,
                units=[new.code],
                recorded_by=actor.person,
                details={"replaces": old.label, "reason": reason},
                biz_location=holder,
            )
        )
    return events
