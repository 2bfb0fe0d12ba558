"""EPCIS 2.0 capture documents (issue 19, app/epcis/document.py): the conformance set, what
each event yields, hostile input, and a fuzzer that may only ever see events or DocumentError.

The conformance documents live in ``../shared/epcis-conformance/`` (see its SOURCES.md): 38
valid documents (70 events) that must parse, 13 invalid ones that must be refused naming the
field at fault. They are read where they are, never copied.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.epcis.document import (
    CAPTURE_LIMIT,
    MAX_DEPTH,
    VALIDATION,
    CapturedEvent,
    DocumentError,
    parse_document,
    served_context,
)
from tests.helpers import epcis_conformance

CONFORMANCE = epcis_conformance()
MANIFEST = json.loads((CONFORMANCE / "manifest.json").read_text(encoding="utf-8"))
VALID = [entry["file"] for entry in MANIFEST["valid"]]
INVALID = [entry["file"] for entry in MANIFEST["invalid"]]
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

# The field each invalid document breaks (manifest.json "violation").
REFUSED_AT = {
    "invalid/01-oe-ObjectEvent_with_invalid_eventTime_format.json": "/epcisBody/eventList/0/eventTime",
    "invalid/02-oe-ObjectEvent_with_non_standard_bizStep_in_second_event.json": "/epcisBody/eventList/1/bizStep",
    "invalid/03-oe-ObjectEvent_with_ilmd_field_without_namespace.json": "/epcisBody/eventList/0/ilmd/materialType",
    "invalid/04-oe-ObjectEvent_without_identifier_list.json": "/epcisBody/eventList/0",
    "invalid/05-mut-missing-eventTime.json": "/epcisBody/eventList/0/eventTime",
    "invalid/06-mut-bad-action.json": "/epcisBody/eventList/0/action",
    "invalid/07-mut-epc-not-a-uri.json": "/epcisBody/eventList/0/epcList/0",
    "invalid/08-mut-malformed-sgtin-urn.json": "/epcisBody/eventList/0/epcList/0",
    "invalid/09-mut-missing-context.json": "/@context",
    "invalid/10-mut-wrong-document-type.json": "/type",
    "invalid/11-mut-wrong-event-type.json": "/epcisBody/eventList/0/type",
    "invalid/12-mut-bad-timezone-offset.json": "/epcisBody/eventList/0/eventTimeZoneOffset",
    "invalid/13-mut-quantity-without-epcClass.json": "/epcisBody/eventList/1/quantityList/0/epcClass",
}


def read(name: str) -> bytes:
    return (CONFORMANCE / name).read_bytes()


def parse_file(name: str) -> list[CapturedEvent]:
    return parse_document(read(name))


def refused(raw: bytes | str, **kwargs: Any) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        parse_document(raw, **kwargs)
    return caught.value


def minimal_event(**fields: Any) -> dict[str, Any]:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T08:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "OBSERVE",
    }
    event.update(fields)
    return event


def document(*events: dict[str, Any], **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": [CONTEXT, {"ex": "https://ns.example.com/epcis/"}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-03-01T08:00:00Z",
        "epcisBody": {"eventList": list(events) or [minimal_event()]},
    }
    doc.update(fields)
    return doc


def encode(doc: Any) -> bytes:
    return msgspec.json.encode(doc)


# -- the conformance set ---------------------------------------------------------------------------


def test_the_conformance_set_is_where_the_manifest_says() -> None:
    assert len(VALID) == 38
    assert len(INVALID) == 13
    assert set(REFUSED_AT) == set(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_every_valid_conformance_document_parses(name: str) -> None:
    sent = json.loads(read(name))
    events = parse_file(name)
    assert [e.raw for e in events] == sent["epcisBody"]["eventList"]  # query-back-equal
    for event, raw in zip(events, sent["epcisBody"]["eventList"], strict=True):
        assert event.event_type == raw["type"]
        assert event.event_time.tzinfo is UTC
        assert event.event_time == datetime.fromisoformat(raw["eventTime"]).astimezone(UTC)
        assert event.event_time_zone_offset == raw["eventTimeZoneOffset"]
        assert event.event_id == raw.get("eventID")
        assert event.action == raw.get("action")
        assert all(epc.startswith("https://id.gs1.org/") for epc in event.epcs)
        assert len(event.epcs) == len(set(event.epcs))
        if "@context" not in raw:
            assert event.context == sent["@context"]


def test_the_valid_set_holds_70_events_of_the_five_types() -> None:
    types = Counter(e.event_type for name in VALID for e in parse_file(name))
    assert types == {
        "ObjectEvent": 40,
        "AggregationEvent": 9,
        "TransactionEvent": 8,
        "TransformationEvent": 7,
        "AssociationEvent": 6,
    }


@pytest.mark.parametrize("name", INVALID)
def test_every_invalid_conformance_document_is_refused_at_its_field(name: str) -> None:
    error = refused(read(name))
    assert error.type == "epcisException:ValidationException" == VALIDATION
    assert error.status == 400
    assert error.pointer == REFUSED_AT[name]
    assert error.detail.startswith(REFUSED_AT[name] + ": ")
    assert error.problem() == {
        "type": VALIDATION,
        "title": error.title,
        "status": 400,
        "detail": error.detail,
    }


def test_example_9_6_1_yields_normalised_fields() -> None:
    first, second = parse_file("valid/01-gs1-Example_9.6.1-ObjectEvent.jsonld")
    assert (first.event_type, first.action, first.biz_step, first.disposition) == (
        "ObjectEvent",
        "OBSERVE",
        "shipping",
        "in_transit",
    )
    # urn:epc:id:sgtin:0614141.107346.2017: indicator 1, GTIN 1061414107346 + check digit 4
    assert first.epcs == [
        "https://id.gs1.org/01/10614141073464/21/2017",
        "https://id.gs1.org/01/10614141073464/21/2018",
    ]
    assert first.event_time == datetime(2005, 4, 4, 2, 33, 31, 116000, tzinfo=UTC)
    assert first.event_time_zone_offset == "-06:00"
    assert first.read_point == "urn:epc:id:sgln:0614141.07346.1234"
    assert first.biz_location is None and first.parent_id is None
    assert first.biz_transactions == [("po", "http://transaction.acme.com/po/12345678")]
    assert first.event_id.startswith("ni:///sha-256;df7bb3c352fef055")
    assert second.biz_transactions == [
        ("po", "http://transaction.acme.com/po/12345678"),
        ("desadv", "urn:epcglobal:cbv:bt:0614141073467:1152"),
    ]
    assert second.biz_location == "urn:epc:id:sgln:0012345.11111.0"
    assert second.context == [CONTEXT, {"example": "http://ns.example.com/epcis/"}]


def test_cbv_web_uris_become_bare_words_and_other_uris_stay() -> None:
    events = parse_file("valid/26-oe-Combination_of_different_event.json")
    assert events[0].biz_step == "sensor_reporting"  # https://ref.gs1.org/cbv/BizStep-…
    assert events[0].raw["bizStep"] == "https://ref.gs1.org/cbv/BizStep-sensor_reporting"
    assert events[2].biz_step == "ext1:summarising_discharge"  # a CURIE of the sender's
    assert events[2].biz_transactions == [("", "urn:epc:id:gdti:95252084.0001.0003555480001000")]
    aggregation = events[1]
    assert aggregation.parent_id == "https://id.gs1.org/01/19520010123455/21/22222223333"
    assert aggregation.epcs == ["https://id.gs1.org/01/09520001123467/21/10000001001"]
    transformation = events[3]
    assert transformation.action is None
    assert transformation.epcs[:2] == [  # inputs, then outputs
        "https://id.gs1.org/01/04012345111224/21/25",
        "https://id.gs1.org/01/04000001654321/21/99886655",
    ]
    assert len(transformation.epcs) == 6
    assert transformation.epc_classes == [
        "https://id.gs1.org/01/04012345111118/10/4444",
        "https://id.gs1.org/01/00614141777778/10/987",
        "https://id.gs1.org/01/04012345666663",  # the idpat: every serial of the GTIN
    ]


def test_custom_types_curies_and_untyped_transactions_are_kept_as_sent() -> None:
    events = parse_file("valid/16-gs1-Example-TransactionEvents-2020_07_03y.jsonld")
    assert events[0].biz_step == "http://epcis.example.org/hc/bizstep/summarising_discharge"
    assert events[1].biz_transactions == [
        ("urn:gs1:epcisapp:rail:btt:passage", "http://transaction.examplerail.com/passage/xyz12345")
    ]
    (event,) = parse_file("valid/27-oe-CurieString_document.json")
    assert event.destinations[-1] == ("cbv:my_own_party", "urn:epc:id:pgln:0614141.00777")
    assert event.biz_transactions[1] == ("bol", "urn:epcglobal:cbv:bt:0614141073467:1152")


def test_sources_destinations_and_quantities() -> None:
    (event,) = parse_file("valid/11-gs1-object_event_all_possible_fields.jsonld")
    assert event.sources == [
        ("location", "urn:epc:id:sgln:4012345.00225.0"),
        ("possessing_party", "urn:epc:id:pgln:4012345.00225"),
        ("owning_party", "urn:epc:id:pgln:4012345.00225"),
    ]
    assert event.destinations[0] == ("location", "urn:epc:id:sgln:0614141.00777.0")
    assert event.epc_classes == ["https://id.gs1.org/01/04012345123456/10/998877"]
    assert (
        event.context
        == json.loads(read("valid/11-gs1-object_event_all_possible_fields.jsonld"))["@context"]
    )


@pytest.mark.parametrize(
    "named",
    [
        "https://id.gs1.org/01/06901234000023/21/ABC",  # an SGTIN
        "https://brand.example/gtin/06901234000023/ser/ABC",
        "urn:epc:id:sgtin:0614141.107346.2017",
        "https://id.gs1.org/00/106141412345678908",  # an SSCC
        "urn:epc:id:sscc:0614141.1234567890",
        "urn:epc:id:grai:0614141.12345.400",  # an asset, with its serial
        "urn:epc:id:giai:0614141.12345400",
        "urn:epc:id:sgln:0614141.12345.400",
        "urn:epc:id:gid:95100000.12345.400",  # a non-GS1 EPC, kept as sent
        "URN:EPC:id:itip:4012345.012345.01.02.987",
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
    ],
)
def test_an_epc_class_naming_one_object_is_refused(named: str) -> None:
    """A probe: ``quantityList[].epcClass`` took any identifier (``_known``), a unit's SGTIN or
    an SSCC included, so "1 of {a unit} sold" went in where the unit in an epcList was refused
    (capture checks the EPC lists for Tracecode's codes). An epcClass names a class; one object
    there is refused at the field, in each quantity list."""
    counted = [{"epcClass": named, "quantity": 1}]
    sscc = "urn:epc:id:sscc:0614141.1234567890"
    for field, event in (
        ("quantityList", minimal_event(epcList=[], quantityList=counted)),
        (
            "childQuantityList",
            minimal_event(type="AggregationEvent", parentID=sscc, childQuantityList=counted),
        ),
        ("inputQuantityList", minimal_event(type="TransformationEvent", inputQuantityList=counted)),
    ):
        if field != "quantityList":
            del event["epcList"]
        if field == "inputQuantityList":
            del event["action"]
            event["outputEPCList"] = ["urn:epc:id:sgtin:0614141.107346.2018"]
        error = refused(encode(document(event)))
        assert (error.type, error.status) == (VALIDATION, 400)
        assert error.pointer == f"{E0}/{field}/0/epcClass", error.detail


def test_every_class_the_conformance_set_names_is_a_class() -> None:
    classes = [
        "urn:epc:class:lgtin:4012345.012345.998877",
        "https://id.gs1.org/01/04012345987652",
        "https://id.gs1.org/01/70614141123451/10/998877",
        "urn:epc:idpat:sgtin:4012345.098765.*",
        "urn:epc:idpat:grai:4012345.66666.*",
        "urn:epc:idpat:gdti:4012345.55555.*",
        "urn:epc:idpat:sgcn:4012345.99999.*",
        "urn:epc:idpat:itip:4012345.012345.01.02.*",
        "urn:epc:idpat:cpi:4012345.ABC.*",
        "urn:example:class:1",
    ]
    event = minimal_event(quantityList=[{"epcClass": c, "quantity": 1} for c in classes])
    (parsed,) = parse_document(encode(document(event)))
    assert len(parsed.epc_classes) == len(classes)


def test_an_epc_sent_as_urn_and_as_digital_link_counts_once() -> None:
    (event,) = parse_file("valid/36-rt-epcisDocWithAllGS1Keys.jsonld")
    assert len(event.raw["epcList"]) == 14
    assert len(event.epcs) == 13
    assert event.epcs.count("https://id.gs1.org/00/040123450000003338") == 1
    assert "https://id.gs1.org/8006/040123451234560102" in event.epc_classes


def test_four_decimal_seconds_geo_read_points_and_digital_links_on_any_host() -> None:
    first, second, third = parse_file("valid/35-rt-TimeStampRoundOff.jsonld")
    assert first.event_time == datetime(2023, 2, 2, 11, 4, 3, 141500, tzinfo=UTC)
    assert second.read_point == "geo:50.947573340894124,6.922120147375441"
    assert first.read_point == "https://id.gs1.de/414/4012345000115"  # as sent
    assert third.epcs == ["https://id.gs1.org/01/04012345999990/21/XYZ-1234"]


def test_an_events_own_context_follows_the_documents() -> None:
    events = parse_file("valid/29-oe-Namespaces_at_different_level.json")
    doc_context = json.loads(read("valid/29-oe-Namespaces_at_different_level.json"))["@context"]
    assert events[0].context == [*doc_context, {"ext2": "http://www.ext2.net/"}]
    assert events[2].context == doc_context


# -- what passes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {
            "bizStep": "cbv:BizStep-shipping",
            "disposition": "https://ref.gs1.org/cbv/Disp-in_transit",
        },
        {"bizStep": "urn:epcglobal:cbv:bizstep:shipping", "disposition": "gs1:Disp-in_transit"},
        {
            "bizStep": "shipping",
            "disposition": "in_transit",
            "ex:note": {"ex:deep": [1, [2, {"a": None}]]},
        },
    ],
)
def test_every_spelling_of_a_cbv_value_is_its_bare_word(fields: dict[str, Any]) -> None:
    (event,) = parse_document(encode(document(minimal_event(**fields))))
    assert (event.biz_step, event.disposition) == ("shipping", "in_transit")


def test_what_the_schema_allows_passes() -> None:
    events = [
        minimal_event(
            eventTime="2026-03-01t08:00:00.123456789z",  # RFC 3339 lower case, 9 decimals
            readPoint={"id": "geo:31.2304,121.4737", "ex:dock": "3"},
            bizTransactionList=[
                {"bizTransaction": "urn:x:po:1"},
                {"type": "cbv:BTT-inv", "bizTransaction": "urn:x:inv:1"},
            ],
            certificationInfo=["https://cert.example.com/1", "https://cert.example.com/2"],
            **{"https://ns.example.com/epcis/full": 1, "ex:extension": [{"ex:a": True}]},
        ),
        {  # an extension event type: only the common fields are required
            "type": "https://ns.example.com/epcis/InspectionEvent",
            "eventTime": "2026-03-01T08:00:00Z",
            "eventTimeZoneOffset": "-14:00",
            "anything": {"goes": "here"},
        },
        minimal_event(epcList=[], action="ADD", ilmd={"cbvmda:lotNumber": "L1"}),
        {
            "type": "AggregationEvent",
            "eventTime": "2026-03-01T08:00:00Z",
            "eventTimeZoneOffset": "+14:00",
            "action": "DELETE",
            "parentID": "https://example.com/00/106141411234567897",
        },
    ]
    parsed = parse_document(encode(document(*events)))
    # finer than a microsecond: rounded up to the next, as a query's time is
    assert parsed[0].event_time == datetime(2026, 3, 1, 8, 0, 0, 123457, tzinfo=UTC)
    assert parsed[0].biz_transactions == [("", "urn:x:po:1"), ("inv", "urn:x:inv:1")]
    assert parsed[1].event_type == "https://ns.example.com/epcis/InspectionEvent"
    assert parsed[1].action is None and parsed[1].epcs == []
    assert parsed[3].parent_id == "https://id.gs1.org/00/106141411234567897"


def test_a_remote_context_may_declare_any_prefix() -> None:
    event = minimal_event(**{"acme:batch": "B-1"})
    refused(encode(document(event)))  # acme is declared nowhere
    doc = document(event, **{"@context": [CONTEXT, "https://acme.example.com/context.jsonld"]})
    assert len(parse_document(encode(doc))) == 1
    doc = document(minimal_event(**{"acme:batch": "B-1", "@context": {"acme": "urn:acme:"}}))
    assert len(parse_document(encode(doc))) == 1


def test_a_context_binds_no_standard_prefix_anew_nor_a_uri_scheme() -> None:
    """A probe: a @context object bound ``cbvmda`` or ``urn`` to a namespace of its own, and
    the query page lifted the binding for every event (see ``test_epcis.py``,
    ``…rebound_standard_prefix…`` and ``…prefix_named_urn…``). A prefix of the EPCIS 2.0
    context may be declared again with the IRI it has there only (as GS1's examples do); a
    prefix named like a URI scheme, in any case, not at all; in the document's or an event's."""
    for name, iri in (("cbvmda", "urn:epcglobal:cbv:mda:"), ("gs1", "https://gs1.org/voc/")):
        doc = document(**{"@context": [CONTEXT, {name: iri}]})
        assert len(parse_document(encode(doc))) == 1
    for context in (
        {"cbvmda": "https://evil.example/mda#"},
        {"gs1": {"@id": "https://gs1.org/voc/"}},
        {"urn": "https://evil.example/"},
        {"Https": "https://evil.example/"},
        {"geo": "https://evil.example/"},
    ):
        (name,) = context
        assert refused(encode(document(**{"@context": [CONTEXT, context]}))).pointer == (
            f"/@context/1/{name}"
        )
        event = minimal_event(**{"@context": context})
        assert refused(encode(document(event))).pointer == (
            f"/epcisBody/eventList/0/@context/{name}"
        )


def test_the_served_context_keeps_a_remote_context_and_drops_the_standard() -> None:
    """What capture stores of an event's @context for the query (``served_context``): the
    declared prefixes as one object, the standard context's URLs and prefixes left out; with a
    remote context (a probe: it was dropped), every entry in order."""
    remote = "https://partner.example/ctx.jsonld"
    assert served_context(CONTEXT) is None
    assert served_context([CONTEXT, {"gs1": "https://gs1.org/voc/"}]) is None
    declared = [CONTEXT, {"ex": "urn:ex:", "gs1": "https://gs1.org/voc/"}, {"ey": "urn:ey:"}]
    assert served_context(declared) == {"ex": "urn:ex:", "ey": "urn:ey:"}
    assert served_context([CONTEXT, remote, {"ex": "urn:ex:"}]) == [remote, {"ex": "urn:ex:"}]


def test_a_byte_order_mark_and_str_input_are_accepted() -> None:
    raw = encode(document())
    assert len(parse_document(b"\xef\xbb\xbf" + raw)) == 1
    assert len(parse_document(raw.decode())) == 1
    assert len(parse_document(bytearray(raw))) == 1


def test_empty_event_list_yields_no_events() -> None:
    doc = document()
    doc["epcisBody"]["eventList"] = []
    assert parse_document(encode(doc)) == []


# -- what is refused -------------------------------------------------------------------------------

E0 = "/epcisBody/eventList/0"


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"epcList": "urn:epc:id:sgtin:0614141.107346.2017"}, f"{E0}/epcList"),
        ({"epcList": [17]}, f"{E0}/epcList/0"),
        ({"epcList": ["urn:epc:id:sgtin:0614141.107346.2017 x"]}, f"{E0}/epcList/0"),
        ({"epcList": ["https://id.gs1.org/01/1234"]}, f"{E0}/epcList/0"),
        (
            {
                "epcList": [],
                "quantityList": [
                    {"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": "10"}
                ],
            },
            f"{E0}/quantityList/0/quantity",
        ),
        (
            {
                "epcList": [],
                "quantityList": [
                    {"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": True}
                ],
            },
            f"{E0}/quantityList/0/quantity",
        ),
        (  # probe P: not exact as a double, so two such events had one hash eventID
            {
                "epcList": [],
                "quantityList": [
                    {
                        "epcClass": "urn:epc:class:lgtin:4012345.012345.998877",
                        "quantity": 9007199254740993,
                    }
                ],
            },
            f"{E0}/quantityList/0/quantity",
        ),
        (
            {
                "epcList": [],
                "quantityList": [
                    {"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "uom": "kg"}
                ],
            },
            f"{E0}/quantityList/0/uom",
        ),
        (
            {
                "epcList": [],
                "quantityList": [
                    {"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "colour": 1}
                ],
            },
            f"{E0}/quantityList/0/colour",
        ),
        ({"quantityList": {"epcClass": "x:y"}}, f"{E0}/quantityList"),
        ({"readPoint": "urn:epc:id:sgln:0614141.07346.1234"}, f"{E0}/readPoint"),
        ({"readPoint": {}}, f"{E0}/readPoint/id"),
        ({"readPoint": {"id": "urn:epc:id:sgln:0614141.07346"}}, f"{E0}/readPoint/id"),
        ({"bizLocation": {"id": "not a uri"}}, f"{E0}/bizLocation/id"),
        (
            {"bizTransactionList": {"type": "po", "bizTransaction": "urn:x:1"}},
            f"{E0}/bizTransactionList",
        ),
        ({"bizTransactionList": [{"type": "po"}]}, f"{E0}/bizTransactionList/0/bizTransaction"),
        (
            {"bizTransactionList": [{"type": "purchase_order", "bizTransaction": "urn:x:1"}]},
            f"{E0}/bizTransactionList/0/type",
        ),
        (
            {"bizTransactionList": [{"type": None, "bizTransaction": "urn:x:1"}]},
            f"{E0}/bizTransactionList/0/type",
        ),
        (
            {"bizTransactionList": [{"type": "", "bizTransaction": "urn:x:1"}]},
            f"{E0}/bizTransactionList/0/type",
        ),
        ({"sourceList": [{"type": "owner", "source": "urn:x:1"}]}, f"{E0}/sourceList/0/type"),
        ({"destinationList": [{"type": "location"}]}, f"{E0}/destinationList/0/destination"),
        ({"eventTime": 1717171717}, f"{E0}/eventTime"),
        ({"eventTime": "2005-04-03T20:33:31.116"}, f"{E0}/eventTime"),  # no zone
        ({"eventTime": "2005-02-30T20:33:31Z"}, f"{E0}/eventTime"),
        ({"eventTime": "0001-01-01T00:00:00+01:00"}, f"{E0}/eventTime"),  # before year 1 in UTC
        ({"eventTime": "2016-12-31T23:59:60Z"}, f"{E0}/eventTime"),  # no leap second in xsd
        ({"eventTimeZoneOffset": "+14:01"}, f"{E0}/eventTimeZoneOffset"),
        # a zone inside a time is held to xsd's -14:00..+14:00 as eventTimeZoneOffset is
        ({"eventTime": "2026-01-01T00:00:00+23:59"}, f"{E0}/eventTime"),
        ({"eventTime": "2026-01-01T00:00:00-14:01"}, f"{E0}/eventTime"),
        # the 2,000-character limit also holds for values that repeat (cached) from event to event
        ({"readPoint": {"id": "urn:x:" + "a" * 2000}}, f"{E0}/readPoint/id"),
        ({"bizLocation": {"id": "urn:x:" + "a" * 2000}}, f"{E0}/bizLocation/id"),
        (
            {"bizTransactionList": [{"bizTransaction": "urn:x:" + "a" * 2000}]},
            f"{E0}/bizTransactionList/0/bizTransaction",
        ),
        (
            {"sourceList": [{"type": "owning_party", "source": "urn:x:" + "a" * 2000}]},
            f"{E0}/sourceList/0/source",
        ),
        ({"eventTimeZoneOffset": "08:00"}, f"{E0}/eventTimeZoneOffset"),
        ({"eventTimeZoneOffset": None}, f"{E0}/eventTimeZoneOffset"),
        ({"action": "add"}, f"{E0}/action"),
        ({"action": ["ADD"]}, f"{E0}/action"),
        ({"bizStep": 42}, f"{E0}/bizStep"),
        ({"bizStep": None}, f"{E0}/bizStep"),
        ({"disposition": "shipped"}, f"{E0}/disposition"),
        ({"type": None}, f"{E0}/type"),
        ({"type": "objectevent"}, f"{E0}/type"),
        ({"eventID": "1234"}, f"{E0}/eventID"),
        ({"recordTime": "yesterday"}, f"{E0}/recordTime"),
        ({"color": "red"}, f"{E0}/color"),
        (
            {"childEPCs": ["urn:epc:id:sgtin:0614141.107346.1"]},
            f"{E0}/childEPCs",
        ),  # not an ObjectEvent field
        ({"nope:x": 1}, f"{E0}/nope:x"),
        ({"ilmd": {"cbvmda:lotNumber": "L1"}}, f"{E0}/ilmd"),  # ILMD needs action ADD
        ({"action": "ADD", "ilmd": ["cbvmda:lotNumber"]}, f"{E0}/ilmd"),
        (
            {"errorDeclaration": {"reason": "incorrect_data"}},
            f"{E0}/errorDeclaration/declarationTime",
        ),
        (
            {"errorDeclaration": {"declarationTime": "2026-03-01T08:00:00Z", "reason": "oops"}},
            f"{E0}/errorDeclaration/reason",
        ),
        (
            {
                "errorDeclaration": {
                    "declarationTime": "2026-03-01T08:00:00Z",
                    "correctiveEventIDs": "urn:x",
                }
            },
            f"{E0}/errorDeclaration/correctiveEventIDs",
        ),
        ({"certificationInfo": 5}, f"{E0}/certificationInfo"),
        ({"persistentDisposition": {"set": ["bogus"]}}, f"{E0}/persistentDisposition/set/0"),
        (
            {"sensorElementList": [{"sensorReport": [{"type": "Temperature", "value": "12"}]}]},
            f"{E0}/sensorElementList/0/sensorReport/0/value",
        ),
        (
            {"sensorElementList": [{"sensorReport": [{"booleanValue": "true"}]}]},
            f"{E0}/sensorElementList/0/sensorReport/0/booleanValue",
        ),
        (
            {"sensorElementList": [{"sensorReport": [{"hexBinaryValue": "xyz"}]}]},
            f"{E0}/sensorElementList/0/sensorReport/0/hexBinaryValue",
        ),
        (
            {"sensorElementList": [{"sensorReport": [{"type": "Hotness"}]}]},
            f"{E0}/sensorElementList/0/sensorReport/0/type",
        ),
        (
            {"sensorElementList": [{"sensorMetadata": {"time": "noon"}, "sensorReport": []}]},
            f"{E0}/sensorElementList/0/sensorMetadata/time",
        ),
        ({"sensorElementList": [{"sensorMetadata": {}}]}, f"{E0}/sensorElementList/0/sensorReport"),
        ({"@context": 7}, f"{E0}/@context"),
        ({"@context": [{"ex2": "urn:ex2:"}, 7]}, f"{E0}/@context/1"),
    ],
)
def test_wrong_fields_are_refused_at_their_pointer(fields: dict[str, Any], pointer: str) -> None:
    error = refused(encode(document(minimal_event(**fields))))
    assert (error.type, error.status) == (VALIDATION, 400)
    assert error.pointer == pointer, error.detail
    assert error.detail.startswith(f"{pointer}: ")


@pytest.mark.parametrize(
    ("event", "pointer"),
    [
        ({"type": "ObjectEvent", "action": "ADD"}, f"{E0}"),  # no epcList / quantityList
        (
            {
                "type": "AggregationEvent",
                "action": "ADD",
                "parentID": "urn:epc:id:sscc:0614141.1234567890",
            },
            f"{E0}/childEPCs",
        ),
        ({"type": "AssociationEvent", "action": "ADD", "childEPCs": ["urn:x:1"]}, f"{E0}/parentID"),
        ({"type": "TransactionEvent", "action": "ADD", "epcList": []}, f"{E0}/bizTransactionList"),
        (
            {
                "type": "TransactionEvent",
                "action": "ADD",
                "bizTransactionList": [{"bizTransaction": "urn:x:1"}],
            },
            f"{E0}/epcList",
        ),
        ({"type": "TransformationEvent", "inputEPCList": ["urn:x:1"]}, f"{E0}"),
        (
            {
                "type": "TransformationEvent",
                "action": "ADD",
                "inputEPCList": ["urn:x:1"],
                "outputEPCList": ["urn:x:2"],
            },
            f"{E0}/action",
        ),
        ({"type": "AggregationEvent", "childEPCs": ["urn:x:1"]}, f"{E0}/action"),
    ],
)
def test_each_event_type_needs_its_fields(event: dict[str, Any], pointer: str) -> None:
    event = {"eventTime": "2026-03-01T08:00:00Z", "eventTimeZoneOffset": "+00:00", **event}
    assert refused(encode(document(event))).pointer == pointer


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (lambda d: d.pop("@context"), "/@context"),
        (lambda d: d.update({"@context": 5}), "/@context"),
        (lambda d: d.update({"@context": [CONTEXT, "not a uri"]}), "/@context/1"),
        (lambda d: d.pop("type"), "/type"),
        (lambda d: d.update({"type": "EPCISQueryDocument"}), "/type"),
        (lambda d: d.pop("schemaVersion"), "/schemaVersion"),
        (lambda d: d.update({"schemaVersion": 2.0}), "/schemaVersion"),
        (lambda d: d.pop("creationDate"), "/creationDate"),
        (lambda d: d.update({"creationDate": "2026-03-01"}), "/creationDate"),
        (lambda d: d.update({"epcisHeader": []}), "/epcisHeader"),
        (lambda d: d.pop("epcisBody"), "/epcisBody"),
        (lambda d: d.update({"epcisBody": []}), "/epcisBody"),
        (lambda d: d.update({"epcisBody": {}}), "/epcisBody/eventList"),
        (lambda d: d.update({"epcisBody": {"eventList": {}}}), "/epcisBody/eventList"),
        (
            lambda d: d.update({"epcisBody": {"eventList": ["ObjectEvent"]}}),
            "/epcisBody/eventList/0",
        ),
        (lambda d: d.update({"epcisBody": {"eventList": [{}]}}), "/epcisBody/eventList/0/type"),
    ],
)
def test_a_wrong_envelope_is_refused(change: Any, pointer: str) -> None:
    doc = document()
    change(doc)
    error = refused(encode(doc))
    assert (error.type, error.status, error.pointer) == (VALIDATION, 400, pointer), error.detail


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b'{"type": "EPCISDocument",}',
        b"{} {}",
        b"\xff\xfe{}",
        b'{"a": "\xc3"}',
        b'{"a": "x\x00y"}',  # a raw NUL: JSON forbids control characters in strings
        b'{"a": "x\x1fy"}',
        b'{"a": "\\ud800"}',  # a lone surrogate
        b'{"a": NaN}',
        b'{"a": 1e999}',
        b"null",
        b"[]",
        b'"EPCISDocument"',
        b"42",
    ],
)
def test_what_is_not_a_json_object_is_refused(raw: bytes) -> None:
    error = refused(raw)
    assert (error.type, error.status, error.pointer) == (VALIDATION, 400, None)


def test_a_nul_escape_is_refused_but_an_escaped_backslash_before_u0000_is_not() -> None:
    event = minimal_event(**{"ex:note": "before\u0000after"})
    raw = encode(document(event))
    assert b"\\u0000" in raw
    assert "control character (U+0000)" in refused(raw).detail
    raw = encode(document(minimal_event(**{"ex:note": "a \\u0000 in text"})))
    assert parse_document(raw)[0].raw["ex:note"] == "a \\u0000 in text"


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_is_limited_to_64_levels_everywhere() -> None:
    # document 1, epcisBody 2, eventList 3, the event 4: an extension value may nest 60 more
    assert len(parse_document(encode(document(minimal_event(**{"ex:x": nested(60)}))))) == 1
    error = refused(encode(document(minimal_event(**{"ex:x": nested(61)}))))
    assert error.pointer == f"{E0}/ex:x" and f"{MAX_DEPTH} levels" in error.detail
    assert (
        refused(encode(document(minimal_event(action="ADD", ilmd={"ex:x": nested(61)})))).pointer
        == f"{E0}/ilmd/ex:x"
    )
    assert (
        refused(encode(document(**{"@context": [CONTEXT, {"ex": nested(62)}]}))).pointer
        == "/@context/1"
    )
    assert len(parse_document(encode(document(epcisHeader={"x": nested(62)})))) == 1
    assert refused(encode(document(epcisHeader={"x": nested(63)}))).pointer == "/epcisHeader"
    sensor = {"sensorReport": [{"type": "Temperature", "ex:x": nested(57)}]}
    assert refused(encode(document(minimal_event(sensorElementList=[sensor])))).pointer.endswith(
        "/sensorReport/0/ex:x"
    )


@pytest.mark.parametrize("levels", [1_000, 100_000, 3_000_000])
def test_runaway_nesting_is_refused_without_a_recursion_error(levels: int) -> None:
    raw = b'{"@context": ' + b"[" * levels + b"]" * levels + b"}"
    error = refused(raw)
    assert error.status == 400 and f"{MAX_DEPTH} levels" in error.detail


def test_too_many_events_is_413_before_any_event_is_read() -> None:
    doc = document(*[minimal_event() for _ in range(4)])
    assert len(parse_document(encode(doc), max_events=4)) == 4
    error = refused(encode(doc), max_events=3)
    assert (error.type, error.status) == (CAPTURE_LIMIT, 413)
    assert error.type == "epcisException:CaptureLimitExceededException"
    assert error.pointer == "/epcisBody/eventList"
    raw = encode(document(*[{"junk": True}] * 10_001))  # refused for its size, not its junk
    assert refused(raw).status == 413


# -- fuzzing: nothing but events or DocumentError --------------------------------------------------

SEEDS = [json.loads(read(name)) for name in VALID]
INTERESTING = [
    "urn:epc:id:sgtin:0614141.107346.2017",
    "urn:epc:id:sgtin:0614141.107346",
    "urn:epc:id:sscc:0614141.1234567890",
    "urn:epc:class:lgtin:4012345.012345.998877",
    "urn:epc:idpat:sgtin:4012345.066666.*",
    "urn:epc:id:sgln:0614141.07346.1234",
    "https://id.gs1.org/01/09521234543213/21/ABC",
    "https://example.com/00/106141411234567897?x=1",
    "https://id.gs1.org/01/1",
    "geo:1,2",
    "ex:thing",
    "cbv:BizStep-shipping",
    "shipping",
    "in_transit",
    "ADD",
    "ObjectEvent",
    "2020-02-29T23:59:59.9999999-14:00",
    "9999-12-31T23:59:59-01:00",
    "+14:00",
    "@context",
    ":",
    "",
    "\u2028",
    "%",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(INTERESTING),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([*INTERESTING, "id", "type", "epcList", "ex:k"]) | st.text(max_size=6),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(doc)))
        if not path:
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "delete", "rename"]))
        if how == "delete" or (how == "rename" and isinstance(parent, list)):
            del parent[path[-1]]
        elif how == "rename":
            parent[
                draw(
                    json_values.filter(lambda v: isinstance(v, str)) | st.sampled_from(INTERESTING)
                )
            ] = parent.pop(path[-1])
        else:
            parent[path[-1]] = draw(json_values)
    raw = json.dumps(doc).encode()
    if draw(st.booleans()):  # and sometimes a byte or two
        for _ in range(draw(st.integers(min_value=1, max_value=2))):
            at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
            raw = raw[:at] + bytes([draw(st.integers(min_value=0, max_value=255))]) + raw[at + 1 :]
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_yield_events_or_document_error(raw: bytes) -> None:
    try:
        events = parse_document(raw)
    except DocumentError as error:
        assert error.status in (400, 413)
        assert error.type in (VALIDATION, CAPTURE_LIMIT)
        assert error.detail
    else:
        for event in events:
            assert isinstance(event, CapturedEvent)
            assert event.event_time.tzinfo is UTC
            msgspec.json.encode(event.raw)  # storable as it came


def test_one_event_twice_with_its_uuid_in_two_cases_is_a_repeat() -> None:
    """Review R3: a urn:uuid: eventID is one in any case (probe Q), so the same event sent
    twice in one document, the second time in capitals, is a repeat, not "other content"."""
    uuid = "urn:uuid:6f9619ff-8b86-d011-b42d-00cf4fc964ff"
    events = [minimal_event(eventID=uuid), minimal_event(eventID=uuid.upper())]
    parsed = parse_document(encode(document(*events)))
    assert [e.event_id for e in parsed] == [uuid, uuid]
    refused(encode(document(events[0], minimal_event(eventID=uuid.upper(), action="ADD"))))


def test_two_events_without_eventids_of_one_hash_and_other_content_are_refused() -> None:
    """A probe: two events without eventIDs whose CBV 2.0 hashes meet (milliseconds kept,
    ``true`` read as ``"True"``) but whose content differs were one eventID, the second dropped
    at capture without a word. Refused at the later one's eventID; the same event twice is a
    repeat, and each hash is kept on its event for capture."""
    pairs = [
        (
            minimal_event(eventTime="2026-03-01T08:00:00.0001+08:00"),
            minimal_event(eventTime="2026-03-01T08:00:00.0004+08:00"),
        ),
        (minimal_event(**{"ex:flag": True}), minimal_event(**{"ex:flag": "True"})),
    ]
    for first, second in pairs:
        error = refused(encode(document(first, minimal_event(action="ADD"), second)))
        assert error.pointer == "/epcisBody/eventList/2/eventID", error.detail
    repeated = parse_document(encode(document(pairs[1][0], pairs[1][0], minimal_event())))
    assert repeated[0].hashed is not None and repeated[0].hashed == repeated[1].hashed
    assert repeated[2].hashed is not None and repeated[2].hashed != repeated[0].hashed
    (alone,) = parse_document(encode(document(pairs[0][0])))
    assert alone.hashed is None  # one event: nothing to compare, capture hashes it
