"""EPCIS 2.0 capture documents (SPEC I3): decode, check and extract, on the capture hot path.

A partner posts one EPCISDocument (JSON or JSON-LD, EPCIS 2.0 / CBV 2.0). ``parse_document``
decodes it once with msgspec into plain dicts and lists and checks it by hand: precompiled
regexes, frozensets and one dict lookup per vocabulary value, no generic JSON-schema engine
(the target is 20,000 ten-EPC ObjectEvents a second, so well under 20 µs an event). The rules
are those of the standard's JSON schema and CBV 2.0:

- the envelope: a JSON object with ``@context``, ``type`` "EPCISDocument", ``schemaVersion``,
  an RFC 3339 ``creationDate`` and ``epcisBody.eventList`` (at most ``max_events``: 413);
- each event: one of the five standard types (its own set of standard fields, its own
  required ones: action, parentID, bizTransactionList, the what-dimension lists) or an
  extension type that is a URI; eventTime an xsd:dateTimeStamp (with a zone), the zone offset
  ±hh:mm within ±14:00; every standard field of its JSON type; identifiers URIs, EPC URNs and
  GS1 Digital Link URIs well formed (``app.epcis.identifiers.canonical``; a Digital Link's
  check digit is not verified, as in the CBV event-hash reference); bizStep, disposition,
  bizTransaction, source/destination, error-reason, sensor types either a CBV 2.0 word or a
  URI (a CURIE is one); ILMD only on an ObjectEvent ADD or a TransformationEvent;
- extension fields (the event's, ILMD's and those inside standard sub-objects) must be named
  ``prefix:name`` with the prefix declared in an ``@context`` (the document's or the event's;
  the standard context's own prefixes count) or be a full URI. A document that also names a
  context other than the EPCIS one may declare any prefix there, so then any prefix passes.

Beyond the schema, for storage and for the server's safety: no control character (a ``\\u0000``
escape: PostgreSQL text cannot hold NUL; the others, as every JSON body of the API
(``app.textguard``): they would reach other partners' terminals and logs), no event larger than
``MAX_EVENT_BYTES`` (each query page holds up to a thousand of them) and nothing nested deeper
than ``MAX_DEPTH`` levels. Standard structures
are walked, so only the free-form parts (extension values, @context objects, the header) need
a depth walk of their own; msgspec refuses raw control characters and invalid UTF-8 itself.

All or nothing: the first violation raises ``DocumentError`` (the REST binding's exception type,
a title, the JSON pointer of the field and why). Otherwise each event becomes a
``CapturedEvent``: the event exactly as sent (query-back-equal), the @context for its event
hash, and the fields storage and query filter on, normalised: CBV values as their bare word,
EPCs and classes canonical (GS1 Digital Link on id.gs1.org), eventTime in UTC.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec

from app.epcis.hashing import event_hash
from app.epcis.identifiers import IdentifierError, canonical, event_key, known_sgtins
from app.textguard import InvalidCharacter, check_json_body

MAX_DEPTH = 64
MAX_EVENT_BYTES = 1024 * 1024  # an event as JSON: ~15,000 childEPCs of a pallet's aggregation
MAX_CONTEXT_BYTES = 64 * 1024  # the document's @context, stored with each of its events
MAX_URI = 2000  # characters of an identifier or other URI (a stored, indexed value)
VALIDATION = "epcisException:ValidationException"
CAPTURE_LIMIT = "epcisException:CaptureLimitExceededException"
EVENT_LIST = "/epcisBody/eventList"
_EVENT_DEPTH = 4  # document 1, epcisBody 2, eventList 3, the event 4


class DocumentError(Exception):
    """A refused document: ``type`` (the EPCIS REST binding's exception type), ``title``,
    ``detail`` (names the JSON ``pointer`` of the offending field), ``status`` (400 or 413)."""

    def __init__(
        self,
        detail: str,
        pointer: str | None = None,
        *,
        exception: str = VALIDATION,
        title: str = "The EPCIS document is invalid",
        status: int = 400,
    ) -> None:
        super().__init__(detail)
        self.type = exception
        self.title = title
        self.detail = detail
        self.status = status
        self.pointer = pointer

    def problem(self) -> dict[str, Any]:
        """The RFC 7807 body the REST binding answers with."""
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


class CapturedEvent(msgspec.Struct):
    """One event of a captured document, as storage and query need it.

    ``raw`` is the event exactly as sent; ``context`` the document's @context followed by the
    event's own (for the CBV 2.0 event hash). ``biz_step``, ``disposition`` and the types of
    ``biz_transactions`` / ``sources`` / ``destinations`` are the CBV bare word when the value
    is a CBV 2.0 word in any spelling (word, ``https://ref.gs1.org/cbv/BizStep-…``,
    ``cbv:``/``gs1:`` CURIE, CBV 1.x URN), else the URI as sent; a bizTransaction without a type
    has type "". ``parent_id``, ``epcs`` (epcList, childEPCs, inputEPCList, outputEPCList in that
    order, without repeats) and ``epc_classes`` are canonical; ``read_point``, ``biz_location``
    and the ids of the pairs are as sent (checked). ``event_time`` is aware, in UTC. ``hashed``:
    the CBV 2.0 event hash of an event without an eventID, when the document's check computed it
    (``_unique_hashes``), for capture to take as its eventID.
    """

    raw: dict[str, Any]
    context: Any
    event_id: str | None
    event_type: str
    action: str | None
    biz_step: str | None
    disposition: str | None
    event_time: datetime
    event_time_zone_offset: str
    read_point: str | None
    biz_location: str | None
    parent_id: str | None
    epcs: list[str]
    epc_classes: list[str]
    biz_transactions: list[tuple[str, str]]
    sources: list[tuple[str, str]]
    destinations: list[tuple[str, str]]
    hashed: str | None = None


# -- vocabularies (CBV 2.0) ----------------------------------------------------------------------

BIZ_STEPS = frozenset(
    "accepting arriving assembling collecting commissioning consigning creating_class_instance "
    "cycle_counting decommissioning departing destroying disassembling dispensing encoding "
    "entering_exiting holding inspecting installing killing loading other packing picking "
    "receiving removing repackaging repairing replacing reserving retail_selling sampling "
    "sensor_reporting shipping staging_outbound stock_taking stocking storing transporting "
    "unloading unpacking void_shipping".split()
)
DISPOSITIONS = frozenset(
    "active available completeness_inferred completeness_verified conformant container_closed "
    "container_open damaged destroyed dispensed disposed encoded expired in_progress in_transit "
    "inactive mismatch_class mismatch_instance mismatch_quantity needs_replacement "
    "no_pedigree_match non_conformant non_sellable_other partially_dispensed recalled reserved "
    "retail_sold returned sellable_accessible sellable_not_accessible stolen unavailable "
    "unknown".split()
)
BIZ_TRANSACTION_TYPES = frozenset(
    "bol cert desadv inv pedigree po poc prodorder recadv rma testprd testres".split()
)
SOURCE_DEST_TYPES = frozenset({"owning_party", "possessing_party", "location"})
ERROR_REASONS = frozenset({"did_not_occur", "incorrect_data"})
SENSOR_ALERTS = frozenset({"ALARM_CONDITION", "ERROR_CONDITION"})
COMPONENTS = frozenset(
    "x y z axial_distance azimuth height spherical_radius polar_angle elevation_angle easting "
    "northing latitude longitude altitude geocoordinate".split()
)
MEASUREMENT_TYPES = frozenset(
    "AbsoluteHumidity AbsorbedDose AbsorbedDoseRate Acceleration Activity Altitude "
    "AmountOfSubstance AmountOfSubstancePerUnitVolume Angle AngularAcceleration AngularMomentum "
    "AngularVelocity Area Capacitance Conductance Conductivity Count Density Dimensionless "
    "DoseEquivalent DoseEquivalentRate DynamicViscosity ElectricCharge ElectricCurrent "
    "ElectricCurrentDensity ElectricFieldStrength Energy Exposure Force Frequency Illuminance "
    "Inductance Irradiance KinematicViscosity Length LinearMomentum Luminance LuminousFlux "
    "LuminousIntensity MagneticFlux MagneticFluxDensity MagneticVectorPotential Mass "
    "MassConcentration MassFlowRate MassPerAreaTime MemoryCapacity MolalityOfSolute MolarEnergy "
    "MolarMass MolarVolume Power Pressure RadiantFlux RadiantIntensity RelativeHumidity "
    "Resistance Resistivity SolidAngle SpecificVolume Speed SurfaceDensity SurfaceTension "
    "Temperature Time Torque Voltage Volume VolumeFlowRate VolumeFraction VolumetricFlux "
    "Wavenumber".split()
)


def _spellings(words: frozenset[str], web: str, urn: str | None) -> dict[str, str]:
    """Every spelling of a CBV value -> its bare word: the word, the Web URI, the cbv: and gs1:
    CURIEs and the CBV 1.x URN."""
    table = {}
    for w in words:
        table[w] = w
        table[f"https://ref.gs1.org/cbv/{web}-{w}"] = w
        table[f"cbv:{web}-{w}"] = w
        table[f"gs1:{web}-{w}"] = w
        if urn:
            table[f"urn:epcglobal:cbv:{urn}:{w}"] = w
    return table


_BIZ_STEP = _spellings(BIZ_STEPS, "BizStep", "bizstep")
_DISPOSITION = _spellings(DISPOSITIONS, "Disp", "disp")
_BTT = _spellings(BIZ_TRANSACTION_TYPES, "BTT", "btt")
_SDT = _spellings(SOURCE_DEST_TYPES, "SDT", "sdt")
_ER = _spellings(ERROR_REASONS, "ER", "er")
_ALERT = _spellings(SENSOR_ALERTS, "SensorAlertType", None)
_COMPONENT = _spellings(COMPONENTS, "Comp", None)
_MEASUREMENT = _spellings(MEASUREMENT_TYPES, "MT", None)
_CBV_URI = re.compile(
    r"^(?:https://ref\.gs1\.org/cbv/(?:BizStep|Disp|BTT)-|urn:epcglobal:cbv:(?:bizstep|disp|btt):"
    r"|cbv:(?:BizStep|Disp|BTT)-)"
)


def cbv_word(value: str) -> str:
    """A CBV value as its bare word (``shipping``) whether sent bare, as a URI or a CURIE."""
    return _CBV_URI.sub("", value)


# the query reads the values of EQ_bizStep, EQ_disposition and EQ_bizTransaction_{type} by these
# (``app.epcis.query``): a value is found in the spelling it was captured in
BIZ_STEP_SPELLINGS, DISPOSITION_SPELLINGS, BTT_SPELLINGS = _BIZ_STEP, _DISPOSITION, _BTT

EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "AssociationEvent",
    "TransactionEvent",
    "TransformationEvent",
)
_COMMON = frozenset(
    "@context type eventTime recordTime eventTimeZoneOffset eventID errorDeclaration "
    "certificationInfo bizStep disposition persistentDisposition readPoint bizLocation "
    "bizTransactionList sourceList destinationList sensorElementList".split()
)
_FIELDS: dict[str, frozenset[str]] = {
    "ObjectEvent": _COMMON | {"action", "epcList", "quantityList", "ilmd"},
    "AggregationEvent": _COMMON | {"action", "parentID", "childEPCs", "childQuantityList"},
    "AssociationEvent": _COMMON | {"action", "parentID", "childEPCs", "childQuantityList"},
    "TransactionEvent": _COMMON | {"action", "parentID", "epcList", "quantityList"},
    "TransformationEvent": _COMMON
    | {"inputEPCList", "inputQuantityList", "outputEPCList", "outputQuantityList"}
    | {"transformationID", "ilmd"},
}
_ACTIONS = frozenset({"ADD", "OBSERVE", "DELETE"})

# The prefixes the EPCIS 2.0 context itself declares (``@protected`` there, with these IRIs), and
# the URLs of that context.
STANDARD_NAMESPACES = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": "https://ref.gs1.org/cbv/",
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": "https://gs1.org/voc/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "dcterms": "http://purl.org/dc/terms/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "schema": "http://schema.org/",
    "sdo": "https://schema.org/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "sh": "http://www.w3.org/ns/shacl#",
}
_STANDARD_PREFIXES = frozenset(STANDARD_NAMESPACES)
_STANDARD_CONTEXTS = frozenset(
    {
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        "https://ref.gs1.org/standards/epcis/epcis-context.jsonld",
        "https://gs1.github.io/EPCIS/epcis-context.jsonld",
    }
)

# The terms the EPCIS 2.0 context defines besides its prefixes, all ``@protected`` there: a
# document's @context may bind prefixes, not redefine these (nor hold a JSON-LD keyword). A probe:
# a partner's {"bizStep": …} was lifted into a query page's @context and redefined the bizStep
# of every event on the page, Tracecode's own included.
_STANDARD_TERMS = frozenset(
    """id type isA EPCISDocument EPCISQueryDocument EPCISMasterDataDocument ObjectEvent
    AggregationEvent TransactionEvent TransformationEvent AssociationEvent schemaVersion
    creationDate epcisHeader epcisBody eventList queryResults queryName subscriptionID
    resultsBody epcisMasterData vocabularyList vocabularyElementList attributes children
    eventID eventTime recordTime eventTimeZoneOffset errorDeclaration declarationTime reason
    correctiveEventIDs certificationInfo action bizStep disposition persistentDisposition set
    unset readPoint bizLocation bizTransactionList bizTransaction sourceList source
    destinationList destination epcList childEPCs inputEPCList outputEPCList quantityList
    childQuantityList inputQuantityList outputQuantityList epcClass quantity uom parentID ilmd
    transformationID sensorElementList sensorMetadata sensorReport time startTime endTime
    deviceID deviceMetadata rawData dataProcessingMethod bizRules microorganism
    chemicalSubstance value component stringValue booleanValue hexBinaryValue uriValue
    minValue maxValue meanValue sDev percRank percValue exception coordinateReferenceSystem
    """.split()
)
# URI schemes of the identifiers events carry (Tracecode's own: urn:uuid:, urn:epc:,
# urn:tracecode:, https://id.gs1.org/…, ni:///…; partners' geo:, tag:, …). Bound as a prefix, such
# a name rewrites every IRI of its scheme (``urn:uuid:…`` read as the compact IRI ``urn`` +
# ``uuid:…``), on the whole query page (a probe: ``{"urn": "https://evil.example/"}``).
_URI_SCHEMES = frozenset("urn http https ni nih tag geo mailto tel data did file ftp".split())

# -- syntax ----------------------------------------------------------------------------------------

# RFC 3986 characters (and any non-ASCII one, for IRIs); "%" only as a %XX escape.
_URI_CHAR = "[A-Za-z0-9\\-._~:/?#\\[\\]@!$&'()*+,;=\\x80-\\U0010ffff]"
_URI = re.compile(rf"[A-Za-z][A-Za-z0-9+.\-]*:{_URI_CHAR}*(?:%[0-9A-Fa-f]{{2}}{_URI_CHAR}*)*")
_FULL_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+|urn:\S+", re.IGNORECASE)
_EXTENSION_KEY = re.compile(r"([A-Za-z_][\w.+\-]*):\S+")
_ZONE = r"[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00)"  # xsd: -14:00 to +14:00
_OFFSET = re.compile(_ZONE, re.ASCII)
_DATE_TIME = re.compile(rf"\d{{4}}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|{_ZONE})", re.ASCII)
_UOM = re.compile(r"[A-Z0-9]{2,3}")
_HEX = re.compile(r"[A-Fa-f0-9]+")

# Pointers are built only on failure: checkers take the parent's pointer ``at`` and the
# ``name`` (key or index) of the value they check.


def _fail(at: str, message: str) -> DocumentError:
    return DocumentError(f"{at}: {message}" if at else message, at or None)


def _bad(at: str, name: str | int, message: str) -> DocumentError:
    return _fail(f"{at}/{_key(name) if type(name) is str else name}", message)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(key: str) -> str:
    """A key as a JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _too_deep(value: Any, budget: int) -> bool:
    """Whether ``value`` nests more containers than ``budget`` (itself included)."""
    kind = type(value)
    if kind is dict:
        if budget <= 0:
            return True
        return any(_too_deep(v, budget - 1) for v in value.values())
    if kind is list:
        if budget <= 0:
            return True
        return any(_too_deep(v, budget - 1) for v in value)
    return False


def _free(value: Any, depth: int, at: str, name: str | int) -> None:
    """A free-form value placed at ``depth``: only its nesting is limited."""
    if type(value) in (dict, list) and _too_deep(value, MAX_DEPTH - depth + 1):
        raise _bad(at, name, f"nested deeper than {MAX_DEPTH} levels")


# -- scalars ---------------------------------------------------------------------------------------


def _string(value: Any, at: str, name: str) -> str:
    if type(value) is not str:
        raise _bad(at, name, f"must be a string, not {_show(value)}")
    return value


def _uri(value: Any, at: str, name: str | int) -> str:
    if type(value) is not str or not _URI.fullmatch(value):
        raise _bad(at, name, f"{_show(value)} is not a URI")
    if len(value) > MAX_URI:
        raise _bad(at, name, f"a URI of at most {MAX_URI} characters")
    return value


def _identifier(value: Any, at: str, name: str | int) -> str:
    """A URI; EPC URNs and Digital Link URIs must also be well formed. Returns the canonical
    form (other URIs unchanged). A Digital Link key's check digit is not verified: published
    conformance documents carry wrong ones (a GRAI in openepcis' Combination_of_different_event)
    and the CBV 2.0 event-hash reference takes them as they are."""
    if type(value) is not str or not _URI.fullmatch(value):
        raise _bad(at, name, f"{_show(value)} is not a URI")
    if len(value) > MAX_URI:
        raise _bad(at, name, f"a URI of at most {MAX_URI} characters")
    try:
        return canonical(value, False)
    except IdentifierError as exc:
        raise _bad(at, name, f"{_show(value)} is not a valid identifier: {exc}") from None


@lru_cache(maxsize=4096)
def _repeated(value: str) -> str | None:
    """``_identifier`` of a value that repeats from event to event (a location, a class, a
    business transaction): its canonical form, None when it is not valid."""
    if len(value) > MAX_URI or not _URI.fullmatch(value):
        return None
    try:
        return canonical(value, False)
    except IdentifierError:
        return None


def _known(value: Any, at: str, name: str | int) -> str:
    """``_identifier`` through the cache of repeated identifiers."""
    if type(value) is str:
        found = _repeated(value)
        if found is not None:
            return found
    return _identifier(value, at, name)  # raises, with the reason


def _identifiers(value: Any, at: str, name: str, into: list[str]) -> int:
    """Append the canonical form of each identifier of a list (EPCs: each one new, so not
    cached); return how many it held. A value ``canonical`` converted from an EPC URN (the only
    "u…" form it converts) has been parsed field by field: only others need the URI syntax
    check."""
    if type(value) is not list:
        raise _bad(at, name, f"must be an array of URIs, not {_show(value)}")
    # SGTIN URNs of known products: parsed field by field (no URI check needed), each under 60
    # characters (MAX_URI holds)
    known = known_sgtins(value)
    if known is not None:
        into += known
        return len(value)
    match = _URI.fullmatch
    append = into.append
    for j, item in enumerate(value):
        if type(item) is not str:
            raise _bad(f"{at}/{name}", j, f"{_show(item)} is not a URI")
        try:
            found = canonical(item, False)
        except IdentifierError as exc:
            raise _bad(
                f"{at}/{name}", j, f"{_show(item)} is not a valid identifier: {exc}"
            ) from None
        if (found == item or item[0] != "u") and not match(item):
            raise _bad(f"{at}/{name}", j, f"{_show(item)} is not a URI")
        if len(item) > MAX_URI:
            raise _bad(f"{at}/{name}", j, f"a URI of at most {MAX_URI} characters")
        append(found)
    return len(value)


def _uris(value: Any, at: str, name: str) -> None:
    if type(value) is not list:
        raise _bad(at, name, f"must be an array of URIs, not {_show(value)}")
    for j, item in enumerate(value):
        _uri(item, f"{at}/{name}", j)


def _vocabulary(value: Any, table: dict[str, str], what: str, at: str, name: str | int) -> str:
    """A CBV value: its bare word when it is one in any spelling, else a URI as sent."""
    if type(value) is not str:
        raise _bad(at, name, f"must be a string, not {_show(value)}")
    word = table.get(value)
    if word is not None:
        return word
    if ":" not in value or not _URI.fullmatch(value):
        raise _bad(at, name, f"{_show(value)} is neither a CBV 2.0 {what} nor a URI")
    if cbv_word(value) != value and not value.startswith("urn:tracecode:"):
        # the CBV's own namespace, no word of it (a probe: stored,
        # and never found again: a query reads the namespace's values as its words)
        raise _bad(at, name, f"{_show(value)} is in the CBV's namespace but no CBV 2.0 {what}")
    return value


_LAST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
_FRACTION = re.compile(r"\.(\d+)")  # of a time that matched _DATE_TIME (only its seconds have one)


def _time(value: Any, at: str, name: str) -> datetime:
    """An xsd:dateTimeStamp / RFC 3339 date-time (a zone is required), in UTC. A time finer than
    a microsecond is rounded up to the next, as a query's time is (``app.epcis.query``): an
    event is found by ``GE_eventTime`` at its own time and not by ``LT_eventTime`` (a probe: it
    was cut down here and rounded up there, so it was the other way round)."""
    if type(value) is not str or not _DATE_TIME.fullmatch(value):
        raise _bad(
            at, name, f"{_show(value)} is not a date-time with a time zone (-14:00 to +14:00)"
        )
    try:
        when = datetime.fromisoformat(value if value.isupper() else value.upper())
        when = when if when.tzinfo is UTC else when.astimezone(UTC)
        fraction = _FRACTION.search(value)
        if fraction is not None and fraction.group(1)[6:].strip("0"):
            when += timedelta(microseconds=1)  # in UTC: +14:00 at the calendar's end fits
    except (ValueError, OverflowError):
        raise _bad(at, name, f"{_show(value)} is not a valid date-time") from None
    if when > _LAST:  # the event hash rounds to milliseconds: past this, no date (a probe: 500)
        raise _bad(at, name, f"{_show(value)} is past the calendar's end")
    return when


def _number(value: Any, at: str, name: str) -> None:
    if type(value) not in (int, float):
        raise _bad(at, name, f"must be a number, not {_show(value)}")
    if type(value) is int and not -(2**53) <= value <= 2**53:
        # the CBV event hash reads numbers as doubles: two such events would share an eventID,
        # and the second be dropped as a repeat (probe P)
        raise _bad(at, name, "must be within ±2^53 (exact as a double)")


def _object(value: Any, at: str, name: str | int) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(at, name, f"must be an object, not {_show(value)}")
    return value


def _array(value: Any, at: str, name: str) -> list[Any]:
    if type(value) is not list:
        raise _bad(at, name, f"must be an array, not {_show(value)}")
    return value


# -- contexts and extension fields ----------------------------------------------------------------


class _Scope:
    """What @context declares for an event: the context itself (for the hash), the declared
    names (prefixes and terms) and whether an unknown remote context may declare any prefix."""

    __slots__ = ("context", "names", "open")

    def __init__(self, context: Any, names: frozenset[str], open_: bool) -> None:
        self.context, self.names, self.open = context, names, open_


def _declared(context: Any, depth: int, at: str) -> tuple[frozenset[str], bool]:
    """The names a @context (URI, object or array of them; at pointer ``at``) declares; open
    if it names a remote context other than the EPCIS one."""
    listed = type(context) is list
    items = context if listed else [context]
    names: set[str] = set()
    open_ = False
    for j, item in enumerate(items):
        where, name = (at, j) if listed else at.rsplit("/", 1)
        if type(item) is str:
            _uri(item, where, name)
            open_ = open_ or item not in _STANDARD_CONTEXTS
        elif type(item) is dict:
            _own_terms(item, f"{at}/{j}" if listed else at)
            names.update(item)
            _free(item, depth + listed, where, name)
        else:
            raise _bad(where, name, f"must be a URI or an object, not {_show(item)}")
    return frozenset(names), open_


def _own_terms(item: dict[str, Any], at: str) -> None:
    """Refuse a @context object (at pointer ``at``) that holds a JSON-LD keyword, redefines a
    term or prefix of the EPCIS 2.0 context (a prefix may be declared again with the IRI it has
    there) or binds a URI scheme's name: the query serves captured events under one page
    context, so such a binding would change what every other event of the page says (probes:
    ``bizStep``, ``cbvmda`` and ``urn`` rebound by one partner for everyone)."""
    for key, value in item.items():
        what = _refused_name(key, value)
        if what is not None:
            raise _bad(at, key, f"{key!r} is {what}: a @context declares prefixes and new terms")


def _refused_name(key: str, value: Any) -> str | None:
    """What a @context object's entry is when it may not be declared (see ``_own_terms``)."""
    if key[:1] == "@":
        return "a JSON-LD keyword"
    if key in _STANDARD_TERMS:
        return "a term of the EPCIS 2.0 context"
    if key in _STANDARD_PREFIXES and value != STANDARD_NAMESPACES[key]:
        return f"a prefix of the EPCIS 2.0 context ({STANDARD_NAMESPACES[key]})"
    if key.lower() in _URI_SCHEMES:
        return f"a URI scheme (it would rewrite every {key}: IRI)"
    return None


def page_safe(declared: dict[str, Any]) -> bool:
    """Whether a stored prefix object (``served_context``) may join a query page's @context:
    capture refuses what would not, but rows captured before it refused them may hold it."""
    return all(_refused_name(k, v) is None for k, v in declared.items())


def served_context(context: Any) -> dict[str, Any] | list[Any] | None:
    """What the query serves of a captured event's @context (the document's, then the event's
    own) beside the EPCIS 2.0 context: ``None`` when it adds nothing; the declared prefixes
    and terms as one object; or, when it names a remote context, its entries in order (the
    remote context's URL kept: a probe found it dropped, its prefixes served unbound) — the
    standard context's URLs and its prefixes (declared again with their own IRIs) left out."""
    parts: list[Any] = []
    for part in context if type(context) is list else [context]:
        if type(part) is dict:
            own = {k: v for k, v in part.items() if k not in _STANDARD_PREFIXES}
            if own:
                parts.append(own)
        elif type(part) is str and part not in _STANDARD_CONTEXTS:
            parts.append(part)
    if any(type(part) is str for part in parts):
        return parts
    merged = {k: v for part in parts for k, v in part.items()}
    return merged or None


def _event_scope(context: Any, scope: _Scope, at: str) -> _Scope:
    """The document's scope with an event's own @context added after it."""
    names, open_ = _declared(context, _EVENT_DEPTH + 1, f"{at}/@context")
    first = scope.context if type(scope.context) is list else [scope.context]
    own = context if type(context) is list else [context]
    return _Scope([*first, *own], scope.names | names, scope.open or open_)


def _extension(key: str, value: Any, scope: _Scope, depth: int, at: str) -> None:
    """A field (of the object at ``depth``) that is not a standard one: ``prefix:name`` with a
    declared prefix, or a full URI; its value is free-form."""
    named = _EXTENSION_KEY.fullmatch(key)
    if named is None:
        raise _bad(
            at,
            key,
            f"{key!r} is not a standard field here, and an extension field needs a namespace "
            "prefix (prefix:name)",
        )
    prefix = named.group(1)
    if not (scope.open or prefix in scope.names or key in scope.names):
        if prefix not in _STANDARD_PREFIXES and not _FULL_URI.fullmatch(key):
            raise _bad(at, key, f"the prefix {prefix!r} of {key!r} is not declared in @context")
    _free(value, depth + 1, at, key)


def _extras(obj: dict[str, Any], known: frozenset[str], scope: _Scope, depth: int, at: str) -> None:
    """The fields of ``obj`` (at ``depth``, pointer ``at``) that ``known`` does not list are
    extensions."""
    if obj.keys() <= known:
        return
    for key, value in obj.items():
        if key not in known:
            _extension(key, value, scope, depth, at)


# -- event parts -----------------------------------------------------------------------------------

_QUANTITY = frozenset({"epcClass", "quantity", "uom"})
_PLACE = frozenset({"id"})
_BIZ_TRANSACTION = frozenset({"type", "bizTransaction"})
_ERROR_DECLARATION = frozenset({"declarationTime", "reason", "correctiveEventIDs"})
_PERSISTENT = frozenset({"set", "unset"})
_SENSOR_ELEMENT = frozenset({"sensorMetadata", "sensorReport"})
_SENSOR_URIS = frozenset(
    "deviceID deviceMetadata rawData dataProcessingMethod bizRules microorganism "
    "chemicalSubstance uriValue coordinateReferenceSystem".split()
)
_SENSOR_NUMBERS = frozenset("value minValue maxValue meanValue sDev percRank percValue".split())
_SENSOR_TIMES = frozenset({"time", "startTime", "endTime"})
_SENSOR_METADATA = frozenset(
    "time deviceID deviceMetadata rawData startTime endTime dataProcessingMethod bizRules".split()
)
_SENSOR_REPORT = (
    _SENSOR_URIS
    | _SENSOR_NUMBERS
    | {"type", "exception", "time", "component", "stringValue", "booleanValue"}
    | {"hexBinaryValue", "uom"}
)


def _required(obj: dict[str, Any], field: str, at: str) -> Any:
    if field not in obj:
        raise _bad(at, field, "required")
    return obj[field]


# The canonical forms of identifiers of one object (EPC URNs ``urn:epc:id:``, tag and raw EPCs,
# and the Digital Link of every GS1 key of an instance: an SGTIN or UPUI, an ITIP or CPI with its
# serial, a GRAI, GDTI or SGCN with theirs, an SSCC, SGLN, PGLN, GSIN, GINC, GIAI, GSRN, GSRNP).
# An epcClass names the class of the objects counted (EPCIS 2.0 QuantityElement: a GTIN, a GTIN
# and lot, an EPC class pattern; a probe: "1 of {a unit's SGTIN} sold" was stored, where the unit
# in an epcList was refused).
_INSTANCE = re.compile(
    r"urn:epc:(?:id|tag|raw):|https://id\.gs1\.org/(?:01/[0-9]{14}/(?:21|235)/"
    r"|8006/[0-9]{18}/21/|8010/[^/]+/8011/|8003/[0-9]{14}.|(?:253|255)/[0-9]{13}."
    r"|(?:00|414|417|402|401|8004|8017|8018)/)"
)


def _epc_class(value: Any, at: str) -> str:
    """An epcClass: an identifier (canonical), of a class."""
    found = _known(value, at, "epcClass")
    if _INSTANCE.match(found):
        raise _bad(
            at,
            "epcClass",
            f"{_show(value)} identifies one object, not a class (a GTIN, a GTIN and lot, an "
            "EPC class pattern urn:epc:idpat:…): name objects in the event's EPC lists",
        )
    return found


def _quantities(value: Any, scope: _Scope, at: str, name: str, into: list[str]) -> int:
    """quantityList and its kin (at depth 5): epcClass required (canonical, of a class,
    appended to ``into``), quantity a number, uom a UN/ECE code. Returns how many elements
    there were."""
    for j, element in enumerate(_array(value, at, name)):
        where = f"{at}/{name}/{j}"
        element = _object(element, f"{at}/{name}", j)
        into.append(_epc_class(_required(element, "epcClass", where), where))
        if "quantity" in element:
            _number(element["quantity"], where, "quantity")
        if "uom" in element:
            uom = element["uom"]
            if type(uom) is not str or not _UOM.fullmatch(uom):
                raise _bad(where, "uom", f"{_show(uom)} is not a unit of measure code")
        _extras(element, _QUANTITY, scope, _EVENT_DEPTH + 2, where)
    return len(value)


def _place(value: Any, scope: _Scope, at: str, name: str) -> str:
    """readPoint / bizLocation: an object whose id is a URI (checked, returned as sent)."""
    place = _object(value, at, name)
    ident = place.get("id")
    if type(ident) is not str or _repeated(ident) is None:
        _identifier(_required(place, "id", f"{at}/{name}"), f"{at}/{name}", "id")
    if len(place) > 1:
        _extras(place, _PLACE, scope, _EVENT_DEPTH + 1, f"{at}/{name}")
    return ident  # type: ignore[return-value]  # checked above


def _biz_transactions(value: Any, scope: _Scope, at: str) -> list[tuple[str, str]]:
    """bizTransactionList (at depth 5): (type as a CBV word or URI, or ""; the id as sent)."""
    pairs = []
    for j, item in enumerate(_array(value, at, "bizTransactionList")):
        if (
            type(item) is not dict
            or not item.keys() <= _BIZ_TRANSACTION
            or "bizTransaction" not in item
        ):
            where = f"{at}/bizTransactionList/{j}"
            _required(_object(item, f"{at}/bizTransactionList", j), "bizTransaction", where)
            _extras(item, _BIZ_TRANSACTION, scope, _EVENT_DEPTH + 2, where)
        ident = item["bizTransaction"]
        if type(ident) is not str or _repeated(ident) is None:
            _identifier(ident, f"{at}/bizTransactionList/{j}", "bizTransaction")  # raises
        kind = item.get("type")
        if kind is None and "type" not in item:
            kind = ""
        else:
            word = _BTT.get(kind) if type(kind) is str else None
            if word is None:
                where = f"{at}/bizTransactionList/{j}"
                word = _vocabulary(kind, _BTT, "bizTransaction type", where, "type")
            kind = word
        pairs.append((kind, ident))
    return pairs


def _ends(value: Any, field: str, scope: _Scope, at: str) -> list[tuple[str, str]]:
    """sourceList (``field`` "source") or destinationList ("destination")."""
    name = f"{field}List"
    pairs = []
    known = frozenset({"type", field})
    for j, item in enumerate(_array(value, at, name)):
        where = f"{at}/{name}/{j}"
        item = _object(item, f"{at}/{name}", j)
        kind = _vocabulary(_required(item, "type", where), _SDT, f"{field} type", where, "type")
        ident = _required(item, field, where)
        _known(ident, where, field)
        _extras(item, known, scope, _EVENT_DEPTH + 2, where)
        pairs.append((kind, ident))
    return pairs


def _error_declaration(value: Any, scope: _Scope, at: str) -> None:
    declaration = _object(value, at, "errorDeclaration")
    at = f"{at}/errorDeclaration"
    _time(_required(declaration, "declarationTime", at), at, "declarationTime")
    if "reason" in declaration:
        _vocabulary(declaration["reason"], _ER, "error reason", at, "reason")
    if "correctiveEventIDs" in declaration:
        _uris(declaration["correctiveEventIDs"], at, "correctiveEventIDs")
    _extras(declaration, _ERROR_DECLARATION, scope, _EVENT_DEPTH + 1, at)


def declaration_time(event: dict[str, Any]) -> datetime | None:
    """When a checked event's ``errorDeclaration`` declares it erroneous, in UTC (as ``_time``
    reads it); None for an event without one."""
    declaration = event.get("errorDeclaration")
    if declaration is None:
        return None
    return _time(declaration["declarationTime"], "", "declarationTime")


def error_reason_spellings(reasons: list[str]) -> list[str]:
    """Every spelling capture accepts of each error reason (a CBV word in any spelling; other
    URIs as sent), for a query that compares them with what was stored as sent."""
    words = {_ER.get(r, r) for r in reasons}
    return sorted(words | {spelling for spelling, word in _ER.items() if word in words})


def _persistent_disposition(value: Any, scope: _Scope, at: str) -> None:
    persistent = _object(value, at, "persistentDisposition")
    at = f"{at}/persistentDisposition"
    for field in ("set", "unset"):
        if field in persistent:
            for j, item in enumerate(_array(persistent[field], at, field)):
                _vocabulary(item, _DISPOSITION, "disposition", f"{at}/{field}", j)
    _extras(persistent, _PERSISTENT, scope, _EVENT_DEPTH + 1, at)


def _certification(value: Any, at: str) -> None:
    if type(value) is list:
        _uris(value, at, "certificationInfo")
    else:
        _uri(value, at, "certificationInfo")


def _sensor_values(obj: dict[str, Any], at: str) -> None:
    """The typed standard fields shared by sensorMetadata and sensorReport."""
    for key, value in obj.items():
        if key in _SENSOR_URIS:
            _uri(value, at, key)
        elif key in _SENSOR_NUMBERS:
            _number(value, at, key)
        elif key in _SENSOR_TIMES:
            _time(value, at, key)


def _sensor_report(report: dict[str, Any], scope: _Scope, at: str) -> None:
    """One sensorReport (at depth 8, pointer ``at``)."""
    _sensor_values(report, at)
    if "type" in report:
        _vocabulary(report["type"], _MEASUREMENT, "measurement type", at, "type")
    if "exception" in report:
        _vocabulary(report["exception"], _ALERT, "sensor alert type", at, "exception")
    if "component" in report:
        _vocabulary(report["component"], _COMPONENT, "component", at, "component")
    for field in ("stringValue", "uom"):
        if field in report:
            _string(report[field], at, field)
    if "booleanValue" in report and type(report["booleanValue"]) is not bool:
        raise _bad(
            at, "booleanValue", f"must be true or false, not {_show(report['booleanValue'])}"
        )
    if "hexBinaryValue" in report:
        hex_value = report["hexBinaryValue"]
        if type(hex_value) is not str or not _HEX.fullmatch(hex_value):
            raise _bad(at, "hexBinaryValue", f"{_show(hex_value)} is not hexadecimal")
    _extras(report, _SENSOR_REPORT, scope, _EVENT_DEPTH + 4, at)


def _sensor_elements(value: Any, scope: _Scope, at: str) -> int:
    """sensorElementList (at depth 5): sensorReport required, typed metadata and reports."""
    name = "sensorElementList"
    for j, element in enumerate(_array(value, at, name)):
        element = _object(element, f"{at}/{name}", j)
        where = f"{at}/{name}/{j}"
        if "sensorMetadata" in element:
            metadata = _object(element["sensorMetadata"], where, "sensorMetadata")
            _sensor_values(metadata, f"{where}/sensorMetadata")
            _extras(metadata, _SENSOR_METADATA, scope, _EVENT_DEPTH + 3, f"{where}/sensorMetadata")
        reports = _array(_required(element, "sensorReport", where), where, "sensorReport")
        for k, report in enumerate(reports):
            report = _object(report, f"{where}/sensorReport", k)
            _sensor_report(report, scope, f"{where}/sensorReport/{k}")
        _extras(element, _SENSOR_ELEMENT, scope, _EVENT_DEPTH + 2, where)
    return len(value)


def _ilmd(value: Any, scope: _Scope, at: str) -> None:
    """ILMD (at depth 5): every field an extension field (a namespace prefix), values free."""
    ilmd = _object(value, at, "ilmd")
    for key, field in ilmd.items():
        _extension(key, field, scope, _EVENT_DEPTH + 1, f"{at}/ilmd")


# -- events ----------------------------------------------------------------------------------------


_EPC_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
# The EPC and quantity lists each type may carry (an extension type: any of them).
_LISTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ObjectEvent": (("epcList",), ("quantityList",)),
    "AggregationEvent": (("childEPCs",), ("childQuantityList",)),
    "AssociationEvent": (("childEPCs",), ("childQuantityList",)),
    "TransactionEvent": (("epcList",), ("quantityList",)),
    "TransformationEvent": (
        ("inputEPCList", "outputEPCList"),
        ("inputQuantityList", "outputQuantityList"),
    ),
}
_ANY_LISTS = (_EPC_LISTS, _QUANTITY_LISTS)


def _what(
    event: dict[str, Any], kind: str, scope: _Scope, at: str
) -> tuple[str | None, list[str], list[str], dict[str, int]]:
    """parentID, the EPCs (canonical, without repeats), the quantity classes and the size of
    each list, of the lists the event has."""
    parent = _identifier(event["parentID"], at, "parentID") if "parentID" in event else None
    epcs: list[str] = []
    classes: list[str] = []
    counts: dict[str, int] = {}
    epc_lists, quantity_lists = _LISTS.get(kind, _ANY_LISTS)
    for field in epc_lists:
        if field in event:
            counts[field] = _identifiers(event[field], at, field, epcs)
    for field in quantity_lists:
        if field in event:
            counts[field] = _quantities(event[field], scope, at, field, classes)
    if len(epcs) > 1:
        epcs = list(dict.fromkeys(epcs))
    return parent, epcs, classes, counts


def _needs(
    event: dict[str, Any],
    kind: str,
    parent: str | None,
    counts: dict[str, int],
    action: str | None,
    at: str,
) -> None:
    """The fields each standard event type requires beyond the common ones (``counts``: the
    size of each EPC and quantity list the event has)."""
    if kind == "ObjectEvent":
        if not (
            "epcList" in counts
            or counts.get("quantityList")
            or (event.get("sensorElementList") and "readPoint" in event)
        ):
            raise _fail(
                at, "an ObjectEvent needs epcList, quantityList, or sensorElementList and readPoint"
            )
        if "ilmd" in event and action != "ADD":
            raise _bad(at, "ilmd", "ILMD is only allowed when action is ADD")
    elif kind in ("AggregationEvent", "AssociationEvent"):
        if parent is None and (kind == "AssociationEvent" or action != "OBSERVE"):
            # EPCIS 2.0 7.4.3: an aggregation's parent is required for ADD and DELETE (a probe)
            raise _bad(at, "parentID", "required")
        if not (counts.get("childEPCs") or counts.get("childQuantityList") or action == "DELETE"):
            raise _bad(
                at,
                "childEPCs",
                f"an {kind} needs childEPCs or childQuantityList unless action is DELETE",
            )
    elif kind == "TransactionEvent":
        if not event.get("bizTransactionList"):
            raise _bad(at, "bizTransactionList", "required (at least one bizTransaction)")
        if not ("epcList" in counts or counts.get("quantityList") or action == "DELETE"):
            raise _bad(
                at,
                "epcList",
                "a TransactionEvent needs epcList or quantityList unless action is DELETE",
            )
    elif kind == "TransformationEvent":
        inputs = counts.get("inputEPCList") or counts.get("inputQuantityList")
        outputs = counts.get("outputEPCList") or counts.get("outputQuantityList")
        if not ((inputs and outputs) or ((inputs or outputs) and "transformationID" in event)):
            raise _fail(
                at,
                "a TransformationEvent needs inputs and outputs, or either with a transformationID",
            )


def _event_type(event: dict[str, Any], at: str) -> tuple[str, frozenset[str] | None]:
    """The event's type and the standard fields it may carry (None for an extension type)."""
    kind = _required(event, "type", at)
    fields = _FIELDS.get(kind) if type(kind) is str else None
    if fields is None and (type(kind) is not str or ":" not in kind or not _URI.fullmatch(kind)):
        raise _bad(
            at,
            "type",
            f"{_show(kind)} is neither a standard event type ({', '.join(EVENT_TYPES)}) "
            "nor an extension event type URI",
        )
    return kind, fields


def _action(event: dict[str, Any], kind: str, at: str) -> str | None:
    if "action" not in event:
        if kind in EVENT_TYPES and kind != "TransformationEvent":
            raise _bad(at, "action", "required")
        return None
    action = event["action"]
    if type(action) is not str or action not in _ACTIONS:
        raise _bad(at, "action", f"{_show(action)} is not ADD, OBSERVE or DELETE")
    return action


def _when(event: dict[str, Any], at: str) -> tuple[datetime, str]:
    """eventTime (in UTC) and eventTimeZoneOffset, both required."""
    if "eventTime" not in event:
        raise _bad(at, "eventTime", "required")
    when = _time(event["eventTime"], at, "eventTime")
    offset = event.get("eventTimeZoneOffset")
    if type(offset) is not str or not _OFFSET.fullmatch(offset):
        _required(event, "eventTimeZoneOffset", at)
        raise _bad(
            at, "eventTimeZoneOffset", f"{_show(offset)} is not an offset from -14:00 to +14:00"
        )
    return when, offset


def _rare(event: dict[str, Any], scope: _Scope, at: str) -> None:
    """The standard fields that carry nothing storage needs: checked only."""
    if "eventID" in event:
        _uri(event["eventID"], at, "eventID")
    if event.keys() <= _USUAL:
        return
    if "recordTime" in event:
        _time(event["recordTime"], at, "recordTime")
    if "transformationID" in event:
        _uri(event["transformationID"], at, "transformationID")
    if "certificationInfo" in event:
        _certification(event["certificationInfo"], at)
    if "errorDeclaration" in event:
        _error_declaration(event["errorDeclaration"], scope, at)
    if "persistentDisposition" in event:
        _persistent_disposition(event["persistentDisposition"], scope, at)
    if "sensorElementList" in event:
        _sensor_elements(event["sensorElementList"], scope, at)
    if "ilmd" in event:
        _ilmd(event["ilmd"], scope, at)


# The fields of a plain event: when it has no others, ``_rare`` has nothing more to check.
_USUAL = frozenset(
    "type eventTime eventTimeZoneOffset eventID action bizStep disposition readPoint "
    "bizLocation bizTransactionList sourceList destinationList parentID".split()
).union(_EPC_LISTS, _QUANTITY_LISTS)


def _fields(event: dict[str, Any], fields: frozenset[str] | None, scope: _Scope, at: str) -> None:
    """Every field of a standard event is a standard one of its type or an extension; an
    extension event's other fields are free-form."""
    if fields is not None:
        _extras(event, fields, scope, _EVENT_DEPTH, at)
        return
    for key, value in event.items():
        if key not in _ALL_FIELDS:
            _free(value, _EVENT_DEPTH + 1, at, key)


_ALL_FIELDS = frozenset().union(*_FIELDS.values())


def _event(event: Any, index: int, scope: _Scope) -> CapturedEvent:
    """Check one event of the eventList and extract what storage and query need."""
    event = _object(event, EVENT_LIST, index)
    at = f"{EVENT_LIST}/{index}"
    kind, fields = _event_type(event, at)
    if "@context" in event:
        scope = _event_scope(event["@context"], scope, at)
    _fields(event, fields, scope, at)
    event_time, offset = _when(event, at)
    action = _action(event, kind, at)
    parent, epcs, classes, counts = _what(event, kind, scope, at)
    step = event.get("bizStep")
    if step is not None or "bizStep" in event:
        step = _vocabulary(step, _BIZ_STEP, "business step", at, "bizStep")
    disposition = event.get("disposition")
    if disposition is not None or "disposition" in event:
        disposition = _vocabulary(disposition, _DISPOSITION, "disposition", at, "disposition")
    read_point = biz_location = None
    if "readPoint" in event:
        read_point = _place(event["readPoint"], scope, at, "readPoint")
    if "bizLocation" in event:
        biz_location = _place(event["bizLocation"], scope, at, "bizLocation")
    transactions: list[tuple[str, str]] = []
    sources: list[tuple[str, str]] = []
    destinations: list[tuple[str, str]] = []
    if "bizTransactionList" in event:
        transactions = _biz_transactions(event["bizTransactionList"], scope, at)
    if "sourceList" in event:
        sources = _ends(event["sourceList"], "source", scope, at)
    if "destinationList" in event:
        destinations = _ends(event["destinationList"], "destination", scope, at)
    _rare(event, scope, at)
    _needs(event, kind, parent, counts, action, at)
    return CapturedEvent(  # positional, in field order: half the cost of keywords
        event,
        scope.context,
        event_key(event["eventID"]) if "eventID" in event else None,
        kind,
        action,
        step,
        disposition,
        event_time,
        offset,
        read_point,
        biz_location,
        parent,
        epcs,
        classes,
        transactions,
        sources,
        destinations,
    )


# -- the document ----------------------------------------------------------------------------------

_ENVELOPE = frozenset({"@context", "type", "schemaVersion", "creationDate", "epcisBody"})


def _decode(raw: bytes | bytearray | memoryview | str) -> Any:
    """JSON to Python objects; invalid JSON, NUL and runaway nesting refused."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a byte order mark: RFC 8259 lets a parser ignore it
    try:
        check_json_body(data)  # the API's one check, as for every JSON body
    except InvalidCharacter as exc:
        raise _fail("", f"the document {exc.message.removeprefix('body ')}") from None
    try:
        return msgspec.json.decode(data)
    except RecursionError:
        raise _fail("", f"the document is nested deeper than {MAX_DEPTH} levels") from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise _fail("", f"the document is not valid JSON: {exc}") from None


def _envelope(doc: Any) -> _Scope:
    """The document's own fields; returns the scope its events inherit."""
    if type(doc) is not dict:
        raise _fail("", f"the document must be a JSON object, not {_show(doc)[:20]}")
    names, open_ = _declared(_required(doc, "@context", ""), 2, "/@context")
    if _required(doc, "type", "") != "EPCISDocument":
        raise _bad("", "type", f"{_show(doc['type'])} is not EPCISDocument")
    _string(_required(doc, "schemaVersion", ""), "", "schemaVersion")
    _time(_required(doc, "creationDate", ""), "", "creationDate")
    if "epcisHeader" in doc:
        _object(doc["epcisHeader"], "", "epcisHeader")
    for key, value in doc.items():
        if key not in _ENVELOPE:
            _free(value, 2, "", key)
    return _Scope(doc["@context"], _STANDARD_PREFIXES | names, open_)


def _event_list(doc: dict[str, Any], max_events: int) -> list[Any]:
    body = _object(_required(doc, "epcisBody", ""), "", "epcisBody")
    events = _array(_required(body, "eventList", "/epcisBody"), "/epcisBody", "eventList")
    if len(events) > max_events:
        raise DocumentError(
            f"{EVENT_LIST}: {len(events)} events; at most {max_events} in one document",
            EVENT_LIST,
            exception=CAPTURE_LIMIT,
            title="Too many events in one document",
            status=413,
        )
    for key, value in body.items():
        if key != "eventList":
            _free(value, 3, "/epcisBody", key)
    return events


def parse_document(
    raw: bytes | bytearray | memoryview | str, max_events: int = 10_000
) -> list[CapturedEvent]:
    """Decode and check one EPCIS 2.0 capture document (EPCISDocument, JSON or JSON-LD); return
    its events in order. Raises DocumentError (and nothing else) for any input it refuses: the
    whole document is refused at the first violation."""
    with gc_paused():
        doc = _decode(raw)
        scope = _envelope(doc)
        events = _event_list(doc, max_events)
        _sizes(doc, events, len(raw))
        captured = [_event(event, index, scope) for index, event in enumerate(events)]
        _unique_ids(captured)
        return captured


def _sizes(doc: dict[str, Any], events: list[Any], size: int) -> None:
    """413 for an event larger than MAX_EVENT_BYTES or an @context larger than
    MAX_CONTEXT_BYTES, as JSON: each query page holds up to a thousand events, each with the
    context. Only a document larger than a limit can break it, so most are never measured."""
    if size > MAX_CONTEXT_BYTES and len(msgspec.json.encode(doc["@context"])) > MAX_CONTEXT_BYTES:
        raise DocumentError(
            f"/@context: larger than {MAX_CONTEXT_BYTES} bytes",
            "/@context",
            exception=CAPTURE_LIMIT,
            title="The @context is too large",
            status=413,
        )
    if size <= MAX_EVENT_BYTES:
        return
    for index, event in enumerate(events):
        if len(msgspec.json.encode(event)) > MAX_EVENT_BYTES:
            at = f"{EVENT_LIST}/{index}"
            raise DocumentError(
                f"{at}: the event is larger than {MAX_EVENT_BYTES} bytes",
                at,
                exception=CAPTURE_LIMIT,
                title="An event is too large",
                status=413,
            )


def _unique_ids(events: list[CapturedEvent]) -> None:
    """Two events of one document with one eventID and different content: refused (the second
    would be dropped as a repeat of the first). The same event twice is a repeat, and the
    eventID again with an ``errorDeclaration`` declares the first erroneous: both allowed."""
    first: dict[str, int] = {}
    unnamed = 0
    for index, event in enumerate(events):
        if event.event_id is None:
            unnamed += 1
            continue
        was = first.setdefault(event.event_id, index)
        if was != index:
            _same_id(events, was, index)
    if unnamed > 1 or (unnamed and any(event_id[:3] == "ni:" for event_id in first)):
        _unique_hashes(events, first)


def _unique_hashes(events: list[CapturedEvent], first: dict[str, int]) -> None:
    """An event sent without an eventID is identified by its CBV 2.0 event hash: another event
    of the document given that hash as its eventID, or sent without one and of the same hash, is
    the same eventID twice (probes: the second one, with other content, was dropped without a
    word — the hash keeps milliseconds, and reads ``true`` and ``"True"`` alike). Hashed only
    for a document with two events without an eventID, or one giving a hash as an eventID; each
    hash is kept on its event (``hashed``): capture takes it as the eventID."""
    for index, event in enumerate(events):
        if event.event_id is not None:
            continue
        event.hashed = hashed = event_hash(event.raw, event.context)
        was = first.setdefault(hashed, index)
        if was != index:
            _same_id(events, min(was, index), max(was, index))


def _same_id(events: list[CapturedEvent], was: int, index: int) -> None:
    """Refuse event ``index`` when it has event ``was``'s eventID with other content (but for an
    ``errorDeclaration``: the eventID again with one declares the first erroneous)."""
    if _other(events[was].raw, events[index].raw) and "errorDeclaration" not in events[index].raw:
        raise _bad(
            f"{EVENT_LIST}/{index}",
            "eventID",
            f"event {was} of this document has this eventID, with other content",
        )


def _other(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two events of one eventID differ but for its spelling (a UUID in capitals)."""
    return a != b and {**a, "eventID": None} != {**b, "eventID": None}


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a synchronous stretch that builds many containers
    that all stay alive (a decoded document: its dicts, lists and events). The collections they
    would trigger find nothing to free, yet walk the young objects and now and then the whole
    heap: 15-20 % of parsing and hashing a document. Nothing else runs meanwhile (no await), and
    reference counting still frees whatever is dropped."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
