"""EPCIS 2.0 query (SPEC I3): ``GET /epcis/events`` over Tracecode's own event log and what
partners captured, with the standard's query parameters and paging.

Two sources answer one query: Tracecode's events (``events`` / ``event_codes``, written by the
line, logistics, inspection and claim services) and captured events (``epcis_events``). A page
lists Tracecode's matching events, then the captured ones, each source in the order of the
transactions that wrote them (``app.epcis.search``); the ``nextPageToken`` holds a position in
each source, so paging never skips or repeats an event while events are added, even when the
transactions that write them commit out of order (new ones appear on later pages). The token is
sealed and bound to the caller's brand (``app.sealing``): it reveals no position, and another
brand's token, an altered or a made-up one is refused (400). It is bound to its run's query too
(``token_bound``: a digest of the parameters as parsed, all but ``perPage``, which may change from
page to page): given with other parameters, it is refused (400; a probe: one of ``MATCH_epc=X|Y``
given with ``MATCH_epc=Y2`` was read as the same position, and Y2's events were skipped).

What a run of pages guarantees: it hands out, exactly once, every event committed before its
last page was read that matches the query when the run reads it. An event's position is that of
the transaction that wrote it (a captured event: its capture), and the run never reads behind
its position again (the last event served, or behind it while that event is not settled:
``app.epcis.search``); a declaration of error changes a captured event in place, not its
position. So an event declared erroneous (or declared again) once the run's position has passed
it is not served by the run when it asks for declared events (``EXISTS_errorDeclaration``, the
times, reasons or corrective events of a declaration); a run that served it before it was
declared served it without its declaration. One declared before the run's position reaches it
is served, declared. A new run (no token) finds every event as it is then.

Scope: the caller's brand; below the brand, Tracecode's events at, from or to an organisation
of the caller's subtree (``bizLocation``, source, destination) and the events captured by its
subtree. A partner sees events of its own organisation's goods.

Identifiers: Tracecode's units are served as canonical GS1 Digital Link URIs
(``https://id.gs1.org/01/{gtin}/21/{serial}``; a product without a GTIN: the URL its QR code
carries), cases as ``https://id.gs1.org/00/{sscc}``; organisations as
``urn:tracecode:org:{erp code}``, lines as ``urn:tracecode:line:{code}``. ``MATCH_*`` accept EPC
URNs and Digital Link URIs alike (and, for captured events, class patterns such as
``urn:epc:idpat:sgtin:….*``: ``identifiers.class_prefix``). Several values of one parameter
are separated by ``|`` or given as repeated parameters; the times, ``perPage`` and
``nextPageToken`` are given once.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from app import sealing
from app.codes.batches import BatchRef, load_batches, made_under, serials_of
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import Conn
from app.epcis.document import (
    BIZ_STEP_SPELLINGS,
    BTT_SPELLINGS,
    DISPOSITION_SPELLINGS,
    MAX_URI,
    cbv_word,
    error_reason_spellings,
)
from app.epcis.identifiers import (
    CANONICAL_ORIGIN,
    IdentifierError,
    canonical,
    class_prefix,
    gtin_serial,
    sscc,
)
from app.errors import SerialError
from app.textguard import has_control

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
MAX_PER_PAGE = 1000
ORG_PREFIX = "urn:tracecode:org:"
TRACECODE = "urn:tracecode:"
_BT_PREFIX = "urn:tracecode:bt:"
_CBV_BTT = {"bol", "cert", "desadv", "inv", "pedigree", "po", "poc", "prodorder", "recadv", "rma"}
_EVENT_TYPES = {
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
}
_ACTIONS = {"ADD", "OBSERVE", "DELETE"}
_LISTS = {
    "eventType",
    "EQ_action",
    "EQ_bizStep",
    "EQ_disposition",
    "EQ_readPoint",
    "EQ_bizLocation",
    "MATCH_epc",
    "MATCH_parentID",
    "MATCH_anyEPC",
    "EQ_errorReason",
    "EQ_correctiveEventID",
}
_TIMES = {
    "GE_eventTime",
    "LT_eventTime",
    "GE_recordTime",
    "LT_recordTime",
    "GE_errorDeclarationTime",
    "LT_errorDeclarationTime",
}
_SCALARS = _TIMES | {"perPage", "nextPageToken", "EXISTS_errorDeclaration"}
# a unit's QR code as the verification reads it (``Scheme.serial_from_scan``), in any case
QR_URL = re.compile(r"^https?://[^/]+/c/([0-9A-Za-z-]{16,32})$", re.IGNORECASE)


class QueryError(Exception):
    """A query parameter the standard does not know, or a value it cannot take (400
    ``epcisException:QueryParameterException``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# Capture's own tables of the spellings of a CBV value, by the parameter they read: a value is
# asked for in any spelling capture stores as its word (a probe: ``gs1:BizStep-shipping`` was
# captured as ``shipping`` and found nothing).
_SPELLINGS = {
    "EQ_bizStep": BIZ_STEP_SPELLINGS,
    "EQ_disposition": DISPOSITION_SPELLINGS,
    "bizTransaction": BTT_SPELLINGS,
}


def _word(value: str, spellings: dict[str, str]) -> str:
    """A CBV value as capture stores it: its word in any spelling, else a URI as sent (one in
    the CBV's namespace but of no word, which capture refuses, as its bare last part).
    Tracecode's own ``urn:tracecode:bizstep:claiming`` stays whole: captured events keep it so
    (a probe: it was cut to ``claiming`` and found no captured event)."""
    return spellings.get(value) or cbv_word(value)


@dataclass(frozen=True)
class Position:
    """How far a paging run has come in one source: past every event up to ``(xact, id)`` in
    ``(xact, id)`` order, and past ``extras``, the ``(xact, id)`` of events served beyond it
    while their transactions were not yet below the horizon (``app.epcis.search``)."""

    xact: int = 0
    id: int = 0
    extras: tuple[tuple[int, int], ...] = ()


MAX_EXTRAS = 16  # per source: the token stays within MAX_VALUE whatever the ids (review R2)


@dataclass
class Query:
    """The parsed parameters. Lists are OR-ed within a parameter, parameters AND-ed."""

    lists: dict[str, list[str]] = field(default_factory=dict)
    times: dict[str, datetime] = field(default_factory=dict)
    transactions: list[tuple[str, str]] = field(default_factory=list)  # (type, id)
    declared: bool = False  # EXISTS_errorDeclaration
    per_page: int = 30
    token: str | None = None  # nextPageToken as given (``read_token``, with the caller's brand)
    event_id: str | None = None  # one event (GET /epcis/events/{eventID})


MAX_VALUE = 2000  # characters of one parameter value
_BT = "EQ_bizTransaction_"
# characters of a parameter's name: the standard's are short, EQ_bizTransaction_{type} takes any
# type URI capture stores (a probe: a 10 KB name was a query, an unknown one echoed in full)
MAX_NAME = len(_BT) + MAX_URI
MAX_VALUES = 1000  # values of all parameters together


def parse_query(params: list[tuple[str, str]]) -> Query:
    q = Query()
    if len(params) > MAX_VALUES or sum(v.count("|") + 1 for _, v in params) > MAX_VALUES:
        raise QueryError(f"at most {MAX_VALUES} values in one query")
    scalars: set[str] = set()
    spellings = _SPELLINGS
    for name, value in params:
        if len(name) > MAX_NAME:
            raise QueryError(f"{name[:60]!r}…: a parameter name of at most {MAX_NAME} characters")
        if len(value) > MAX_VALUE or has_control(value) or has_control(name):
            raise QueryError(
                f"{name[:60]!r}: a value of at most {MAX_VALUE} characters, no control characters"
            )
        if name in _SCALARS:
            if name in scalars:  # a probe: the last one won, silently
                raise QueryError(f"{name} may be given once")
            scalars.add(name)
        if name in _LISTS:
            q.lists.setdefault(name, []).extend(v for v in value.split("|") if v)
        elif name in _TIMES:
            q.times[name] = _time(name, value)
        elif name.startswith(_BT) and len(name) > len(_BT):
            # the name is decoded already: a type URI's own %-escapes stay as sent
            kind = _word(name[len(_BT) :], spellings["bizTransaction"])
            # no value matches nothing, as an empty list parameter does (a probe: it filtered
            # nothing, every event served): an empty id, which no transaction has
            q.transactions += [(kind, v) for v in value.split("|") if v] or [(kind, "")]
        elif name == "perPage":
            # ASCII digits: str.isdigit() also takes "²", which int() refuses
            if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PER_PAGE:
                raise QueryError(f"perPage must be a whole number from 1 to {MAX_PER_PAGE}")
            q.per_page = int(value)
        elif name == "nextPageToken":
            q.token = value
        elif name == "EXISTS_errorDeclaration":
            # a Void parameter: named, with no value (or "true", as forms send it)
            if value not in ("", "true"):
                raise QueryError("EXISTS_errorDeclaration takes no value")
            q.declared = True
        else:
            shown = repr(name[:60]) + ("…" if len(name) > 60 else "")
            raise QueryError(f"unknown or unsupported query parameter {shown}")
    for name in ("EQ_bizStep", "EQ_disposition"):
        if name in q.lists:
            q.lists[name] = [_word(v, spellings[name]) for v in q.lists[name]]
    if "EQ_errorReason" in q.lists:  # compared with the reason as sent
        q.lists["EQ_errorReason"] = error_reason_spellings(q.lists["EQ_errorReason"])
    bad = set(q.lists.get("eventType", [])) - _EVENT_TYPES
    if bad:
        raise QueryError(f"eventType must be one of {sorted(_EVENT_TYPES)}")
    if set(q.lists.get("EQ_action", [])) - _ACTIONS:
        raise QueryError(f"EQ_action must be one of {sorted(_ACTIONS)}")
    return q


# xsd:dateTime with a time zone, as the standard's query parameters take it
_DATE_TIME = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)", re.ASCII
)


def _time(name: str, value: str) -> datetime:
    """An xsd:dateTime with a time zone (a probe: forms such as ``20261201T0800+0800`` passed).
    Stored times are whole microseconds, so a finer time is rounded up to the next one: an
    event at or after (or before) it is one at or after (or before) the rounded time."""
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        raise QueryError(
            f"{name} must be a date-time with a time zone, as 2026-12-01T08:00:00.000+08:00"
        )
    whole, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(whole.upper() + ("+00:00" if zone in "Zz" else zone))
    except ValueError:
        raise QueryError(f"{name}: {value!r} is not a date and time") from None
    offset = moment.utcoffset()
    if offset is None or abs(offset) > timedelta(hours=14):
        raise QueryError(f"{name}: a time zone is -14:00 to +14:00")
    if fraction:
        micro = timedelta(
            microseconds=int(fraction[:6].ljust(6, "0")) + (fraction[6:].strip("0") != "")
        )
        try:  # in its own zone: at the calendar's start, east of UTC, it is year 0 in UTC (a
            # probe: 0001-01-01T00:00:00.5+14:00 was refused)
            moment += micro
        except OverflowError:
            try:  # in UTC: a time at the calendar's end with an offset east of UTC fits there
                moment = moment.astimezone(UTC) + micro
            except OverflowError:
                raise QueryError(f"{name}: {value!r} is out of range") from None
    return moment


# The nextPageToken: both positions, sealed (``app.sealing``) and bound to the caller's brand and
# its query (``token_bound``).
# Each source's position is its xact, id and the number of its extras, then each extra's xact
# and id, at fixed widths (a token's length tells nothing of the ids).
_PURPOSE = "epcis-page-token"
# the tokens of before were base64 of plain text ("v2;…"), then (format 3) bound to the brand
# alone: refused, as the tokens of a run of pages live no longer than it
_FORMAT = b"\x04"
_HEAD = struct.Struct(">QQB")
_EXTRA = struct.Struct(">QQ")
_BIGINT = 2**63  # an id at or past this is none this server gave


def read_token(settings: Settings, bound: str, value: str | None) -> tuple[Position, Position]:
    """The positions (own, captured) a ``nextPageToken`` holds; none: the start. QueryError
    (400) for anything this server did not hand out for ``bound`` (``token_bound``): another
    brand's token, one of another query, an altered or made-up one."""
    if value is None:
        return Position(), Position()
    raw = sealing.token_bytes(value)
    opened = sealing.unseal(settings, _PURPOSE, bound, _FORMAT, raw)
    if opened is not None:
        try:
            own, rest = _position(opened)
            captured, rest = _position(rest)
        except (struct.error, ValueError):
            pass
        else:
            if not rest:
                return own, captured
    raise QueryError(
        "nextPageToken is not one this server gave for this query: follow the next page's link "
        "as given (only perPage may change)"
    )


def query_digest(q: Query) -> str:
    """What a token is bound to: the parameters as parsed, by sorted name, each list's values
    sorted; not ``perPage`` (a client may ask for pages of another size) nor the token."""
    canon = {
        "lists": {name: sorted(set(values)) for name, values in q.lists.items()},
        "times": {name: moment.isoformat() for name, moment in q.times.items()},
        "transactions": sorted(set(q.transactions)),
        "declared": q.declared,
    }
    text = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def token_bound(brand_id: int, q: Query) -> str:
    """What a run's tokens are sealed to: the caller's brand and ``q`` (``query_digest``)."""
    return f"{brand_id};{query_digest(q)}"


def _position(raw: bytes) -> tuple[Position, bytes]:
    """The position at the head of ``raw``, and what follows it."""
    xact, last, count = _HEAD.unpack_from(raw)
    end = _HEAD.size + count * _EXTRA.size
    if count > MAX_EXTRAS or len(raw) < end:
        raise ValueError(count)
    extras = tuple(_EXTRA.iter_unpack(raw[_HEAD.size : end]))
    if any(i >= _BIGINT for _, i in [(xact, last), *extras]):
        raise ValueError(last)
    return Position(xact, last, extras), raw[end:]


def next_token(settings: Settings, bound: str, own: Position, captured: Position) -> str:
    """The token of two positions, sealed for ``bound`` (``token_bound``: the caller's brand and
    its query): 84 characters without extras, at most ~770 with every extra (``MAX_EXTRAS`` per
    source)."""
    value = b"".join(
        _HEAD.pack(p.xact, p.id, len(p.extras)) + b"".join(_EXTRA.pack(*e) for e in p.extras)
        for p in (own, captured)
    )
    return sealing.seal(settings, _PURPOSE, bound, _FORMAT, value)


# -- matching identifiers ----------------------------------------------------------------------


@dataclass
class Match:
    """The values of one MATCH_ parameter: canonical identifiers and class prefixes (captured
    events), and Tracecode's own unit and case codes among them."""

    epcs: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    cases: list[int] = field(default_factory=list)
    # the GTINs a unit was asked for under (None: by its QR URL, under none), by the unit and
    # the key version of the serial that named it: it matches only under its product's GTIN
    # (``of_their_gtins``; a probe: another company's SGTIN with the same serial matched it),
    # whichever of the values named it (a probe: of two SGTINs of one serial OR-ed, the last
    # one's GTIN alone was kept), and only by a serial of its batch's key version
    gtins: dict[tuple[int, int], set[str | None]] = field(default_factory=dict)
    # the units asked for by their QR URL (unit, key version), with their serials: their SGTIN
    # is asked for too
    by_url: dict[tuple[int, int], str] = field(default_factory=dict)


def match_of(values: list[str], scheme: Scheme) -> Match:
    m = Match()
    for value in values:
        if value[:14].lower() == "urn:epc:idpat:":
            try:
                m.prefixes.append(class_prefix(value))
            except IdentifierError as exc:
                raise QueryError(str(exc)) from None
            continue
        try:  # as capture reads them: a Digital Link's check digit unchecked (a probe: an EPC
            # captured with a wrong one could not be asked for)
            uri = canonical(value, check_digits=False)
        except IdentifierError as exc:
            raise QueryError(f"not an EPC URN or Digital Link URI: {value!r} ({exc})") from None
        m.epcs.append(uri)  # a QR URL too: captured events name a unit by it (a probe)
        qr = QR_URL.match(value)
        if qr:
            _add_unit(m, scheme, qr.group(1), None)
            continue
        unit = gtin_serial(uri)
        if unit is not None:
            _add_unit(m, scheme, unit[1], unit[0])
        number = sscc(uri)
        if number is not None:
            m.cases.append(int(number))
    return m


def _add_unit(m: Match, scheme: Scheme, serial: str, gtin: str | None) -> None:
    """The unit of a serial asked for in an SGTIN (``gtin``), only in the spelling it is
    printed in: an EPC's serial is case-sensitive, so another spelling (lower case, O for 0,
    L for 1, which ``verify`` folds) is another EPC (a probe: it matched the unit, whose events
    do not carry it); or in a QR URL (``gtin`` None), read as a scan is."""
    try:
        batch_no, index, version = scheme.verify(serial)
    except SerialError:
        return  # not one of Tracecode's serials: only captured events can name it
    printed = scheme.serial(batch_no, index, version)
    if gtin is not None and printed != serial:
        return
    code = batch_no << 32 | index
    m.units.append(code)
    m.gtins.setdefault((code, version), set()).add(gtin)
    if gtin is None:
        m.by_url[code, version] = printed


def _made_under_their_batches(m: Match, batches: dict[int, BatchRef]) -> dict[int, set[str | None]]:
    """Forget what ``m``'s serials of another key version than their batch's asked (as a forged
    serial's: their text is still asked of the captured events, ``epcs``); the GTINs each unit
    is still asked under, by unit."""
    m.gtins = {
        (code, version): gtins
        for (code, version), gtins in m.gtins.items()
        if (batch := batches.get(code >> 32)) is None or made_under(batch, version)
    }
    m.by_url = {key: serial for key, serial in m.by_url.items() if key in m.gtins}
    under: dict[int, set[str | None]] = {}
    for (code, _), gtins in m.gtins.items():
        under.setdefault(code, set()).update(gtins)
    return under


async def of_their_gtins(conn: Any, matches: dict[str, Match]) -> None:
    """Drop from ``matches`` the units named only by serials of another key version than their
    batch's (never printed: ``made_under``; one query), and those asked for under another GTIN
    than their product's (an SGTIN is one EPC, its GTIN and serial together), and ask for the
    SGTIN of each unit asked for by its QR URL: a captured event may name it either way
    (capture adds the SGTIN of a unit it names by its QR URL, ``app.epcis.capture._write``)."""
    named = {code >> 32 for m in matches.values() for code in m.units}
    if not named:
        return
    batches = await load_batches(conn, named)
    wanted = [_made_under_their_batches(m, batches) for m in matches.values()]
    asked = {c for under in wanted for c, gtins in under.items() if gtins != {None}}
    asked.update(c for m in matches.values() for c, _ in m.by_url)
    theirs = await _gtins(conn, sorted(asked)) if asked else {}
    for m, under in zip(matches.values(), wanted, strict=True):
        m.units = [
            c for c in m.units if c in under and (None in under[c] or theirs.get(c) in under[c])
        ]
        m.epcs += [
            f"{CANONICAL_ORIGIN}/01/{theirs[c]}/21/{serial}"
            for (c, _), serial in m.by_url.items()
            if c in theirs
        ]


# -- Tracecode's own events as EPCIS events ----------------------------------------------------


@dataclass
class Names:
    """What the own events' rows need to be written as EPCIS: organisations' ERP codes, unit
    and case identifiers by code."""

    orgs: dict[int, str]
    codes: dict[tuple[str, int], str]
    members: dict[int, list[tuple[str, int]]]  # event id -> (kind, code) of its codes


def org_uri(erp_code: str) -> str:
    return ORG_PREFIX + quote(erp_code, safe="")


def read_point_uri(read_point: str) -> str:
    return read_point if read_point.startswith("geo:") else TRACECODE + read_point


def read_point_of(uri: str) -> str:
    return uri.removeprefix(TRACECODE)


def transaction_uri(kind: str, value: str) -> tuple[str, str]:
    kind_out = kind if kind in _CBV_BTT else f"urn:tracecode:btt:{kind}"
    return kind_out, f"{_BT_PREFIX}{quote(kind, safe='')}:{quote(value, safe='')}"


def transaction_of(uri: str) -> tuple[str, str] | None:
    if not uri.startswith(_BT_PREFIX):
        return None
    kind, _, value = uri.removeprefix(_BT_PREFIX).partition(":")
    return unquote(kind), unquote(value)


async def names_of(
    conn: Conn, scheme: Scheme, settings: Settings, rows: list[dict[str, Any]]
) -> Names:
    org_ids = {r[k] for r in rows for k in ("biz_location", "source_org", "destination_org")}
    org_ids.discard(None)
    orgs = await (
        await conn.execute("SELECT id, erp_code FROM orgs WHERE id = ANY(%s)", (list(org_ids),))
    ).fetchall()
    code_rows = await (
        await conn.execute(
            "SELECT event_id, code, kind FROM event_codes WHERE event_id = ANY(%s)",
            ([r["id"] for r in rows],),
        )
    ).fetchall()
    units = sorted({c["code"] for c in code_rows if c["kind"] == "u"})
    serials = await serials_of(conn, scheme, units)
    gtins = await _gtins(conn, units)
    base = f"{settings.public_scheme}://{settings.resolver_host}/c/"
    codes: dict[tuple[str, int], str] = {}
    for code in units:
        serial = serials.get(code, str(code))
        gtin = gtins.get(code)
        codes["u", code] = f"https://id.gs1.org/01/{gtin}/21/{serial}" if gtin else base + serial
    for c in code_rows:
        if c["kind"] == "c":
            codes["c", c["code"]] = f"https://id.gs1.org/00/{c['code']:018d}"
    members: dict[int, list[tuple[str, int]]] = {}
    for c in code_rows:
        members.setdefault(c["event_id"], []).append((c["kind"], c["code"]))
    return Names({o["id"]: org_uri(o["erp_code"]) for o in orgs}, codes, members)


async def _gtins(conn: Conn, units: list[int]) -> dict[int, str]:
    rows = await (
        await conn.execute(
            "SELECT us.code, p.gtin FROM unit_state us JOIN products p ON p.id = us.product_id "
            "WHERE us.code = ANY(%s) AND p.gtin IS NOT NULL",
            (units,),
        )
    ).fetchall()
    return {r["code"]: r["gtin"] for r in rows}


def own_event(e: dict[str, Any], names: Names) -> dict[str, Any]:
    """One of Tracecode's events as an EPCIS 2.0 JSON event."""
    out: dict[str, Any] = {
        "type": e["event_type"],
        "eventID": f"urn:uuid:{e['event_uuid']}",
        "eventTime": iso_time(e["event_time"]),
        "recordTime": iso_time(e["record_time"]),
        "eventTimeZoneOffset": e["tz_offset"],
    }
    parent = e["parent_code"]
    codes = [
        names.codes[kind, code]
        for kind, code in sorted(names.members.get(e["id"], []))
        if not (kind == "c" and code == parent)
    ]
    if e["event_type"] == "AggregationEvent":
        if parent is not None:
            out["parentID"] = names.codes.get(("c", parent), f"https://id.gs1.org/00/{parent:018d}")
        out["childEPCs"] = codes
    else:
        out["epcList"] = codes
    out["action"] = e["action"]
    step = e["biz_step"]
    out["bizStep"] = step if step != "claiming" else "urn:tracecode:bizstep:claiming"
    if e["disposition"]:
        out["disposition"] = e["disposition"]
    if e["read_point"]:
        out["readPoint"] = {"id": read_point_uri(e["read_point"])}
    if e["biz_location"] in names.orgs:
        out["bizLocation"] = {"id": names.orgs[e["biz_location"]]}
    if e["biz_transactions"]:
        out["bizTransactionList"] = [
            dict(zip(("type", "bizTransaction"), transaction_uri(t["type"], t["id"]), strict=True))
            for t in e["biz_transactions"]
        ]
    if e["source_org"] in names.orgs:
        out["sourceList"] = [{"type": "owning_party", "source": names.orgs[e["source_org"]]}]
    if e["destination_org"] in names.orgs:
        out["destinationList"] = [
            {"type": "owning_party", "destination": names.orgs[e["destination_org"]]}
        ]
    if e["error_declaration"]:
        out["errorDeclaration"] = e["error_declaration"]
    return out


def iso_time(moment: datetime) -> str:
    """A stored time as served: to the microsecond, as it is stored and as the time filters
    compare it (a probe: cut to milliseconds, an event at .123456 was served as .123
    by ``GE_eventTime=….1234Z``; RFC 3339 allows any number of fraction digits)."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
