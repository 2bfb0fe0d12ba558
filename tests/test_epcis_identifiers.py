"""EPCIS identifiers: EPC URNs and Digital Link URIs meet in one canonical Digital Link URI."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app._core import gs1_check_digit, sgtin_urn, sscc_urn
from app.codes.scheme import CSET82_1_20
from app.epcis import identifiers
from app.epcis.identifiers import IdentifierError, canonical, gtin_serial, sscc
from tests.helpers import epcis_conformance

CONFORMANCE = epcis_conformance()

# (EPC URN or Digital Link, canonical Digital Link)
PAIRS = [
    # TDS: the item reference's first digit is the indicator, so 0614141.107346 is the GTIN
    # 1 0614141 07346 + check digit 4 (not 00614141073467, which would be 0614141.007346)
    ("urn:epc:id:sgtin:0614141.107346.2017", "https://id.gs1.org/01/10614141073464/21/2017"),
    ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908"),
    # every GS1 key scheme (TDS 2.0 examples; check digits computed)
    (
        "urn:epc:id:sgtin:952001.1012345.22222223333",
        "https://id.gs1.org/01/19520010123455/21/22222223333",
    ),
    ("urn:epc:id:sgln:0614141.12345.400", "https://id.gs1.org/414/0614141123452/254/400"),
    ("urn:epc:id:sgln:0614141.12345.0", "https://id.gs1.org/414/0614141123452"),
    ("urn:epc:id:grai:0614141.12345.400", "https://id.gs1.org/8003/00614141123452400"),
    ("urn:epc:id:giai:0614141.12345400", "https://id.gs1.org/8004/061414112345400"),
    ("urn:epc:id:gsrn:0614141.1234567890", "https://id.gs1.org/8018/061414112345678902"),
    ("urn:epc:id:gsrnp:0614141.1234567890", "https://id.gs1.org/8017/061414112345678902"),
    ("urn:epc:id:gdti:0614141.12345.400", "https://id.gs1.org/253/0614141123452400"),
    ("urn:epc:id:sgcn:4012345.67890.04711", "https://id.gs1.org/255/401234567890104711"),
    (
        "urn:epc:id:cpi:0614141.123ABC.123456789",
        "https://id.gs1.org/8010/0614141123ABC/8011/123456789",
    ),
    (
        "urn:epc:id:cpi:0614141.5PQ7%2FZ43.12345",
        "https://id.gs1.org/8010/06141415PQ7%2FZ43/8011/12345",
    ),
    ("urn:epc:id:ginc:0614141.xyz47%2F11", "https://id.gs1.org/401/0614141xyz47%2F11"),
    ("urn:epc:id:gsin:0614141.123456789", "https://id.gs1.org/402/06141411234567890"),
    (
        "urn:epc:id:itip:4012345.012345.01.02.987",
        "https://id.gs1.org/8006/040123451234560102/21/987",
    ),
    (
        "urn:epc:id:upui:1234567.089456.51qIgY)%3C%26Jp3*j7'SDB",
        "https://id.gs1.org/01/01234567894560/235/51qIgY%29%3C%26Jp3%2Aj7'SDB",
    ),
    ("urn:epc:id:pgln:1234567.89012", "https://id.gs1.org/417/1234567890128"),
    ("urn:epc:class:lgtin:4012345.012345.998877", "https://id.gs1.org/01/04012345123456/10/998877"),
    ("urn:epc:idpat:sgtin:4012345.012345.*", "https://id.gs1.org/01/04012345123456"),
    ("urn:epc:idpat:grai:4012345.66666.*", "https://id.gs1.org/8003/04012345666663"),
    ("urn:epc:idpat:itip:4012345.012345.01.02.*", "https://id.gs1.org/8006/040123451234560102"),
    ("urn:epc:idpat:cpi:4012345.ABC.*", "https://id.gs1.org/8010/4012345ABC"),
    # serial characters: URN escapes and the DL's reserved characters, one encoding
    (
        "urn:epc:id:sgtin:0614141.107346.a%2Fb!(c)",
        "https://id.gs1.org/01/10614141073464/21/a%2Fb%21%28c%29",
    ),
    ("urn:epc:id:sgtin:0614141.107346.x%2fy", "https://id.gs1.org/01/10614141073464/21/x%2Fy"),
    (
        "urn:epc:id:sgtin:0614141.107346.1.2;=_'-",
        "https://id.gs1.org/01/10614141073464/21/1.2;=_'-",
    ),
    # Digital Link on other hosts, with prefixes, short names, query strings, extra levels
    (
        "https://example.com/01/00614141073467/21/2017",
        "https://id.gs1.org/01/00614141073467/21/2017",
    ),
    (
        "http://brand.example/a/b/01/00614141073467/21/2017/?17=260101#x",
        "https://id.gs1.org/01/00614141073467/21/2017",
    ),
    (
        "https://example.com/gtin/614141073467/ser/2017",
        "https://id.gs1.org/01/00614141073467/21/2017",
    ),
    (
        "https://example.com/01/00614141073467/22/2A/10/LOT-1/21/2017",
        "https://id.gs1.org/01/00614141073467/21/2017",
    ),
    (
        "https://example.com/01/00614141073467/10/LOT-1",
        "https://id.gs1.org/01/00614141073467/10/LOT-1",
    ),
    ("https://example.com/01/95012345678903", "https://id.gs1.org/01/95012345678903"),
    ("https://example.com/01/12345670", "https://id.gs1.org/01/00000012345670"),
    (
        "https://example.com/01/00614141073467/21/a%2fb%21",
        "https://id.gs1.org/01/00614141073467/21/a%2Fb%21",
    ),
    (
        "https://example.com/01/00614141073467/21/a!b",
        "https://id.gs1.org/01/00614141073467/21/a%21b",
    ),
    ("https://id.gs1.de/00/040123451111111110", "https://id.gs1.org/00/040123451111111110"),
    ("https://example.com/sscc/106141412345678908", "https://id.gs1.org/00/106141412345678908"),
    (
        "https://id.example.com/414/4012345000054/254/7",
        "https://id.gs1.org/414/4012345000054/254/7",
    ),
    ("https://example.org/253/4012345000054987", "https://id.gs1.org/253/4012345000054987"),
    ("https://example.org/8004/401234599999", "https://id.gs1.org/8004/401234599999"),
    (
        "https://example.org/8010/0614141123ABC/8011/123456789",
        "https://id.gs1.org/8010/0614141123ABC/8011/123456789",
    ),
    (
        "https://example.org/8006/040123451234560102/10/L1/21/987",
        "https://id.gs1.org/8006/040123451234560102/21/987",
    ),
    # canonical forms are fixed points
    (
        "https://id.gs1.org/01/00614141073467/21/2017",
        "https://id.gs1.org/01/00614141073467/21/2017",
    ),
    ("https://id.gs1.org/417/1234567890128", "https://id.gs1.org/417/1234567890128"),
    # probe Q: a URN's "urn:epc:" and an HTTP URI's scheme and host are case-insensitive
    (
        "URN:EPC:id:sgtin:0614141.107346.2017",
        "https://id.gs1.org/01/10614141073464/21/2017",
    ),
    (
        "HTTPS://ID.GS1.ORG/01/00614141073467/21/2017",
        "https://id.gs1.org/01/00614141073467/21/2017",
    ),
    ("Http://Example.COM/00/106141412345678908", "https://id.gs1.org/00/106141412345678908"),
]


@pytest.mark.parametrize(("uri", "expected"), PAIRS, ids=[p[0] for p in PAIRS])
def test_urn_and_digital_link_meet_in_the_canonical_digital_link(uri: str, expected: str) -> None:
    assert canonical(uri) == expected


UNCHANGED = [
    "urn:epc:id:gid:95100000.12345.400",
    "urn:epc:id:usdod:CAGEY.5678",
    "urn:epc:idpat:sgtin:0614141.*.*",
    "urn:epc:idpat:sscc:0614141.*",
    "urn:epcglobal:cbv:bt:0614141073467:1152",
    "urn:uuid:374d95fc-9457-4a51-bd6a-0bba133845a8",
    "https://ref.gs1.org/cbv/BizStep-shipping",
    "https://example.com/locations/warehouse-7",
    "https://example.com/01/",
    "https://example.com/01/abc",
    "http://www.w3.org/2000/01/rdf-schema#",
    "ftp://example.com/01/00614141073467",
    "example:someValue",
]


@pytest.mark.parametrize("uri", UNCHANGED)
def test_other_uris_are_returned_unchanged(uri: str) -> None:
    assert canonical(uri) == uri


MALFORMED = [
    "urn:epc:id:sgtin:0614141.107346",  # no serial
    "urn:epc:id:sgtin:0614141.10734.2017",  # 12 digits, not 13
    "urn:epc:id:sgtin:061414.10734.2017",  # 11 digits
    "urn:epc:id:sgtin:06141.1073461.2017",  # a 5-digit company prefix
    "urn:epc:id:sgtin:0614141.107346.",  # empty serial
    "urn:epc:id:sgtin:0614141.107346.123456789012345678901",  # 21-character serial
    "urn:epc:id:sgtin:0614141.107346.20 17",  # space
    "urn:epc:id:sgtin:0614141.107346.a/b",  # "/" must be escaped in a URN
    "urn:epc:id:sgtin:0614141.107346.a%7Eb",  # "~" is not GS1 CSET 82
    "urn:epc:id:sgtin:0614141.107346.a%2",  # truncated escape
    "urn:epc:id:sgtin:0614141.1O7346.2017",  # letter O in the item reference
    "urn:epc:id:sgtin:０６１４１４１.107346.2017",  # full-width digits
    "urn:epc:id:sscc:0614141.123456789",  # 16 digits, not 17
    "urn:epc:id:sscc:0614141.1234567890.1",
    "urn:epc:id:sgln:0614141.12345",  # no extension
    "urn:epc:id:grai:0614141.12345.",  # GRAI EPCs carry a serial
    "urn:epc:id:giai:0614141.",
    "urn:epc:id:giai:0614141.1234567890123456789012345",  # 32 characters
    "urn:epc:id:gsrn:0614141.123456789",
    "urn:epc:id:sgcn:4012345.67890.12a",
    "urn:epc:id:cpi:0614141.abc.1",  # lower case is not CSET 39
    "urn:epc:id:itip:4012345.012345.1.02.987",
    "urn:epc:id:pgln:1234567.8901",
    "urn:epc:id:unknown:1234567.8901",
    "urn:epc:class:lgtin:4012345.012345",
    "urn:epc:class:sgtin:4012345.012345.1",
    "urn:epc:idpat:sgtin:4012345.01234.*",  # convertible shape, wrong digit count
    "urn:epc:sgtin:0614141.107346.2017",
    "urn:epc:id:SGTIN:0614141.107346.2017",
    "URN:EPC:ID:SGTIN:0614141.107346.2017",  # once kept as a foreign URI (probe Q)
    "https://id.gs1.org/01/00614141073468/21/2017",  # bad check digit
    "https://example.com/01/0061414107346/21/2017",  # 13 digits with a bad check digit
    "https://example.com/01/006141410734671/21/2017",  # 15 digits
    "https://id.gs1.org/00/106141412345678909",
    "https://id.gs1.org/01/00614141073467/21",  # a qualifier without value
    "https://id.gs1.org/01/00614141073467/99/x",  # unknown qualifier
    "https://id.gs1.org/01/00614141073467/21/1/10/L",  # qualifiers out of order
    "https://id.gs1.org/01/00614141073467/21/1/21/2",  # repeated qualifier
    "https://id.gs1.org/01/00614141073467/21/a~b",  # "~" is not CSET 82
    "https://id.gs1.org/01/00614141073467/21/123456789012345678901",
    "https://id.gs1.org/00/106141412345678908/21/1",  # the SSCC takes no qualifier
    "https://id.gs1.org/414/4012345000053",
    "https://id.gs1.org/8003/140123450007718765",  # a GRAI starts with 0
]


@pytest.mark.parametrize("uri", MALFORMED)
def test_malformed_urns_and_invalid_digital_links_are_refused(uri: str) -> None:
    with pytest.raises(IdentifierError):
        canonical(uri)


def test_identifier_error_is_a_value_error_and_names_the_input() -> None:
    with pytest.raises(ValueError, match=r"urn:epc:id:sgtin:0614141\.107346"):
        canonical("urn:epc:id:sgtin:0614141.107346")


def test_check_digits_can_be_left_unverified_as_the_hash_reference_does() -> None:
    # openepcis' Combination_of_different_event.json (a valid conformance document) has it
    grai = "https://id.example.com/8003/030013450007718765"
    with pytest.raises(IdentifierError):
        canonical(grai)
    assert canonical(grai, check_digits=False) == "https://id.gs1.org/8003/030013450007718765"
    sgtin = "https://example.com/01/00614141073468/21/7"
    assert canonical(sgtin, check_digits=False) == "https://id.gs1.org/01/00614141073468/21/7"
    with pytest.raises(IdentifierError):  # digits and path are still checked
        canonical("https://example.com/01/0061414107346x/21/7", check_digits=False)


KEY_PATH = re.compile(
    r"^https?://[^/]+/(01|00|253|255|401|414|417|8003|8004|8006|8010|8018)/[0-9]{4}"
)


def _conformance_identifiers() -> list[str]:
    found: set[str] = set()
    for path in sorted((CONFORMANCE / "valid").iterdir()):
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'"((?:urn:epc:|https?://)[^"]*)"', text))
    return sorted(found)


def test_every_identifier_of_the_valid_conformance_documents_canonicalises() -> None:
    failed = []
    for uri in _conformance_identifiers():
        try:
            result = canonical(uri, check_digits=False)
        except IdentifierError as error:
            failed.append(str(error))
            continue
        if uri.startswith("urn:epc:id:") or KEY_PATH.search(uri):
            assert result.startswith("https://id.gs1.org/"), uri
            assert canonical(result, check_digits=False) == result
    assert not failed


def test_the_malformed_sgtin_of_the_invalid_conformance_document_is_refused() -> None:
    document = json.loads((CONFORMANCE / "invalid" / "08-mut-malformed-sgtin-urn.json").read_text())
    epcs = [epc for event in document["epcisBody"]["eventList"] for epc in event.get("epcList", [])]
    assert "urn:epc:id:sgtin:0614141.107346" in epcs
    with pytest.raises(IdentifierError):
        canonical("urn:epc:id:sgtin:0614141.107346")


@given(
    company_len=st.integers(6, 12),
    digits=st.text(alphabet="0123456789", min_size=13, max_size=13),
    serial=st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=1, max_size=20),
)
def test_sgtin_urn_of_the_rust_core_round_trips(company_len: int, digits: str, serial: str) -> None:
    assume(digits.strip("0"))  # all zeros is no GTIN
    gtin = digits + str(gs1_check_digit(digits))
    uri = canonical(sgtin_urn(gtin, serial, company_len))
    assert uri == f"https://id.gs1.org/01/{gtin}/21/{serial}"
    assert canonical(f"https://scan.example.cn/01/{gtin}/21/{serial}") == uri
    assert gtin_serial(uri) == (gtin, serial)
    assert sscc(uri) is None


@given(
    company_len=st.integers(6, 12),
    digits=st.text(alphabet="0123456789", min_size=17, max_size=17),
)
def test_sscc_urn_of_the_rust_core_round_trips(company_len: int, digits: str) -> None:
    code = digits + str(gs1_check_digit(digits))
    uri = canonical(sscc_urn(code, company_len))
    assert uri == f"https://id.gs1.org/00/{code}"
    assert canonical(f"http://logistics.example/00/{code}") == uri
    assert sscc(uri) == code
    assert gtin_serial(uri) is None


def test_gtin_serial_and_sscc_read_only_canonical_forms() -> None:
    assert gtin_serial("https://id.gs1.org/01/00614141073467/21/a%2Fb") == ("00614141073467", "a/b")
    assert gtin_serial("https://id.gs1.org/01/00614141073467/10/L1") is None
    assert gtin_serial("https://id.gs1.org/01/00614141073467") is None
    assert gtin_serial("urn:epc:id:sgtin:0614141.107346.2017") is None
    assert gtin_serial("https://example.com/01/00614141073467/21/2017") is None
    assert sscc("https://id.gs1.org/00/106141412345678908") == "106141412345678908"
    assert sscc("https://id.gs1.org/00/10614141234567890") is None
    assert sscc("urn:epc:id:sscc:0614141.1234567890") is None


def test_epcis_and_the_lot_pattern_take_the_same_cset82() -> None:
    """GS1 CSET 82 is defined once (app.codes.scheme): EPCIS's character set and the 1–20
    pattern of a lot or serial (B2B, the packing line) take exactly the same characters — the
    82 of the set."""
    pattern = re.compile(CSET82_1_20)
    taken = {chr(c) for c in range(0x3000) if pattern.match(chr(c))}
    assert taken == identifiers.CSET82
    assert len(taken) == 82 and {"/", "%", "?", "_"} <= taken and not {"#", " ", "~"} & taken
    assert pattern.match("A" * 20) and not pattern.match("A" * 21)


# (EPC Tag URI, the pure identity URN it carries): TDS 2.x §12, the filter value dropped
TAGS = [
    ("urn:epc:tag:sgtin-96:3.0614141.812345.6789", "urn:epc:id:sgtin:0614141.812345.6789"),
    ("urn:epc:tag:sgtin-198:0.6901234.000002.A%2FB9", "urn:epc:id:sgtin:6901234.000002.A%2FB9"),
    ("urn:epc:tag:sscc-96:0.0614141.1234567890", "urn:epc:id:sscc:0614141.1234567890"),
    ("urn:epc:tag:sgln-96:3.0614141.12345.400", "urn:epc:id:sgln:0614141.12345.400"),
    ("urn:epc:tag:sgln-195:3.0614141.12345.0", "urn:epc:id:sgln:0614141.12345.0"),
    ("urn:epc:tag:grai-170:3.0614141.12345.400", "urn:epc:id:grai:0614141.12345.400"),
    ("urn:epc:tag:giai-96:3.0614141.12345400", "urn:epc:id:giai:0614141.12345400"),
    ("urn:epc:tag:gsrn-96:3.0614141.1234567890", "urn:epc:id:gsrn:0614141.1234567890"),
    ("urn:epc:tag:gdti-174:3.0614141.12345.400", "urn:epc:id:gdti:0614141.12345.400"),
    ("urn:epc:tag:sgcn-96:3.4012345.67890.04711", "urn:epc:id:sgcn:4012345.67890.04711"),
    ("urn:epc:tag:cpi-var:3.0614141.123ABC.123456789", "urn:epc:id:cpi:0614141.123ABC.123456789"),
    (
        "urn:epc:tag:itip-212:3.4012345.012345.01.02.987",
        "urn:epc:id:itip:4012345.012345.01.02.987",
    ),
    # a tag pattern naming one tag (no * or range past its filter)
    ("urn:epc:pat:sgtin-96:*.0614141.812345.6789", "urn:epc:id:sgtin:0614141.812345.6789"),
    ("urn:epc:pat:sscc-96:[0-3].0614141.1234567890", "urn:epc:id:sscc:0614141.1234567890"),
]


@pytest.mark.parametrize(("tag", "pure"), TAGS, ids=[t[0] for t in TAGS])
def test_an_epc_tag_uri_is_the_epc_it_carries(tag: str, pure: str) -> None:
    """A probe: a brand unit named by its EPC tag URI (``urn:epc:tag:sgtin-198:…``) was kept
    as a foreign identifier, so a sale of it skipped the rules. The tag URI carries the pure
    identity after its filter value: one canonical form, which the event hash leaves alone
    (the CBV reference keeps tag URIs as sent)."""
    assert canonical(tag) == canonical(pure)
    assert canonical(tag, check_digits=False, fold=False, tags=False) == tag


@pytest.mark.parametrize(
    "uri",
    [
        "urn:epc:raw:96.x30700048440663802E185523",  # the tag's bits: refused outright
        "urn:epc:raw:64.20.x3039606203C7F8A6",
        "urn:epc:tag:sgtin-96:8.0614141.812345.6789",  # a filter value is 0-7
        "urn:epc:tag:sgtin-96:0614141.812345.6789",  # no filter value
        "urn:epc:tag:sgtin-96:3",
        "urn:epc:tag:sgtin-96:3.0614141.81234.6789",  # 12 digits, not 13
        "urn:epc:tag:sscc-96:0.0614141.123456789",
        "urn:epc:tag:sgtin+:3.0614141.812345.6789",  # a scheme not read
        "urn:epc:tag:SGTIN-96:3.0614141.812345.6789",
        "urn:epc:pat:sgtin-96:9.0614141.812345.6789",
    ],
)
def test_raw_unknown_and_malformed_tag_uris_are_refused(uri: str) -> None:
    with pytest.raises(IdentifierError):
        canonical(uri)
    assert canonical(uri, check_digits=False, fold=False, tags=False) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "urn:epc:tag:gid-96:95100000.12345.400",  # non-GS1, as its pure identity
        "urn:epc:tag:usdod-96:3.CAGEY.5678",
        "urn:epc:pat:sgtin-96:3.0614141.812345.*",  # many tags
        "urn:epc:pat:sgtin-96:3.0614141.*.*",
    ],
)
def test_non_gs1_tag_uris_and_patterns_of_many_tags_are_kept(uri: str) -> None:
    assert canonical(uri) == uri
