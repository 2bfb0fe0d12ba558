"""The SQL of the EPCIS query: one page of Tracecode's own events, then of captured ones (see
``app.epcis.query`` for the parameters and the scope).

Paging follows the ERP export's rule (``app.erp.export``). Event ids are taken when a
transaction starts writing, and transactions commit in any order: a token naming the last id
handed out skipped every event that committed after the page was read under a smaller id (probe
M: a large outbound confirmed while a small one committed; two organisations capturing at once).
So each source is read in the order of the transactions that wrote its events (``xact``, then
id; migration 0046), and an event whose transaction is older than every transaction of this
database still running (``xact <`` the horizon, ``app.db.HORIZON_CTE``) is *settled*: nothing
can come before it any more. A page hands out what is committed, settled or not, so a query sees
an event as soon as it is committed; its token keeps, per source, the last settled event served
(the position) and the few served beyond the horizon (``Position.extras``, at most
``MAX_EXTRAS``: past those a page stops early, and its token waits for the horizon). The next
page reads after the position, without the extras: an event committed late, under an older
transaction, comes after the position, so it is served then, once. The token is sealed for the
caller's brand and its query (``app.epcis.query.token_bound``): it shows none of these
transaction ids or event ids, shared by every brand.

Nothing behind the position is read again: an event keeps the position of the transaction that
wrote it (its capture's), and a declaration (``app.epcis.capture._declare_errors``) changes a
stored event in place, so one declared erroneous once the position has passed it is not served
by a run that asks for declared events (``EXISTS_errorDeclaration`` …), and was served without
its declaration by one that does not. A new run finds it (``app.epcis.query``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import HORIZON_CTE, Conn
from app.epcis.document import page_safe
from app.epcis.identifiers import place_key
from app.epcis.query import (
    CONTEXT,
    MAX_EXTRAS,
    ORG_PREFIX,
    Match,
    Position,
    Query,
    iso_time,
    match_of,
    names_of,
    next_token,
    of_their_gtins,
    own_event,
    read_point_of,
    read_token,
    token_bound,
    transaction_of,
    transaction_uri,
)

_OWN_COLUMNS = (
    "e.id, e.event_uuid, e.event_type, e.action, e.biz_step, e.disposition, e.event_time, "
    "e.tz_offset, e.record_time, e.read_point, e.biz_location, e.source_org, e.destination_org, "
    "e.biz_transactions, e.parent_code, e.error_declaration"
)
# Stored bodies of captured events on one page: events are up to 1 MiB each
# (app.epcis.document.MAX_EVENT_BYTES), so a full page could otherwise be a gigabyte.
PAGE_BYTES = 16 * 1024 * 1024
_PLACES = {"ce.read_point", "ce.biz_location"}
_ROLES = {"MATCH_epc": ["e"], "MATCH_parentID": ["p"], "MATCH_anyEPC": ["e", "p", "x"]}


class Page(msgspec.Struct, frozen=True):
    document: dict[str, Any]
    next_token: str | None


async def search(
    conn: Conn, actor: Principal, scheme: Scheme, settings: Settings, q: Query
) -> Page:
    """One page of the events the caller may see that match ``q`` (``orgs.read``, as a
    unit's trace: probe T found a key holding only ``catalog.read`` reading every event)."""
    actor.require("orgs.read")
    bound = token_bound(actor.brand_id, q)
    own, captured = read_token(settings, bound, q.token)
    matches = {name: match_of(q.lists[name], scheme) for name in _ROLES if name in q.lists}
    await of_their_gtins(conn, matches)
    orgs = None if actor.org_path.count("/") == 2 else await _subtree(conn, actor)
    rows = await _own_rows(conn, actor, orgs, q, matches, own)
    page, own, more = _advance(rows, q.per_page, own)
    events: list[dict[str, Any]] = []
    if page:
        names = await names_of(conn, scheme, settings, page)
        events += [own_event(r, names) for r in page]
    prefixes: dict[str, Any] = {}
    if not more:  # the own events are all served: fill the page with captured ones
        room = q.per_page - len(events)
        rows = await _captured_rows(conn, actor, orgs, q, matches, captured, room)
        page, captured, more = _advance(rows, room, captured, lambda r: r["body"] is not None)
        events += [_in_context(_captured_event(r), r["context"], prefixes) for r in page]
    token = next_token(settings, bound, own, captured) if more else None
    return Page(_document(events, prefixes), token)


def _in_context(
    event: dict[str, Any], context: dict[str, Any] | list[Any] | None, prefixes: dict[str, Any]
) -> dict[str, Any]:
    """A captured event with its stored context (``app.epcis.document.served_context``):
    its prefixes join the page's (``prefixes``) when they change no other event's meaning,
    else the event keeps its whole context."""
    if isinstance(context, list):
        # it names a remote context, which may declare anything: the event keeps it, never the
        # page (the list holds the event's own entries too)
        event.pop("@context", None)
        return {"@context": context, **event}
    context = context or {}
    if page_safe(context) and all(prefixes.get(k, v) == v for k, v in context.items()):
        prefixes.update(context)
        return event
    # a prefix this page binds to another namespace (two partners' "ex:"): the event keeps its
    # own context (a probe: the last document's binding won, and the other events' extension
    # fields named another namespace's terms); so does a binding capture refuses now (``urn``,
    # ``cbvmda``) that was stored before
    inner = event.pop("@context", None)  # the event's own, after its document's
    parts = inner if isinstance(inner, list) else [inner] if inner else []
    return {"@context": [context, *parts] if parts else context, **event}


def one_event(page: Page) -> dict[str, Any] | None:
    """The page's first event as a JSON-LD document of its own (``GET /epcis/events/{id}``):
    the page's @context, then the event's own — the event's replaced the page's (a probe: no
    EPCIS context, no prefix of its document)."""
    events = page.document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    if not events:
        return None
    event = dict(events[0])
    parts = [*_parts(page.document["@context"]), *_parts(event.pop("@context", None))]
    return {"@context": parts[0] if len(parts) == 1 else parts, **event}


def _parts(context: Any) -> list[Any]:
    return context if type(context) is list else [] if context is None else [context]


def _advance(
    rows: list[dict[str, Any]],
    room: int,
    at: Position,
    fits: Callable[[dict[str, Any]], bool] = lambda r: True,
) -> tuple[list[dict[str, Any]], Position, bool]:
    """Serve ``rows`` (after ``at`` in ``(xact, id)`` order, one more than ``room`` asked;
    each ``settled`` or not) while they fit: the rows served, the position after them, and
    whether any are left (see the module)."""
    served: list[dict[str, Any]] = []
    xact, last, extras = at.xact, at.id, list(at.extras)
    for r in rows[:room]:
        key = (int(r["xact"]), r["id"])
        if not fits(r):
            break
        if r["settled"]:
            xact, last = key
        elif len(extras) < MAX_EXTRAS:
            extras.append(key)
        else:
            break
        served.append(r)
    kept = tuple(sorted(e for e in extras if e > (xact, last)))
    return served, Position(xact, last, kept), len(served) < len(rows)


# The page's reads: after a position, without its extras, with each row settled or not.
_HORIZON = f"WITH {HORIZON_CTE} "


def _after(alias: str, at: Position, conds: list[str], args: dict[str, Any]) -> None:
    args["xact"], args["after"] = str(at.xact), at.id
    args["extras"] = [i for _, i in at.extras]
    conds += [
        f"({alias}.xact, {alias}.id) > (%(xact)s::xid8, %(after)s)",
        f"{alias}.id <> ALL(%(extras)s::bigint[])",
    ]


async def _subtree(conn: Conn, actor: Principal) -> list[int]:
    rows = await (
        await conn.execute("SELECT id FROM orgs WHERE path LIKE %s", (actor.org_path + "%",))
    ).fetchall()
    return [r["id"] for r in rows]


def _document(events: list[dict[str, Any]], prefixes: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": [CONTEXT, prefixes] if prefixes else CONTEXT,
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "epcisBody": {
            "queryResults": {
                "queryName": "SimpleEventQuery",
                "resultsBody": {"eventList": events},
            }
        },
    }


def _captured_event(row: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = msgspec.json.decode(bytes(row["body"]))
    event["eventID"] = row["event_id"]
    event["recordTime"] = iso_time(row["record_time"])  # eventTime: as sent
    return event


# -- Tracecode's own events --------------------------------------------------------------------


async def _own_rows(
    conn: Conn,
    actor: Principal,
    orgs: list[int] | None,
    q: Query,
    matches: dict[str, Match],
    at: Position,
) -> list[dict[str, Any]]:
    conds = ["e.brand_id = %(brand)s"]
    args: dict[str, Any] = {"brand": actor.brand_id, "limit": q.per_page + 1}
    _after("e", at, conds, args)
    if orgs is not None:
        args["orgs"] = orgs
        conds.append(
            "(e.biz_location = ANY(%(orgs)s) OR e.source_org = ANY(%(orgs)s) "
            "OR e.destination_org = ANY(%(orgs)s))"
        )
    if not _own_filters(q, conds, args) or not _own_matches(matches, conds, args):
        return []
    if q.event_id is not None:
        try:
            args["uuid"] = uuid.UUID(q.event_id.removeprefix("urn:uuid:"))
        except ValueError:
            return []
        conds.append("e.event_uuid = %(uuid)s")
    if "EQ_bizLocation" in q.lists:
        erp = [
            v.removeprefix(ORG_PREFIX)
            for v in q.lists["EQ_bizLocation"]
            if v.startswith(ORG_PREFIX)
        ]
        found = await (
            await conn.execute(
                "SELECT id FROM orgs WHERE erp_code = ANY(%s) AND path LIKE %s",
                (erp, f"/{actor.brand_id}/%"),
            )
        ).fetchall()
        args["locations"] = [r["id"] for r in found]
        conds.append("e.biz_location = ANY(%(locations)s)")
    where = " AND ".join(conds)
    sql = (
        f"{_HORIZON}SELECT {_OWN_COLUMNS}, e.xact::text AS xact, "
        f"e.xact < (SELECT x FROM horizon) AS settled FROM events e WHERE {where} "
        "ORDER BY e.xact, e.id LIMIT %(limit)s"
    )
    return await (await conn.execute(sql, args)).fetchall()


def _own_filters(q: Query, conds: list[str], args: dict[str, Any]) -> bool:
    """Add the plain filters; False when no own event can match."""
    plain = {
        "eventType": "e.event_type",
        "EQ_action": "e.action",
        "EQ_bizStep": "e.biz_step",
        "EQ_disposition": "e.disposition",
    }
    for name, column in plain.items():
        if name in q.lists:
            args[name] = [
                v if v != "urn:tracecode:bizstep:claiming" else "claiming" for v in q.lists[name]
            ]
            conds.append(f"{column} = ANY(%({name})s)")
    if "EQ_readPoint" in q.lists:
        args["read_points"] = [read_point_of(v) for v in q.lists["EQ_readPoint"]]
        conds.append("e.read_point = ANY(%(read_points)s)")
    _times(q, "e", conds, args)
    _declarations(q, "e", conds, args)
    groups: dict[str, list[dict[str, str]]] = {}
    for kind, uri in q.transactions:
        parsed = transaction_of(uri)
        groups.setdefault(kind, [])
        # the type asked for must be the one the event is served with (a po query does not
        # match a despatch advice's number)
        if parsed is not None and transaction_uri(*parsed)[0] == kind:
            groups[kind].append({"type": parsed[0], "id": parsed[1]})
    for i, (_, wanted) in enumerate(groups.items()):
        if not wanted:
            return False
        parts = []
        for j, item in enumerate(wanted):
            args[f"bt{i}_{j}"] = Jsonb([item])
            parts.append(f"e.biz_transactions @> %(bt{i}_{j})s")
        conds.append(f"({' OR '.join(parts)})")
    return True


def _times(q: Query, alias: str, conds: list[str], args: dict[str, Any]) -> None:
    ops = {"GE": ">=", "LT": "<"}
    for name, moment in q.times.items():
        op, _, field = name.partition("_")
        if field == "errorDeclarationTime":
            continue  # _declarations
        column = "event_time" if field == "eventTime" else "record_time"
        args[name] = moment
        conds.append(f"{alias}.{column} {ops[op]} %({name})s")


# Where each source keeps an event's errorDeclaration: Tracecode's events in a jsonb column,
# captured ones in their body, with the flag and the time beside it (migration 0098).
_DECLARED = {
    "e": ("e.error_declaration IS NOT NULL", "e.error_declaration"),
    "ce": ("ce.error_declared", "convert_from(ce.body, 'UTF8')::jsonb -> 'errorDeclaration'"),
}
_DECLARED_AT = {
    "e": "(e.error_declaration ->> 'declarationTime')::timestamptz",
    "ce": "ce.error_declared_at",
}


def _declarations(q: Query, alias: str, conds: list[str], args: dict[str, Any]) -> None:
    """The error-declaration parameters: each asks for declared events, and of those the ones
    declared in the time range, for one of the reasons, naming one of the corrective events."""
    times = {n: t for n, t in q.times.items() if n.endswith("_errorDeclarationTime")}
    reasons, corrective = q.lists.get("EQ_errorReason"), q.lists.get("EQ_correctiveEventID")
    if not (q.declared or times or reasons or corrective):
        return
    flag, declaration = _DECLARED[alias]
    conds.append(flag)
    for name, moment in times.items():
        args[name] = moment
        conds.append(f"{_DECLARED_AT[alias]} {'>=' if name[:2] == 'GE' else '<'} %({name})s")
    if reasons:
        args["reasons"] = reasons
        conds.append(f"({declaration}) ->> 'reason' = ANY(%(reasons)s)")
    if corrective:
        args["corrective"] = corrective
        conds.append(f"({declaration}) -> 'correctiveEventIDs' ?| %(corrective)s::text[]")


def _own_matches(matches: dict[str, Match], conds: list[str], args: dict[str, Any]) -> bool:
    for name, m in matches.items():
        if not m.units and not m.cases:
            return False
        args[f"{name}_u"], args[f"{name}_c"] = m.units, m.cases
        codes = (
            f"(ec.kind = 'u' AND ec.code = ANY(%({name}_u)s)) "
            f"OR (ec.kind = 'c' AND ec.code = ANY(%({name}_c)s))"
        )
        if name == "MATCH_parentID":
            conds.append(f"e.parent_code = ANY(%({name}_c)s)")
        if name == "MATCH_epc":  # a case matches as a child, not as the event's parentID
            codes = (
                f"(ec.kind = 'u' AND ec.code = ANY(%({name}_u)s)) OR (ec.kind = 'c' AND "
                f"ec.code = ANY(%({name}_c)s) AND ec.code IS DISTINCT FROM x.parent_code)"
            )
            conds.append(
                f"e.id IN (SELECT ec.event_id FROM event_codes ec JOIN events x "
                f"ON x.id = ec.event_id WHERE {codes})"
            )
        else:
            conds.append(f"e.id IN (SELECT ec.event_id FROM event_codes ec WHERE {codes})")
    return True


# -- captured events ---------------------------------------------------------------------------


async def _captured_rows(
    conn: Conn,
    actor: Principal,
    orgs: list[int] | None,
    q: Query,
    matches: dict[str, Match],
    at: Position,
    room: int,
) -> list[dict[str, Any]]:
    conds = ["ce.brand_id = %(brand)s"]
    args: dict[str, Any] = {"brand": actor.brand_id, "limit": room + 1}
    _after("ce", at, conds, args)
    if orgs is not None:
        args["orgs"] = orgs
        conds.append("ce.org_id = ANY(%(orgs)s)")
    plain = {
        "eventType": "ce.event_type",
        "EQ_action": "ce.action",
        "EQ_bizStep": "ce.biz_step",
        "EQ_disposition": "ce.disposition",
        "EQ_readPoint": "ce.read_point",
        "EQ_bizLocation": "ce.biz_location",
    }
    for name, column in plain.items():
        if name in q.lists:
            args[name] = q.lists[name]
            if column in _PLACES:  # stored by place_key; rows of before 0066 as sent
                args[name] = list(dict.fromkeys([*args[name], *map(place_key, args[name])]))
            conds.append(f"{column} = ANY(%({name})s)")
    _times(q, "ce", conds, args)
    _declarations(q, "ce", conds, args)
    if q.event_id is not None:
        args["event_id"] = q.event_id
        conds.append("ce.event_id = %(event_id)s")
    groups: dict[str, list[str]] = {}
    for kind, value in q.transactions:
        groups.setdefault(kind, []).append(f"{kind} {value}")
    for i, wanted in enumerate(groups.values()):
        args[f"bt{i}"] = wanted
        conds.append(f"ce.biz_transactions && %(bt{i})s::text[]")
    for name, m in matches.items():
        conds.append(_epc_condition(name, m, args))
    # A page holds at most PAGE_BYTES of stored bodies (and always its first event): past the
    # budget a row comes without its body, which is then never read from TOAST.
    args["budget"] = PAGE_BYTES
    sql = (
        f"{_HORIZON}SELECT id, event_id, record_time, context, xact, settled, "
        "CASE WHEN before < %(budget)s THEN body END AS body FROM ("
        "SELECT ce.id, ce.event_id, ce.record_time, ce.context, ce.body, ce.xact::text AS xact, "
        "ce.xact < (SELECT x FROM horizon) AS settled, "
        "sum(octet_length(ce.body)) OVER (ORDER BY ce.xact, ce.id) - octet_length(ce.body) "
        f"AS before FROM epcis_events ce WHERE {' AND '.join(conds)} "
        "ORDER BY ce.xact, ce.id LIMIT %(limit)s) s ORDER BY xact::xid8, id"
    )
    return await (await conn.execute(sql, args)).fetchall()


def _epc_condition(name: str, m: Match, args: dict[str, Any]) -> str:
    args[f"{name}_r"] = _ROLES[name]
    parts = []
    if m.epcs:
        args[f"{name}_e"] = m.epcs
        parts.append(f"x.epc = ANY(%({name}_e)s)")
    for i, prefix in enumerate(m.prefixes):
        args[f"{name}_lo{i}"], args[f"{name}_hi{i}"] = (
            prefix,
            prefix[:-1] + chr(ord(prefix[-1]) + 1),
        )
        parts.append(f"(x.epc >= %({name}_lo{i})s AND x.epc < %({name}_hi{i})s)")
    if not parts:
        return "false"
    return (
        f"ce.id IN (SELECT x.event_id FROM epcis_event_epcs x WHERE ({' OR '.join(parts)}) "
        f'AND x.role = ANY(%({name}_r)s::"char"[]))'
    )
