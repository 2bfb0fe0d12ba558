"""The CBV 2.0 event hash of one EPCIS 2.0 JSON event: ``ni:///sha-256;<hex>?ver=CBV2.0``.

SHA-256 over a canonical *pre-hash string*, built exactly as the reference implementation
(RalphTro/epcis-event-hash-generator at 5d2f1c38, the version the conformance hashes of
``shared/epcis-conformance`` come from) builds it from a JSON-LD document, without a JSON-LD
library:

1. **Bare CBV values** (``"bizStep": "shipping"``) become the IRIs the EPCIS 2.0.0 context
   expands them to (``https://ref.gs1.org/cbv/BizStep-shipping``; sensor types and alarms
   ``https://gs1.org/voc/…``). As the reference does after its JSON-LD expansion, *every*
   string value that is the unique ``-``/``/`` suffix of one of the expanded IRIs is then
   replaced by that IRI.
2. **Prefixes** declared by the objects of the document's ``@context`` list expand member
   names to ``{namespace}local`` and string values to ``namespace`` + ``local``. The
   standard context's own terms need none.
3. The event becomes a tree of ``(name, text, children)`` nodes shaped like the XML binding:
   ``epcList`` → ``epc`` elements, ``quantityList`` → ``quantityElement``, ``childEPCs`` →
   ``epc``, each bizTransaction / source / destination a group of its members in document
   order; every other object's members are sorted.
4. **Standard fields** follow in the property order (eventTime, eventTimeZoneOffset,
   certificationInfo, parentID, epcList, inputEPCList, childEPCs, the quantity lists,
   outputEPCList, action, transformationID, bizStep, disposition, persistentDisposition,
   readPoint, bizLocation, sensorElementList with sensorMetadata and sensorReport fields)
   as ``name=value`` with nothing between them; repeated elements are sorted. Times become
   UTC with milliseconds (``round(µs, -3)``: half to even); numbers lose leading and
   trailing zeros (``float``); CBV URNs become Web URIs; EPC URNs and Digital Links become
   canonical Digital Links (``app.epcis.identifiers``, check digits not verified); JSON
   ``true`` is written ``True``. User extensions inside a standard field (``{ns/}name``)
   are appended to that field.
5. **The rest** — ilmd, event-level user extensions, bizTransactionList, sourceList and
   destinationList (whose property-order entries never match in the reference, so they are
   written here, groups sorted) and anything a standard field had left over — follows as
   generic ``name=value`` strings, sorted. ``recordTime``, ``eventID``, ``type`` and
   ``errorDeclaration`` are left out.

An event's own ``@context`` is *not* merged into the prefixes: the reference writes it as
an ordinary member (``@contextext5=http://…``) and leaves the names it declares unexpanded,
and the conformance hashes of events with one (openepcis' Namespaces_at_different_level)
depend on exactly that. Pass the document's ``@context``; a list that ends with the event's
own context (a caller that merged the two, document first) has that tail dropped.

Deviations, on inputs where the reference fails or the conformance set has none: step 1
sees the values of this event only (the reference sees its whole document); the reference
keeps prefixes from earlier documents of the same process (global state) — never here; a
bizTransaction / source / destination with fewer or more than two members is hashed with
all of them (the reference fails, or drops the extra ones); a context entry whose value is
not a string is skipped (the reference fails); a Digital Link with percent-escapes or a
fragment is canonicalised (the reference leaves it as it is); a number a double cannot hold is
written exact (``_numeric``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from app.epcis.identifiers import IdentifierError, canonical, known_sgtins

__all__ = ["event_hash", "pre_hash"]

Node = tuple[Any, ...]  # (name, text, children); in the three group lists, a group of nodes

CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"

# --- 1. bare CBV values (the EPCIS 2.0.0 context's scoped terms) ---------------------------

_BIZ_STEPS = (
    "accepting arriving assembling collecting commissioning consigning creating_class_instance "
    "cycle_counting decommissioning departing destroying disassembling dispensing encoding "
    "entering_exiting holding inspecting installing killing loading other packing picking "
    "receiving removing repackaging repairing replacing reserving retail_selling sampling "
    "sensor_reporting shipping staging_outbound stock_taking stocking storing transporting "
    "unloading unpacking void_shipping"
).split()
_DISPOSITIONS = (
    "active available completeness_verified completeness_inferred conformant container_closed "
    "container_open damaged destroyed dispensed disposed encoded expired in_progress in_transit "
    "inactive mismatch_instance mismatch_class mismatch_quantity needs_replacement "
    "no_pedigree_match non_conformant non_sellable_other partially_dispensed recalled reserved "
    "retail_sold returned sellable_accessible sellable_not_accessible stolen unavailable unknown"
).split()
_BTT = "bol cert desadv inv pedigree po poc prodorder recadv rma testprd testres upevt".split()
_SDT = "owning_party possessing_party location".split()
_ER = "did_not_occur incorrect_data".split()
_MEASUREMENTS = (
    "AbsoluteHumidity AbsorbedDose AbsorbedDoseRate Acceleration Radioactivity Altitude "
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
    "Wavenumber"
).split()
_COMPONENTS = (
    "x y z axial_distance azimuth height spherical_radius polar_angle elevation_angle easting "
    "northing latitude longitude altitude"
).split()


def _terms(base: str, words: list[str]) -> dict[str, str]:
    return {word: base + word for word in words}


_BIZ_STEP_TERMS = _terms(CBV + "BizStep-", _BIZ_STEPS)
_DISPOSITION_TERMS = _terms(CBV + "Disp-", _DISPOSITIONS)
_BTT_TERMS = _terms(CBV + "BTT-", _BTT)
_SDT_TERMS = _terms(CBV + "SDT-", _SDT)
_ER_TERMS = _terms(CBV + "ER-", _ER)
_MEASUREMENT_TERMS = _terms(GS1_VOC, _MEASUREMENTS)
_EXCEPTION_TERMS = _terms(GS1_VOC, ["ALARM_CONDITION", "ERROR_CONDITION"])
_COMPONENT_TERMS = _terms(CBV + "Comp-", _COMPONENTS)
_CONTEXT_PREFIXES = {"cbv": CBV, "gs1": GS1_VOC}
_EXPANDED = ("https://ref.gs1.org/cbv", "https://gs1.org/voc")


def _expand_term(value: object, terms: dict[str, str], found: set[str]) -> None:
    """Add the IRI a vocab-typed value expands to (term, CURIE or IRI) to ``found``."""
    if isinstance(value, list):
        for item in value:
            _expand_term(item, terms, found)
        return
    if not isinstance(value, str):
        return
    if value in terms:
        found.add(terms[value])
        return
    prefix, _, rest = value.partition(":")
    if prefix in _CONTEXT_PREFIXES and rest:
        found.add(_CONTEXT_PREFIXES[prefix] + rest)


def _vocab_values(event: dict[str, Any]) -> set[str]:
    """The expanded CBV / GS1 vocabulary IRIs of the event's vocab-typed fields."""
    found: set[str] = set()
    _expand_term(event.get("bizStep"), _BIZ_STEP_TERMS, found)
    _expand_term(event.get("disposition"), _DISPOSITION_TERMS, found)
    persistent = event.get("persistentDisposition")
    if isinstance(persistent, dict):
        _expand_term(persistent.get("set"), _DISPOSITION_TERMS, found)
        _expand_term(persistent.get("unset"), _DISPOSITION_TERMS, found)
    for key, terms in (("bizTransactionList", _BTT_TERMS), ("sourceList", _SDT_TERMS)):
        _expand_list_types(event.get(key), terms, found)
    _expand_list_types(event.get("destinationList"), _SDT_TERMS, found)
    declaration = event.get("errorDeclaration")
    if isinstance(declaration, dict):
        _expand_term(declaration.get("reason"), _ER_TERMS, found)
    for element in _dicts(event.get("sensorElementList")):
        for report in _dicts(element.get("sensorReport")):
            _expand_term(report.get("type"), _MEASUREMENT_TERMS, found)
            _expand_term(report.get("exception"), _EXCEPTION_TERMS, found)
            _expand_term(report.get("component"), _COMPONENT_TERMS, found)
    _collect_full_iris(event, found)
    return found


def _dicts(value: object) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def _expand_list_types(value: object, terms: dict[str, str], found: set[str]) -> None:
    for element in _dicts(value):
        _expand_term(element.get("type"), terms, found)


def _collect_full_iris(value: object, found: set[str]) -> None:
    """Every value already written as a CBV / GS1 vocabulary IRI (JSON-LD keeps them)."""
    if isinstance(value, str):
        if value.startswith(_EXPANDED):
            found.add(value)
    elif isinstance(value, list):
        for item in value:
            _collect_full_iris(item, found)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "@context":
                _collect_full_iris(item, found)


def _suffixes(expanded: set[str]) -> dict[str, str | None]:
    """Suffix after any ``-`` or ``/`` → the one expanded IRI ending so (None if several)."""
    found: dict[str, str | None] = {}
    for iri in expanded:
        ends = {iri[i + 1 :] for i, char in enumerate(iri) if char in "-/"}
        for end in ends:
            found[end] = iri if end not in found else None
    return found


def _replace_bare(value: object, suffixes: dict[str, str | None]) -> object:
    """The event with every string that is the unique -/ /-suffix of an expanded IRI replaced."""
    if isinstance(value, str):
        return suffixes.get(value) or value
    if isinstance(value, list):
        return [_replace_bare(item, suffixes) for item in value]
    if isinstance(value, dict):
        return {key: _replace_bare(item, suffixes) for key, item in value.items()}
    return value


# --- 2. prefixes ----------------------------------------------------------------------------


def _namespaces(context: object) -> dict[str, str]:
    """Prefix → namespace IRI from the objects of a context list (strings map to themselves)."""
    found: dict[str, str] = {}
    if not isinstance(context, list):
        return found
    for entry in context:
        if isinstance(entry, str):
            found[entry] = entry
        elif isinstance(entry, dict):
            for key, iri in entry.items():
                if isinstance(iri, str):
                    found[key] = iri
    return found


# --- 3. the tree ----------------------------------------------------------------------------

_IGNORED_KEYS = frozenset({"#text", "rdfs:comment", "comment"})
_PAIR_LISTS = frozenset({"sourceList", "destinationList", "bizTransactionList"})
_UNSORTED_MARKERS = ("bizTransaction", "source", "destination")


class _Tree:
    """JSON → (name, text, children) nodes, with the document's prefixes."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        self.namespaces = namespaces

    def key(self, key: str) -> str:
        prefix, colon, rest = key.partition(":")
        if colon and prefix in self.namespaces:
            return "{" + self.namespaces[prefix] + "}" + rest
        return key

    def scalar(self, value: object) -> str:
        if isinstance(value, str):
            prefix, colon, rest = value.partition(":")
            if colon and prefix in self.namespaces:
                return self.namespaces[prefix] + rest
            return value
        return str(value)  # as the reference: True, False, None, 26.0 (made 26 later)

    def node(self, value: object) -> Node:
        """The reference's ``_json_to_py``: objects and lists become sorted child lists."""
        if isinstance(value, list):
            items = [self.node(item) for item in value]
            if not any(marker in value for marker in _UNSORTED_MARKERS):
                items.sort()
            return ("", "", items)
        if not isinstance(value, dict):
            return ("", self.scalar(value), [])
        name = value.get("type", "")
        text = value.get("#text", "")
        children: list[Node] = []
        for key, item in value.items():
            if key in _IGNORED_KEYS or key.startswith("@xmlns"):
                continue
            child = self.node(item)
            name_of = self.key(key)
            if isinstance(item, list):
                children.extend((name_of, element[1], element[2]) for element in child[2])
            else:
                children.append((name_of, child[1], child[2]))
        if not any(marker in value for marker in _UNSORTED_MARKERS):
            children.sort()
        return (str(name), str(text), children)


def _xml_shape(node: Node) -> Node:
    """The reference's ``deep_structure_correction``: the JSON tree in the XML binding's shape."""
    if not node[2]:
        return _renamed(node)
    children = list(node[2])
    lists: dict[str, list[Node]] = {}
    for element in [e for e in children if isinstance(e[0], str) and e[0].endswith("List")]:
        lists.setdefault(element[0], []).append((element[0][:-4], element[1], element[2]))
        children.remove(element)
    for list_name, elements in lists.items():
        if list_name in _PAIR_LISTS:
            groups = [tuple(e[2]) for e in elements if e[2]]
            children.append((list_name, "", groups))
        else:
            children.append((list_name, "", elements))
    child_epcs: list[Node] = [("epc", e[1], []) for e in children if e[0] == "childEPCs"]
    if child_epcs:
        children = [e for e in children if e[0] != "childEPCs"]
        children.append(("childEPCs", "", child_epcs))
    shaped = [e if e[0] in _PAIR_LISTS else _xml_shape(e) for e in children]
    return _renamed((node[0], node[1], shaped))


def _renamed(node: Node) -> Node:
    name = node[0]
    if name in ("inputEPC", "outputEPC"):
        return ("epc", node[1], node[2])
    if name in ("inputQuantity", "outputQuantity", "childQuantity") or (
        name == "quantity" and node[2]
    ):
        return ("quantityElement", node[1], node[2])
    return node


# --- 4./5. the pre-hash string --------------------------------------------------------------

_QUANTITY = [("quantityElement", [("epcClass", None), ("quantity", None), ("uom", None)])]
_SENSOR_METADATA = [
    (name, None)
    for name in (
        "time startTime endTime deviceID deviceMetadata rawData dataProcessingMethod bizRules"
    ).split()
]
_SENSOR_REPORT = [
    (name, None)
    for name in (
        "type exception deviceID deviceMetadata rawData dataProcessingMethod time microorganism "
        "chemicalSubstance value component stringValue booleanValue hexBinaryValue uriValue "
        "minValue maxValue meanValue sDev percRank percValue uom coordinateReferenceSystem"
    ).split()
]
Order = list[tuple[Any, Any]]
PROPERTY_ORDER: Order = [
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("certificationInfo", None),
    ("parentID", None),
    ("epcList", [("epc", None)]),
    ("inputEPCList", [("epc", None)]),
    ("childEPCs", [("epc", None)]),
    ("quantityList", _QUANTITY),
    ("childQuantityList", _QUANTITY),
    ("inputQuantityList", _QUANTITY),
    ("outputEPCList", [("epc", None)]),
    ("outputQuantityList", _QUANTITY),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", [("set", None), ("unset", None)]),
    ("readPoint", [("id", None)]),
    ("bizLocation", [("id", None)]),
    # as in the reference: these three orders name (type, value) pairs, which never match a
    # node's name, so the lists are written with the generic remainder (document order within
    # a pair, pairs sorted)
    ("bizTransactionList", [(("type", None), ("bizTransaction", None))]),
    ("sourceList", [(("type", None), ("source", None))]),
    ("destinationList", [(("type", None), ("destination", None))]),
    (
        "sensorElementList",
        [
            (
                "sensorElement",
                [("sensorMetadata", _SENSOR_METADATA), ("sensorReport", _SENSOR_REPORT)],
            )
        ],
    ),
]
_NOT_HASHED = frozenset({"recordTime", "eventID", "type", "errorDeclaration"})
_CBV_URNS = (
    ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", CBV + "ER-"),
)
_DATE_TIME = re.compile(
    r"\s*(-?\d{4,})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?\s*",
    re.ASCII | re.IGNORECASE,
)


def _timestamp(text: str) -> str:
    """UTC at millisecond precision, ``…T…:…:….mmmZ`` (fraction truncated to µs, then rounded)."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return text
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return text
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    # moment - offset is what astimezone(UTC) of the zoned moment computes (naive arithmetic,
    # same OverflowError at the ends of the calendar); _zone raises as timezone() does
    utc = moment - _zone(zone) if zone and zone not in "Zz" else moment
    rounded = utc + timedelta(microseconds=round(micros, -3))
    return rounded.isoformat(timespec="milliseconds") + "Z"


@lru_cache(maxsize=64)
def _zone(zone: str) -> timedelta:
    """The offset of a ``±hh[[:]mm]`` zone (ValueError from 24 hours on, as ``timezone``)."""
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    offset = -offset if zone[0] == "-" else offset
    timezone(offset)  # refuses offsets of a day or more, as the zoned datetime would
    return offset


def _numeric(text: str) -> str:
    """A number without leading/trailing zeros or '+'; any other text as it is. The reference
    reads numbers as doubles; one a double cannot hold (past 2^53, or past 17 digits) is written
    exact instead — a deviation: two events that differed only there (a long order number, a
    count) had one hash eventID, and the second was dropped as a repeat (review R3)."""
    first = text[:1]
    if not (first.isdigit() or first in "+-.") and text[:3].lower() not in ("nan", "inf"):
        return text  # what float() refuses anyway, without the cost of its exception
    try:
        number = float(text)
        written = str(int(number)) if int(number) == number else str(number)
    except (ValueError, OverflowError):
        return text
    if len(text) > 15 and first != "n":
        exact = Decimal(text)
        # within ±400 digits of the point: "1e-999999" would be written out a million long
        if exact.is_finite() and abs(exact.adjusted()) <= 400 and Decimal(written) != exact:
            return format(exact.normalize(), "f")
    return written


def _canonical_value(text: str) -> str:
    """CBV URNs → Web URIs, numbers normalised, EPC URNs / Digital Links → canonical DL."""
    if "urn:epcglobal:cbv:" in text:
        for urn, web in _CBV_URNS:
            text = text.replace(urn, web)
    text = _numeric(text)
    try:
        return canonical(text, check_digits=False, fold=False, tags=False)
    except IdentifierError:
        return text


def _field_extensions(children: list[Node]) -> list[Node]:
    """User extensions (``{ns/}name``) of a standard field, taken out to be appended to it."""
    # the reference's ``part in child[0]``: a substring of a name (an item of a group)
    if len(children) <= 1 or any("eventTime" in c[0] or "action" in c[0] for c in children):
        return []
    found = [c for c in children if "{" in c[0] and "/}" in c[0]]
    for extension in found:
        children.remove(extension)
    return found


def _ordered(children: list[Node], order: Order) -> str:
    """Standard fields in property order; consumed nodes are removed from ``children``."""
    extensions = _field_extensions(children)
    parts = ""
    consumed: set[int] = set()
    by_name: dict[object, list[Node]] = {}
    for child in children:
        by_name.setdefault(child[0] if isinstance(child[0], str) else None, []).append(child)
    for name, sub_order in order:
        values = []
        for child in by_name.get(name, ()) if isinstance(name, str) else ():
            text = _field(child, sub_order)
            if text:
                values.append(text)
            if not child[2]:
                consumed.add(id(child))
        values.sort()
        parts += "".join(values)
    if consumed:
        children[:] = [c for c in children if id(c) not in consumed]
    if extensions:
        parts += _generic(extensions)
    return parts


def _field(node: Node, sub_order: Order | None) -> str:
    """``name=value`` of one standard field, followed by its ordered members."""
    members = _ordered(node[2], sub_order) if sub_order else ""
    text = node[1].strip() if node[1] else ""
    if text:
        lowered = node[0].lower()
        text = (
            _timestamp(text)
            if "time" in lowered and "offset" not in lowered
            else _canonical_value(text)
        )
        text = "=" + text if text else ""
    return node[0] + text + members if text or members else ""


def _generic(children: list[Node]) -> str:
    """Fields outside the property order: ``name=value`` + members, sorted unless a pair."""
    values = []
    for child in children:
        if isinstance(child[0], tuple):  # a bizTransaction / source / destination group
            values.append(_generic(list(child)))
            continue
        text = child[1].strip()
        text = "=" + _canonical_value(text) if text else ""
        values.append(child[0] + text + _generic(child[2]))
    if len(children) > 1 and not any(c[0] in _UNSORTED_MARKERS for c in children):
        values.sort()
    return "".join(values)


def _document_context(event: dict[str, Any], context: object) -> object:
    """``context`` without a trailing copy of the event's own @context (see the docstring)."""
    own = event.get("@context")
    if own is None or not isinstance(context, list):
        return context
    tail = own if isinstance(own, list) else [own]
    if tail and len(context) > len(tail) and context[-len(tail) :] == tail:
        return context[: -len(tail)]
    return context


def pre_hash(event: dict[str, Any], context: object) -> str:
    """The canonical pre-hash string of one EPCIS 2.0 JSON event (see the module docstring)."""
    if not isinstance(event, dict):
        raise TypeError("an EPCIS event is a JSON object")
    plain = _plain_pre_hash(event, context)
    return plain if plain is not None else _general_pre_hash(event, context)


def _general_pre_hash(event: dict[str, Any], context: object) -> str:
    """``pre_hash`` of any event: the reference's steps one after the other."""
    expanded = _vocab_values(event)
    replaced = _replace_bare(event, _suffixes(expanded)) if expanded else event
    tree = _xml_shape(_Tree(_namespaces(_document_context(event, context))).node(replaced))
    children = list(tree[2])
    standard = _ordered(children, PROPERTY_ORDER)
    rest = [c for c in children if c[0] not in _NOT_HASHED]
    return f"eventType={tree[0]}{standard}{_generic(rest) if rest else ''}"


# --- the plain event, directly -------------------------------------------------------------
#
# Most captured events carry only the common fields: scalars, EPC lists, readPoint and
# bizLocation with an id, and (type, id) pair lists. For such an event the steps above reduce
# to a fixed recipe, written here without the tree: every string value goes through the bare-
# word replacement (step 1) and the prefixes (step 2) as ``node`` does; the standard fields
# follow in the property order (``_ordered`` / ``_field``: ``name=value``, list elements
# sorted); the pair lists follow as the generic remainder (each pair in document order, pairs
# sorted, lists sorted). Any other shape — another field, another JSON type, an empty list or
# element, a type that the replacement would change — takes the general path.
# tests/test_epcis_hash_plain.py holds the two paths equal.

_PLAIN_TYPES = frozenset(
    "ObjectEvent AggregationEvent AssociationEvent TransactionEvent TransformationEvent".split()
)
_PLAIN_SCALARS = frozenset(
    "type eventTime eventTimeZoneOffset eventID recordTime action bizStep disposition "
    "parentID".split()
)
_PLAIN_EPC_LISTS = frozenset({"epcList", "childEPCs"})
_PLAIN_PLACES = frozenset({"readPoint", "bizLocation"})
_PLAIN_PAIRS: dict[str, tuple[frozenset[str], dict[str, str]]] = {
    "bizTransactionList": (frozenset({"type", "bizTransaction"}), _BTT_TERMS),
    "sourceList": (frozenset({"type", "source"}), _SDT_TERMS),
    "destinationList": (frozenset({"type", "destination"}), _SDT_TERMS),
}
_PLAIN_FIELDS = _PLAIN_SCALARS | _PLAIN_EPC_LISTS | _PLAIN_PLACES | _PLAIN_PAIRS.keys()
_PLACE_KEYS = {"id": None}.keys()
# (field, written with _timestamp) in the property order; the EPC lists and places between
_PLAIN_HEAD = (("eventTime", True), ("eventTimeZoneOffset", False), ("parentID", False))
_PLAIN_MIDDLE = ("action", "bizStep", "disposition")


@lru_cache(maxsize=256)
def _suffix_table(expanded: frozenset[str]) -> dict[str, str | None]:
    return _suffixes(set(expanded))


@lru_cache(maxsize=4096)
def _repeated_value(text: str) -> str:
    """``_canonical_value`` of a value that repeats from event to event (a vocabulary word, a
    location, an offset)."""
    return _canonical_value(text)


def _known_epcs(
    epcs: list[str], suffixes: dict[str, str | None] | None, prefixes: dict[str, str] | None
) -> list[str] | None:
    """``epc=…`` of each EPC of a list of SGTIN URNs of known products, when no replacement or
    prefix applies to them (a URN has no spaces to strip, is no number, names no CBV URN, and
    its prefix "urn" is declared by no sane context); None otherwise."""
    if (suffixes and not suffixes.keys().isdisjoint(epcs)) or (prefixes and "urn" in prefixes):
        return None
    links = known_sgtins(epcs)
    return None if links is None else ["epc=" + link for link in links]


def _epc_value(text: str) -> str:
    """``_canonical_value`` of an EPC: an EPC URN is no number and names no CBV URN, so only
    its canonical form is left to compute."""
    if text.startswith("urn:epc:id:") and "urn:epcglobal:cbv:" not in text:
        try:
            return canonical(text, check_digits=False, fold=False)
        except IdentifierError:
            return text
    return _canonical_value(text)


def active_prefixes(context: object) -> dict[str, str]:
    """The prefixes ``_Tree.scalar`` can apply to a value: those without a colon (a value's
    prefix is the text before its first colon)."""
    return {k: v for k, v in _namespaces(context).items() if ":" not in k}


def _plain_values(event: dict[str, Any]) -> list[str] | None:
    """Every string value of a plain event (None if it is not one)."""
    strings: list[str] = []
    for key, value in event.items():
        kind = type(value)
        if key in _PLAIN_SCALARS:
            if kind is not str:
                return None
            strings.append(value)
        elif key in _PLAIN_EPC_LISTS:
            if kind is not list or not value or not all(type(v) is str for v in value):
                return None
            strings += value
        elif key in _PLAIN_PLACES:
            if kind is not dict or value.keys() != _PLACE_KEYS or type(value["id"]) is not str:
                return None
            strings.append(value["id"])
        else:
            allowed = _PLAIN_PAIRS[key][0]
            if kind is not list or not value:
                return None
            for element in value:
                if type(element) is not dict or not element or not element.keys() <= allowed:
                    return None
                for v in element.values():
                    if type(v) is not str:
                        return None
                    strings.append(v)
    return strings


def _plain_pre_hash(event: dict[str, Any], context: object) -> str | None:
    """``pre_hash`` of a plain event (see above), or None for any other."""
    if not event.keys() <= _PLAIN_FIELDS or event.get("type") not in _PLAIN_TYPES:
        return None
    strings = _plain_values(event)
    if strings is None:
        return None
    found: set[str] = set()  # step 1: the expanded vocabulary IRIs
    _expand_term(event.get("bizStep"), _BIZ_STEP_TERMS, found)
    _expand_term(event.get("disposition"), _DISPOSITION_TERMS, found)
    for key, (_, terms) in _PLAIN_PAIRS.items():
        for element in event.get(key, ()):
            _expand_term(element.get("type"), terms, found)
    for text in strings:
        if text.startswith(_EXPANDED):
            found.add(text)
    suffixes = _suffix_table(frozenset(found)) if found else None
    if suffixes and event["type"] in suffixes:
        return None  # the event's type itself would be replaced
    prefixes = active_prefixes(context) if isinstance(context, list) else None

    def text_of(value: str) -> str:
        """A value as a node's text: bare words replaced, prefixes applied, stripped."""
        if suffixes:
            value = suffixes.get(value) or value
        if prefixes:
            prefix, colon, rest = value.partition(":")
            if colon and prefix in prefixes:
                value = prefixes[prefix] + rest
        return value.strip()

    parts = [f"eventType={event['type']}"]
    for name, timed in _PLAIN_HEAD:
        if name in event and (text := text_of(event[name])):
            value = _timestamp(text) if timed else _repeated_value(text)
            if value:
                parts.append(f"{name}={value}")
    for name in ("epcList", "childEPCs"):
        if name in event:
            epcs = _known_epcs(event[name], suffixes, prefixes)
            if epcs is None:
                epcs = []
                for epc in event[name]:
                    if (text := text_of(epc)) and (value := _epc_value(text)):
                        epcs.append("epc=" + value)
            if epcs:
                epcs.sort()
                parts.append(name + "".join(epcs))
    for name in _PLAIN_MIDDLE:
        if name in event and (text := text_of(event[name])):
            value = _repeated_value(text)
            if value:
                parts.append(f"{name}={value}")
    for name in ("readPoint", "bizLocation"):
        if name in event and (text := text_of(event[name]["id"])):
            value = _repeated_value(text)
            if value:
                parts.append(f"{name}id={value}")
    rest = []
    for name in _PLAIN_PAIRS:
        if name in event:
            groups = []
            for element in event[name]:
                group = ""
                for key, value in element.items():
                    text = text_of(value)
                    group += f"{key}={_repeated_value(text)}" if text else key
                groups.append(group)
            groups.sort()
            rest.append(name + "".join(groups))
    rest.sort()
    return "".join(parts) + "".join(rest)


def event_hash(event: dict[str, Any], context: object) -> str:
    """``ni:///sha-256;<hex>?ver=CBV2.0`` of one EPCIS 2.0 JSON event (as decoded).

    ``context`` is the *document's* ``@context`` (a string, an object or a list of both);
    the event's own ``@context`` is read from the event, as the reference does (see the
    module docstring). Never raises for a JSON object; a field it cannot read (a time that
    is not a date-time, say) is hashed as written.
    """
    digest = hashlib.sha256(pre_hash(event, context).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"
