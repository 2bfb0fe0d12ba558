"""Trace of one code (SPEC L11): product, batch, current state, every event in time order, the
containers it travelled in (with their events while it was inside) and, for a case, its contents.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any, Literal

import msgspec

from app.auth.principal import Principal
from app.codes.batches import codes_of, serials_of, split_code_id
from app.codes.lookup import read_codes, sscc_label
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import NotFound, Unprocessable, ValidationFailed
from app.events.log import CASE, UNIT, CodeKind, events_of

_MAX_DEPTH = 4  # unit → inner → master → pallet
_MAX_RELABELS = 8  # replacements of replacements followed back (P5), at most


class OrgRef(msgspec.Struct, frozen=True):
    id: int
    name: str
    kind: str


class ProductRef(msgspec.Struct, frozen=True):
    id: int
    name: str
    spec: str
    gtin: str | None


class BatchInfo(msgspec.Struct, frozen=True, kw_only=True):
    batch_no: int | None = None  # unit codes
    index: int | None = None
    case_batch_id: int | None = None  # case codes
    level: str | None = None
    issued_at: datetime
    printer: OrgRef | None


class StateOut(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    disposition: str
    holder: OrgRef | None
    parent: str | None
    channel: OrgRef | None
    since: datetime  # activated (unit) or first packed (case)
    shipped_at: datetime | None
    updated_at: datetime


class ContainerStay(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    level: str | None
    inside: str  # the code it held: the traced code or a container of it
    added_at: datetime
    removed_at: datetime | None


# A container stay and the id of the event that ended it (None: the code is still inside).
Stay = tuple[ContainerStay, int | None]


class Content(msgspec.Struct, frozen=True):
    kind: Literal["unit", "case"]
    code: str


class TraceEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    event_id: str  # urn:uuid:…
    type: str
    action: str
    biz_step: str
    disposition: str | None
    event_time: datetime
    tz_offset: str
    record_time: datetime
    read_point: str | None
    location: OrgRef | None
    source: OrgRef | None
    destination: OrgRef | None
    biz_transactions: list[dict[str, str]] | None
    parent: str | None
    child_count: int
    # the code whose event this is, when not the traced code's own: a container it (or a code
    # it replaced) was in, or the unit it replaced (P5, ``_replaced``)
    via: str | None
    details: dict[str, Any] | None
    error_declaration: dict[str, Any] | None


class TraceOut(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["unit", "case"]
    code: str
    product: ProductRef | None
    lot: str | None
    production_date: date | None
    batch: BatchInfo
    state: StateOut | None  # None: issued but never activated / packed
    containers: list[ContainerStay]
    contents: list[Content]
    events: list[TraceEvent]


async def trace(conn: Conn, actor: Principal, scheme: Scheme, text: str) -> TraceOut:
    """The trace as the caller may see it (see ``_scope``); the member of a points claim
    (``details.member_id`` of its ``claiming`` event) only to the brand's staff who read members
    (``members.read``; a probe: the ERP partner, the inspector and finance read which member
    bought which serial)."""
    actor.require("orgs.read")
    read = (await read_codes(conn, scheme, actor.brand_id, [text]))[0]
    if read.reason == "malformed":
        raise ValidationFailed("not a serial or SSCC", code="malformed_code")
    if read.reason in ("forged", "invalid_sscc"):
        raise Unprocessable("not a genuine code", code="not_genuine")
    if read.reason in ("unknown", "unknown_case"):
        raise NotFound("no such code was issued to this brand", code="unknown_code")
    kind: CodeKind = UNIT if read.kind == "unit" else CASE
    # the batch, the state row and the product in one round trip
    if kind == UNIT:
        sql = """SELECT b.created_at, b.printer_id, u.status, u.disposition, u.holder_org_id,
                        u.parent_sscc, u.channel_org_id, u.activated_at AS since, u.shipped_at,
                        u.updated_at, u.product_id, u.lot, u.production_date,
                        p.name AS product_name, p.spec, p.gtin
                 FROM code_batches b
                 LEFT JOIN unit_state u ON u.code = %(code)s
                 LEFT JOIN products p ON p.id = u.product_id
                 WHERE b.batch_no = %(batch)s"""
        batch = split_code_id(read.code)[0]
    else:
        sql = """SELECT b.created_at, b.printer_id, c.status, c.disposition, c.holder_org_id,
                        c.parent_sscc, c.channel_org_id, c.packed_at AS since, c.shipped_at,
                        c.updated_at, c.product_id, c.lot, NULL::date AS production_date,
                        p.name AS product_name, p.spec, p.gtin
                 FROM case_batches b
                 LEFT JOIN case_state c ON c.sscc = %(code)s
                 LEFT JOIN products p ON p.id = c.product_id
                 WHERE b.id = %(batch)s"""
        batch = read.batch
    found = await (await conn.execute(sql, {"code": read.code, "batch": batch})).fetchone()
    assert found is not None  # read_codes found the batch
    batch_row = found
    state = found if found["status"] is not None else None
    own = await events_of(conn, kind, read.code)
    stays, foreign = await _containers(conn, kind, read.code, read.label, own, 0)
    if kind == UNIT:
        earlier_stays, earlier = await _replaced(conn, scheme, own)
        stays, foreign = earlier_stays + stays, earlier + foreign  # the earlier stays first
    contents = await _contents(conn, scheme, read.code) if kind == CASE else []
    rows: list[tuple[dict[str, Any], str | None]] = sorted(
        [*((e, None) for e in own), *foreign],
        key=lambda pair: (pair[0]["event_time"], pair[0]["id"]),
    )
    org_ids = {
        e[k] for e, _ in rows for k in ("biz_location", "source_org", "destination_org") if e[k]
    }
    if state:
        org_ids |= {state["holder_org_id"], state["channel_org_id"]} - {None}
    if batch_row:
        org_ids.add(batch_row["printer_id"])
    orgs, paths = await _orgs(conn, org_ids)
    printer = orgs.get(batch_row["printer_id"])
    names_members = _brand_level(actor) and actor.has("members.read")
    if not _brand_level(actor):
        rows, stays = _scope(actor, paths, state, rows, stays)
        if not actor.sees(paths.get(batch_row["printer_id"], "")):
            printer = None
        if not (state and actor.sees(paths.get(state["holder_org_id"], ""))):
            contents = []  # what a case holds now, for its holder only (a probe: a former
            # holder read the serials another organisation packed into it since)
    product = None
    if state and state["product_id"] and state["product_name"] is not None:
        product = ProductRef(
            state["product_id"], state["product_name"], state["spec"], state["gtin"]
        )
    return TraceOut(
        kind=read.kind,
        code=read.label,
        product=product,
        lot=state["lot"] if state else None,
        production_date=state["production_date"] if state else None,
        batch=BatchInfo(
            batch_no=split_code_id(read.code)[0] if kind == UNIT else None,
            index=split_code_id(read.code)[1] if kind == UNIT else None,
            case_batch_id=read.batch if kind == CASE else None,
            level=read.level if kind == CASE else None,
            issued_at=batch_row["created_at"],
            printer=printer,
        ),
        state=StateOut(
            status=state["status"],
            disposition=state["disposition"],
            holder=orgs.get(state["holder_org_id"]),
            parent=sscc_label(state["parent_sscc"]) if state["parent_sscc"] else None,
            channel=orgs.get(state["channel_org_id"]) if state["channel_org_id"] else None,
            since=state["since"],
            shipped_at=state["shipped_at"],
            updated_at=state["updated_at"],
        )
        if state
        else None,
        containers=[stay for stay, _ in stays],
        contents=contents,
        events=[_event(e, via, orgs, names_members) for e, via in rows],
    )


async def _containers(
    conn: Conn,
    kind: CodeKind,
    code: int,
    label: str,
    own: list[dict[str, Any]],
    depth: int,
    until: dict[str, Any] | None = None,
    since: dict[str, Any] | None = None,
) -> tuple[list[Stay], list[tuple[dict[str, Any], str]]]:
    """The containers this code was put in (from its aggregation events) and, recursively, their
    containers, each stay with the id of the event that ended it (None: not ended); with the
    containers' own events during each stay. A stay is the events written
    between its packing and its unpacking, by event id: the scanner's time of a packing may be
    days behind (an offline scanner), and by time a unit packed today took in its case's earlier
    shipments, and the organisations on them saw its trace (a probe). A code decommissioned (a
    replaced unit) left its containers then; a container's own stay in another ends, for the code
    inside it, when the code left the container (``until``): a unit taken out of a case on a
    pallet took in the pallet's later shipments, and its receivers saw its trace (a probe); and
    it starts, for the code inside, when the code entered the container (``since``): a unit
    packed into a case already on a pallet travelled in the pallet from then on (a probe: its
    trace had neither the pallet nor its shipment). ``own`` is the code's history up to the end
    of the stay, so that the stays still open at ``since`` are known."""
    if depth >= _MAX_DEPTH:
        return [], []
    opened: dict[int, dict[str, Any]] = {}
    spans: list[tuple[int, dict[str, Any], dict[str, Any] | None]] = []
    for e in sorted(own, key=lambda e: e["id"]):  # as written
        parent = e["parent_code"]
        if e["event_type"] == "ObjectEvent" and e["action"] == "DELETE":  # decommissioned
            spans += [(parent, packed, e) for parent, packed in opened.items()]
            opened.clear()
            continue
        if (
            e["event_type"] != "AggregationEvent"
            or parent is None
            or (kind == CASE and parent == code)
        ):
            continue
        if e["action"] == "ADD":
            opened.setdefault(parent, e)
        elif e["action"] == "DELETE" and parent in opened:
            spans.append((parent, opened.pop(parent), e))
    spans += [(parent, packed, until) for parent, packed in opened.items()]
    if until is not None:  # within the outer stay: ended by it at the latest
        spans = [
            (p, packed, end if end is not None and end["id"] < until["id"] else until)
            for p, packed, end in spans
        ]
    if since is not None:  # within the outer stay: begun by it at the earliest
        spans = [
            (p, packed if packed["id"] > since["id"] else since, end)
            for p, packed, end in spans
            if end is None or end["id"] > since["id"]
        ]
    stays: list[Stay] = []
    foreign: list[tuple[dict[str, Any], str]] = []
    # a packing event says the level of the container it packed into; ask only when it does not
    levels = {
        e["parent_code"]: e["details"]["level"]
        for e in own
        if e["event_type"] == "AggregationEvent" and (e["details"] or {}).get("level")
    }
    missing = [s[0] for s in spans if s[0] not in levels]
    levels.update(await _levels(conn, missing))
    for parent, packed, unpacked in sorted(spans, key=lambda s: s[1]["id"]):
        parent_label = sscc_label(parent)
        stay = ContainerStay(
            code=parent_label,
            level=levels.get(parent),
            inside=label,
            added_at=packed["event_time"],
            removed_at=unpacked["event_time"] if unpacked else None,
        )
        stays.append((stay, unpacked["id"] if unpacked else None))
        # the container's own history until it let the code go (one query), not the packing of
        # its other items; its events while it held the code are the trace's
        events = await events_of(conn, CASE, parent, None, unpacked["id"] + 1 if unpacked else None)
        history = [e for e in events if e["parent_code"] != parent]
        foreign += [(e, parent_label) for e in history if e["id"] >= packed["id"]]
        deeper_stays, deeper = await _containers(
            conn, CASE, parent, parent_label, history, depth + 1, unpacked, packed
        )
        stays += deeper_stays
        foreign += deeper
    return stays, foreign


async def _replaced(
    conn: Conn, scheme: Scheme, own: list[dict[str, Any]]
) -> tuple[list[Stay], list[tuple[dict[str, Any], str]]]:
    """The history of the unit this one replaced (P5: its commissioning — and its replacing
    into the old one's case — names the old serial, ``details.replaces``), up to the
    replacement: the old code's own events (``via`` its serial) and its containers' while it was
    in them (as ``_containers``: ``via`` the container, whose stay names the old serial as what
    it held, ``inside``; the old code's decommissioning ends them); and so on back through a
    replacement of a replacement, ``_MAX_RELABELS`` at most (``_relabels``). The new code took
    over the old one's state — holder, channel, shipping time —, so its trace shows how the
    goods got there (a probe: a unit relabelled at its agent had no factory outbound in its
    trace, its untouched sibling had). The caller's scope (``_scope``) applies to these events
    as to the others."""
    stays: list[Stay] = []
    foreign: list[tuple[dict[str, Any], str]] = []
    async for code, label, old in _relabels(conn, scheme, own):
        more_stays, more = await _containers(conn, UNIT, code, label, old, 0)
        stays = more_stays + stays
        foreign += [(e, label) for e in old] + more
    return stays, foreign


async def replaced_units(conn: Conn, scheme: Scheme, code: int) -> dict[int, str]:
    """The units a unit replaced (P5), as its trace follows them (``_relabels``): code id →
    serial, the latest replaced first. An evidence pack of the unit reads their alerts and
    verifications too."""
    own = await events_of(conn, UNIT, code)
    return {old: label async for old, label, _ in _relabels(conn, scheme, own)}


async def _relabels(
    conn: Conn, scheme: Scheme, own: list[dict[str, Any]]
) -> AsyncIterator[tuple[int, str, list[dict[str, Any]]]]:
    """Back through the replacements from a unit's events (``own``): each unit replaced — its
    code id, its serial and its own events up to the replacement —, ``_MAX_RELABELS`` at most.
    The replacement is the earliest commissioning or replacing event naming the old serial
    (``details.replaces``)."""
    for _ in range(_MAX_RELABELS):
        took = min(
            (
                e
                for e in own
                if e["biz_step"] in ("commissioning", "replacing")
                and isinstance(e["details"], dict)
                and isinstance(e["details"].get("replaces"), str)
            ),
            key=lambda e: e["id"],
            default=None,
        )
        if took is None:
            return
        label = took["details"]["replaces"]
        [code] = codes_of(scheme, [label])
        if code is None:
            return
        own = await events_of(conn, UNIT, code, None, took["id"])  # up to the replacement
        yield code, label, own


async def _contents(conn: Conn, scheme: Scheme, sscc: int) -> list[Content]:
    rows = await (
        await conn.execute(
            """SELECT 'unit' AS kind, code FROM unit_state WHERE parent_sscc = %(p)s
               UNION ALL SELECT 'case', sscc FROM case_state WHERE parent_sscc = %(p)s
               ORDER BY 1, 2""",
            {"p": sscc},
        )
    ).fetchall()
    serials = await serials_of(conn, scheme, [r["code"] for r in rows if r["kind"] == "unit"])

    def label(kind: str, code: int) -> str:  # a unit of a retired key version: its code id
        return serials.get(code, str(code)) if kind == "unit" else sscc_label(code)

    return [Content(r["kind"], label(r["kind"], r["code"])) for r in rows]


def _event(
    e: dict[str, Any], via: str | None, orgs: dict[int, OrgRef], names_members: bool
) -> TraceEvent:
    """An event as the trace shows it; without its member (``details.member_id``) unless
    ``names_members``."""
    details = e["details"]
    if details and not names_members and "member_id" in details:
        details = {k: v for k, v in details.items() if k != "member_id"}
    return TraceEvent(
        id=e["id"],
        event_id=f"urn:uuid:{e['event_uuid']}",
        type=e["event_type"],
        action=e["action"],
        biz_step=e["biz_step"],
        disposition=e["disposition"],
        event_time=e["event_time"],
        tz_offset=e["tz_offset"],
        record_time=e["record_time"],
        read_point=e["read_point"],
        location=orgs.get(e["biz_location"]) if e["biz_location"] else None,
        source=orgs.get(e["source_org"]) if e["source_org"] else None,
        destination=orgs.get(e["destination_org"]) if e["destination_org"] else None,
        biz_transactions=e["biz_transactions"],
        parent=sscc_label(e["parent_code"]) if e["parent_code"] is not None else None,
        child_count=e["child_count"],
        via=via,
        details=details,
        error_declaration=e["error_declaration"],
    )


async def _orgs(conn: Conn, ids: set[int]) -> tuple[dict[int, OrgRef], dict[int, str]]:
    """The organisations as references, and their paths (for scoping)."""
    if not ids:
        return {}, {}
    rows = await (
        await conn.execute(
            "SELECT id, name, kind, path FROM orgs WHERE id = ANY(%s)", (sorted(ids),)
        )
    ).fetchall()
    return (
        {r["id"]: OrgRef(r["id"], r["name"], r["kind"]) for r in rows},
        {r["id"]: r["path"] for r in rows},
    )


def _brand_level(actor: Principal) -> bool:
    """A caller of the brand organisation itself (``/brand/``) sees every trace of its brand."""
    return actor.org_path.count("/") == 2


_PARTIES = ("biz_location", "source_org", "destination_org")


def _scope(
    actor: Principal,
    paths: dict[int, str],
    state: dict[str, Any] | None,
    rows: list[tuple[dict[str, Any], str | None]],
    stays: list[Stay],
) -> tuple[list[tuple[dict[str, Any], str | None]], list[Stay]]:
    """What an organisation below the brand sees of a trace: the history from the first event
    in which its subtree took part (the goods shipped to, received, held or sold there) on;
    later events it took no part in without their documents (business transactions, details).
    A code that never was in its subtree is unknown to it (404, as if it did not exist).

    "First" and "from … on" are in record order (event id), not by the scanner-given event
    time: a packing scan of its own dated years back made it the oldest event, and the history
    before its part (commissioning, the factory's packing, a warehouse's receipt) was shown (a
    probe); so are the container stays: those ended before that event are not shown (by its
    scanner-given time, the back-dated scan kept the factory's case stays)."""

    def ours(org_id: int | None) -> bool:
        return org_id is not None and actor.sees(paths.get(org_id, ""))

    def party(event: dict[str, Any]) -> bool:
        return any(ours(event[k]) for k in _PARTIES)

    first = min((e for e, _ in rows if party(e)), key=lambda e: e["id"], default=None)
    if first is None:
        if state is None or not (ours(state["holder_org_id"]) or ours(state["channel_org_id"])):
            raise NotFound("no such code was issued to this brand", code="unknown_code")
    shown = [
        (e if party(e) else {**e, "biz_transactions": None, "details": None}, via)
        for e, via in rows
        if first is not None and e["id"] >= first["id"]
    ]
    kept = [
        (stay, ended)
        for stay, ended in stays
        if ended is None or (first is not None and ended >= first["id"])
    ]
    return shown, kept


async def _levels(conn: Conn, ssccs: list[int]) -> dict[int, str]:
    if not ssccs:
        return {}
    rows = await (
        await conn.execute(
            "SELECT sscc, level FROM case_state WHERE sscc = ANY(%s)", (sorted(set(ssccs)),)
        )
    ).fetchall()
    return {r["sscc"]: r["level"] for r in rows}
