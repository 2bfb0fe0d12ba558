"""GS1 helpers of the Rust core: check digits, GTIN, SSCC, Digital Link, EPC URNs."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app._core import (
    Gs1Error,
    Scheme,
    build_sscc,
    digital_link,
    gs1_check_digit,
    is_valid_gtin,
    is_valid_sscc,
    normalize_gtin,
    parse_digital_link,
    sgtin_urn,
    sscc_link,
    sscc_urn,
)


def py_check_digit(data: str) -> int:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(data)))
    return (10 - total % 10) % 10


def test_spec_known_answers():
    assert gs1_check_digit("0952123454321") == 3
    assert gs1_check_digit("10614141123456789") == 7
    assert normalize_gtin("09521234543213") == "09521234543213"
    assert is_valid_sscc("106141411234567897")


@given(st.text(alphabet="0123456789", min_size=1, max_size=17))
def test_check_digit_matches_the_definition(data):
    assert gs1_check_digit(data) == py_check_digit(data)


@pytest.mark.parametrize("bad", ["", "12a4", "1" * 18, "１２３", " 123", "-1"])
def test_check_digit_rejects_non_digits(bad):
    with pytest.raises(Gs1Error):
        gs1_check_digit(bad)


@pytest.mark.parametrize(
    ("gtin", "gtin14"),
    [
        ("95012346", "00000095012346"),  # GTIN-8
        ("614141007349", "00614141007349"),  # GTIN-12 (UPC-A)
        ("9521234543213", "09521234543213"),  # GTIN-13
        ("0614141007349", "00614141007349"),  # GTIN-13 of a UPC
        ("10614141007346", "10614141007346"),  # GTIN-14
    ],
)
def test_gtin_normalisation(gtin, gtin14):
    assert normalize_gtin(gtin) == gtin14
    assert is_valid_gtin(gtin)


@pytest.mark.parametrize(
    "bad",
    [
        "95012345",
        "614141007340",
        "9521234543214",
        "10614141007347",
        "1234567",
        "123456789",
        "123456789012345",
        "",
        "0952123454321X",
        "09521234543213 ",
        "00000000",  # all zeros: a right check digit, no GTIN (a probe)
        "0000000000000",
        "00000000000000",
    ],
)
def test_gtin_bad_check_digit_or_length(bad):
    assert not is_valid_gtin(bad)
    with pytest.raises(Gs1Error):
        normalize_gtin(bad)


@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_any_gtin_with_its_check_digit_is_valid_and_one_off_is_not(body):
    assume(body.strip("0"))  # all zeros is no GTIN (test_gtin_bad_check_digit_or_length)
    gtin = body + str(py_check_digit(body))
    assert normalize_gtin(gtin) == gtin
    wrong = body + str((py_check_digit(body) + 1) % 10)
    assert not is_valid_gtin(wrong)


def test_sscc_build_and_validate():
    assert build_sscc(1, "0614141", 123456789) == "106141411234567897"
    assert build_sscc(0, "0614141", 1) == "006141410000000012"
    assert build_sscc(9, "061414112345", 6789) == "906141411234567893"
    assert is_valid_sscc(build_sscc(3, "123456", 9_999_999_999))
    assert not is_valid_sscc("106141411234567898")
    assert not is_valid_sscc("10614141123456789")
    assert not is_valid_sscc("1061414112345678970")


@pytest.mark.parametrize(
    "args",
    [
        (10, "0614141", 1),
        (-1, "0614141", 1),
        (1, "12345", 1),
        (1, "1234567890123", 1),
        (1, "0614141", 10**9),
        (1, "06141A1", 1),
        (1, "0614141", -5),
    ],
)
def test_sscc_build_rejects(args):
    with pytest.raises(Gs1Error):
        build_sscc(*args)


def test_digital_link_build_and_parse_round_trip():
    uri = digital_link("id.example.com", "9521234543213", serial="ABC123", lot="LOT-7")
    assert uri == "https://id.example.com/01/09521234543213/10/LOT-7/21/ABC123"
    assert parse_digital_link(uri) == {
        "prefix": "",
        "01": "09521234543213",
        "10": "LOT-7",
        "21": "ABC123",
    }


def test_digital_link_with_a_real_serial_and_expiry():
    serial = Scheme(bytes(32), [1], 1).serial(1, 1)
    uri = digital_link("tc.example", "10614141007346", serial=serial, expiry="261231")
    assert uri == f"https://tc.example/01/10614141007346/21/{serial}?17=261231"
    parsed = parse_digital_link(uri)
    assert parsed["21"] == serial and parsed["17"] == "261231"


def test_digital_link_custom_prefix_cpv_and_percent_encoding():
    uri = digital_link(
        "h.example:8443", "10614141007346", serial="A/B%1", lot="x", prefix="/p/q", cpv="2A"
    )
    assert uri == "https://h.example:8443/p/q/01/10614141007346/22/2A/10/x/21/A%2FB%251"
    assert parse_digital_link(uri) == {
        "prefix": "/p/q",
        "01": "10614141007346",
        "22": "2A",
        "10": "x",
        "21": "A/B%1",
    }


def test_sscc_links():
    uri = sscc_link("h.example", "106141411234567897")
    assert uri == "https://h.example/00/106141411234567897"
    assert parse_digital_link(uri) == {"prefix": "", "00": "106141411234567897"}
    assert sscc_link("h.example", "106141411234567897", prefix="/r") == (
        "https://h.example/r/00/106141411234567897"
    )
    with pytest.raises(Gs1Error):
        sscc_link("h.example", "106141411234567898")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/01/9521234543213", {"prefix": "", "01": "09521234543213"}),
        ("/01/09521234543213/", {"prefix": "", "01": "09521234543213"}),
        (
            "HTTPS://ID.EXAMPLE/01/09521234543213/21/A1",
            {"prefix": "", "01": "09521234543213", "21": "A1"},
        ),
        (
            "http://h/x/01/09521234543213?17=260200&linkType=gs1:pip&foo=bar#frag",
            {"prefix": "/x", "01": "09521234543213", "17": "260200", "linkType": "gs1:pip"},
        ),
        (
            "/01/09521234543213?3103=000189",
            {"prefix": "", "01": "09521234543213", "3103": "000189"},
        ),
        (
            "/a/01/b/01/09521234543213/10/L",
            {"prefix": "/a/01/b", "01": "09521234543213", "10": "L"},
        ),
    ],
)
def test_parse_variants(uri, expected):
    assert parse_digital_link(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "/",
        "ftp://h/01/09521234543213",
        "https://h",
        "/01/09521234543212",  # bad check digit
        "/01/0952123454321",  # 13 digits, bad check digit for a GTIN-13
        "/01/09521234543213/21",
        "/01/09521234543213/21/A/10/B",  # qualifiers out of order
        "/01/09521234543213/21/A/21/B",
        "/01/09521234543213/17/261231",  # data attribute in the path
        "/01/09521234543213/21/%G1",
        "/01/09521234543213/21/%C3",  # not UTF-8
        "/01/09521234543213/21/%C3%A9",  # UTF-8 but not CSET 82
        "/01/09521234543213/21/" + "A" * 21,
        "/01/09521234543213/10/" + "A" * 21,
        "/01/09521234543213?17=261301",
        "/01/09521234543213?17=2612",
        "/01/09521234543213?21=A",
        "/01/09521234543213?17=261231&17=261231",
        "/00/106141411234567898",
        "/00/106141411234567897/21/A",
        "/01//09521234543213",
        "https://bad_host/01/09521234543213",
        "/01/" + "9" * 3000,
    ],
)
def test_bad_uris_raise_gs1_error(uri):
    with pytest.raises(Gs1Error):
        parse_digital_link(uri)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "h", "gtin": "09521234543212"},
        {"host": "https://h", "gtin": "09521234543213"},
        {"host": "", "gtin": "09521234543213"},
        {"host": "h", "gtin": "09521234543213", "serial": ""},
        {"host": "h", "gtin": "09521234543213", "serial": "A" * 21},
        {"host": "h", "gtin": "09521234543213", "serial": "é"},
        {"host": "h", "gtin": "09521234543213", "lot": "A B"},
        {"host": "h", "gtin": "09521234543213", "expiry": "261232"},
        {"host": "h", "gtin": "09521234543213", "prefix": "p"},
        {"host": "h", "gtin": "09521234543213", "prefix": "/p/"},
    ],
)
def test_bad_link_parts_raise_gs1_error(kwargs):
    with pytest.raises(Gs1Error):
        digital_link(**kwargs)


@given(
    st.text(
        alphabet="ABCDEFGHJKMNPQRSTVWXYZabc0123456789!\"%&'()*+,-./:;<=>?_", min_size=1, max_size=20
    ),
    st.text(alphabet="ABCDEFGHJKMNPQRSTVWXYZ0123456789-", min_size=1, max_size=20),
)
def test_any_cset82_serial_and_lot_round_trip(serial, lot):
    uri = digital_link("h.example", "10614141007346", serial=serial, lot=lot)
    assert parse_digital_link(uri) == {
        "prefix": "",
        "01": "10614141007346",
        "10": lot,
        "21": serial,
    }


@given(st.text(max_size=60))
def test_parser_never_fails_untyped(text):
    try:
        parse_digital_link(text)
    except Gs1Error:
        pass


def test_epc_urns():
    assert sgtin_urn("10614141007346", "2", 7) == "urn:epc:id:sgtin:0614141.100734.2"
    assert sscc_urn("106141411234567897", 7) == "urn:epc:id:sscc:0614141.1123456789"
    assert sgtin_urn("9521234543213", "A/B", 7) == "urn:epc:id:sgtin:9521234.054321.A%2FB"
    assert sgtin_urn("10614141007346", "1", 12) == "urn:epc:id:sgtin:061414100734.1.1"
    assert sscc_urn("106141411234567897", 12) == "urn:epc:id:sscc:061414112345.16789"
    for args in [
        ("10614141007347", "2", 7),
        ("10614141007346", "", 7),
        ("10614141007346", "2", 5),
        ("10614141007346", "2", 13),
    ]:
        with pytest.raises(Gs1Error):
            sgtin_urn(*args)
    with pytest.raises(Gs1Error):
        sscc_urn("106141411234567898", 7)


def test_type_errors_stay_type_errors():
    with pytest.raises(TypeError):
        normalize_gtin(None)
    with pytest.raises(TypeError):
        build_sscc("1", "0614141", 1)
    with pytest.raises(TypeError):
        parse_digital_link(b"/01/09521234543213")
