"""The CBV 2.0 event hash's shortcut for plain events writes the same pre-hash string as the
general path: on every event of the conformance set, and on generated plain events whose
values are chosen to hit every rule the shortcut must reproduce (bare CBV words in all their
spellings and values that are suffixes of them, document prefixes, EPC URNs and Digital Links
valid or not, padded and empty values, pair lists in any member order, times in any zone)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.epcis import hashing
from app.epcis.hashing import _general_pre_hash, _plain_pre_hash, _timestamp, pre_hash
from tests.helpers import epcis_conformance

CONFORMANCE = epcis_conformance()
MANIFEST = json.loads((CONFORMANCE / "manifest.json").read_text(encoding="utf-8"))
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"


def _reference_timestamp(text: str) -> str:
    """The general path's time rule as first written (aware datetimes, astimezone)."""
    match = hashing._DATE_TIME.fullmatch(text)
    if match is None:
        return text
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return text
    micros = int((fraction or "")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if zone and zone.upper() != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        offset = -offset if zone[0] == "-" else offset
    aware = moment.replace(tzinfo=timezone(offset)).astimezone(UTC)
    rounded = aware + timedelta(microseconds=round(micros, -3))
    return rounded.isoformat(timespec="milliseconds")[:-6] + "Z"


def test_every_conformance_event_hashes_the_same_by_both_paths() -> None:
    plain = 0
    for entry in MANIFEST["valid"]:
        document = json.loads((CONFORMANCE / entry["file"]).read_text("utf-8"))
        for event in document["epcisBody"]["eventList"]:
            assert pre_hash(event, document["@context"]) == _general_pre_hash(
                event, document["@context"]
            ), entry["file"]
            plain += _plain_pre_hash(event, document["@context"]) is not None
    assert plain >= 10  # the shortcut is taken on the set's plain events


def test_the_benchmark_event_takes_the_shortcut() -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T08:00:01.001+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [f"urn:epc:id:sgtin:4012345.011111.{j}" for j in range(10)],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:4012345.00001.0"},
        "bizLocation": {"id": "urn:epc:id:sgln:4012345.00002.0"},
        "bizTransactionList": [{"type": "desadv", "bizTransaction": "urn:x:desadv:1"}],
    }
    assert _plain_pre_hash(event, [CONTEXT]) == _general_pre_hash(event, [CONTEXT])
    assert _plain_pre_hash(event, [CONTEXT]) is not None


# -- generated plain events ------------------------------------------------------------------

_CBV = "https://ref.gs1.org/cbv/"
_WORDS = ["shipping", "receiving", "in_transit", "active", "desadv", "po", "location"]
_VOCAB = st.sampled_from(
    [
        *_WORDS,
        _CBV + "BizStep-shipping",
        "cbv:BizStep-receiving",
        "gs1:Disp-active",
        "urn:epcglobal:cbv:bizstep:shipping",
        "urn:epcglobal:cbv:disp:in_transit",
        "urn:epcglobal:cbv:btt:po",
        _CBV + "BTT-desadv",
        _CBV + "SDT-owning_party",
        "owning_party",
        "possessing_party",
        "https://example.com/steps/shipping",
        "BizStep-shipping",
        "cbv/BizStep-shipping",
        "ex:step",
        " shipping ",
        "",
        "ObjectEvent",
    ]
)
_EPC = st.one_of(
    st.builds(
        lambda c, r, s: f"urn:epc:id:sgtin:{c}.{r}.{s}",
        st.sampled_from(["4012345", "0614141", "123456789012"]),
        st.sampled_from(["011111", "812345", "1", "0"]),
        st.sampled_from(["1", "S1", "a%2Fb", "x y", "0" * 21, "shipping"]),
    ),
    st.builds(lambda r: f"urn:epc:id:sscc:4012345.{r}", st.sampled_from(["0000000001", "12", "x"])),
    st.sampled_from(
        [
            "https://id.gs1.org/01/04012345111118/21/1",
            "https://example.com/01/04012345111110/21/9?x=1",
            "https://id.gs1.org/00/040123450000000010",
            "https://example.com/gtin/4012345111118/ser/7",
            "urn:epc:id:sgln:4012345.00001.0",
            "urn:epc:idpat:sgtin:4012345.011111.*",
            "urn:epc:class:lgtin:4012345.011111.L1",
            "urn:epcglobal:cbv:bizstep:shipping",
            "ex:epc-1",
            "urn:x:1",
            "12.50",
            "+7",
            " urn:epc:id:sgtin:4012345.011111.7 ",
            "shipping",
            "",
        ]
    ),
)
_TIME = st.builds(
    lambda y, frac, zone: f"{y}-03-01T08:00:01{frac}{zone}",
    st.sampled_from(["2026", "0001", "9999", "1999"]),
    st.sampled_from(["", ".1", ".1415", ".9995", ".0005", ".123456789", ",5"]),
    st.sampled_from(["Z", "z", "+08:00", "-05:30", "+14:00", "+0800", "+08", ""]),
)
_CONTEXT = st.sampled_from(
    [
        [CONTEXT],
        CONTEXT,
        [CONTEXT, {"ex": "http://ns.example.com/"}],
        [{"urn": "http://u/"}, CONTEXT],
        [{"shipping": "http://s/", "ex": 7}],
        {"ex": "http://ns.example.com/"},
    ]
)


def _pairs(member: str, types: Any) -> Any:
    element = st.one_of(
        st.fixed_dictionaries({"type": types, member: _EPC}),
        st.fixed_dictionaries({member: _EPC, "type": types}),
        st.fixed_dictionaries({member: _EPC}),
        st.fixed_dictionaries({"type": types}),
    )
    return st.lists(element, min_size=1, max_size=3)


_OPTIONAL = {
    "eventID": st.sampled_from(["urn:uuid:1", _CBV + "BizStep-shipping", "shipping"]),
    "recordTime": _TIME,
    "eventTime": _TIME,
    "eventTimeZoneOffset": st.sampled_from(["+08:00", "-05:00", "+14:00", "", " +01:00"]),
    "action": st.sampled_from(["ADD", "OBSERVE", "DELETE", "", "shipping"]),
    "bizStep": _VOCAB,
    "disposition": _VOCAB,
    "parentID": _EPC,
    "epcList": st.lists(_EPC, min_size=1, max_size=5),
    "childEPCs": st.lists(_EPC, min_size=1, max_size=5),
    "readPoint": st.fixed_dictionaries({"id": _EPC}),
    "bizLocation": st.fixed_dictionaries({"id": _EPC}),
    "bizTransactionList": _pairs("bizTransaction", _VOCAB),
    "sourceList": _pairs("source", _VOCAB),
    "destinationList": _pairs("destination", _VOCAB),
}
_EVENT = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(["ObjectEvent", "AggregationEvent", "TransactionEvent"]),
    st.fixed_dictionaries({}, optional=_OPTIONAL),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=_EVENT, context=_CONTEXT)
def test_generated_plain_events_hash_the_same_by_both_paths(
    event: dict[str, Any], context: Any
) -> None:
    try:
        general = _general_pre_hash(event, context)
    except (ValueError, OverflowError) as error:  # a time at the end of the calendar
        try:
            _plain_pre_hash(event, context)
        except type(error):
            return
        raise AssertionError("the general path raised, the shortcut did not") from error
    assert _plain_pre_hash(event, context) == general


@settings(max_examples=500, deadline=None)
@given(text=_TIME)
def test_times_convert_as_the_aware_datetime_did(text: str) -> None:
    try:
        expected = _reference_timestamp(text)
    except (ValueError, OverflowError) as error:
        try:
            _timestamp(text)
        except type(error):
            return
        raise AssertionError(f"{text!r}: no {type(error).__name__}") from error
    assert _timestamp(text) == expected, text
