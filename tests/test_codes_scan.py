"""What a scanner reads, as the API takes it (app/codes/scheme.py sscc_from_scan, read by
app/codes/lookup.py read_codes): the written forms of a case code beyond the SSCC's own digits,
and a unit's or a case's code at the lifecycle look-up (``GET /codes/{serial}/status``)."""

from __future__ import annotations

from typing import Any

import pytest

from app.codes.scheme import sscc_from_scan
from tests.helpers import assert_error
from tests.test_logistics import document, pack

SSCC = "106141411234567897"  # the GS1 General Specifications' example (valid check digit)


def test_an_sscc_epc_urn_reads_as_its_sscc() -> None:
    """A probe: an RFID sled (keyboard wedge, EPC URI output) types a case's tag as
    ``urn:epc:id:sscc:{company}.{extension + serial reference}``; it was refused as malformed.
    The URN carries no check digit: it is computed; any company prefix length (6-12) reads."""
    assert sscc_from_scan("urn:epc:id:sscc:0614141.1123456789") == SSCC
    assert sscc_from_scan("urn:epc:id:sscc:061414112.13456789") == SSCC
    assert sscc_from_scan("URN:EPC:ID:SSCC:0614141.1123456789") == SSCC
    assert sscc_from_scan("URN:EPC:id:sscc:0614141.1123456789") == SSCC
    assert sscc_from_scan("Urn:Epc:id:sscc:0614141.1123456789") == SSCC
    assert sscc_from_scan(" urn:epc:id:sscc:0614141.1123456789\n") == SSCC
    for bad in (
        "urn:epc:id:sscc:0614141.112345678",  # 16 digits
        "urn:epc:id:sscc:0614141.11234567890",  # 18 digits
        "urn:epc:id:sscc:0614141",
        "urn:epc:id:sscc:06141.111234567890",  # a 5-digit company prefix
        "urn:epc:id:sgtin:0614141.112345.400",  # a unit's EPC is not a case
    ):
        assert sscc_from_scan(bad) is None, bad


async def test_a_case_read_as_its_epc_urn_is_added_to_a_document(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a clerk's RFID sled reads a packed case's tag as its SSCC EPC URN — the brand's
    own EPCIS documents name its cases so. The document answered `rejected` (`malformed`: read
    as a unit serial); on a shelf the same read recorded the genuine case as a counterfeit. It
    is the case."""
    packed = await pack(client, login, app, demo, 1)
    sscc = packed["cases"][0]
    assert len(sscc) == 18
    urn = f"urn:epc:id:sscc:{sscc[1:8]}.{sscc[0]}{sscc[8:17]}"  # a 7-digit company prefix
    clerk = await login("clerk")
    doc = await document(client, clerk, kind="factory_inbound")
    answer = await client.post(
        f"/documents/{doc['id']}/codes", headers=clerk, json={"codes": [urn]}
    )
    assert answer.status_code == 200, answer.text
    item = answer.json()["items"][0]
    assert item["result"] == "added" and item.get("kind") == "case", item


@pytest.fixture(scope="module")
async def packed(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """One inner case of ten activated sun-cream units, packed at the factory."""
    return await pack(client, login, app, demo, 1)


async def test_a_case_urn_with_urn_epc_in_capitals_is_traced(
    client: Any, login: Any, packed: dict[str, Any]
) -> None:
    """A probe: a case's EPC URN spelled ``URN:EPC:id:sscc:…`` or ``Urn:Epc:id:sscc:…`` (the
    README: a URN's ``urn:epc:`` is read in any case; an RFID reader or a partner's EPCIS
    document writes it so) was 400 ``malformed_code`` at ``GET /trace`` — and refused alike in a
    document or a packing upload — while ``urn:epc:id:sscc:…`` and ``URN:EPC:ID:SSCC:…`` traced
    the case: ``sscc_from_scan`` looked for those two exact prefixes although its URN pattern
    ignores case. It is the case whatever the case of its prefix."""
    admin = await login("admin")
    [case] = packed["cases"]
    body = f"{case[1:8]}.{case[0]}{case[8:17]}"  # {company}.{extension}{reference}, 7-digit prefix
    for prefix in ("urn:epc:id:sscc:", "URN:EPC:ID:SSCC:", "URN:EPC:id:sscc:", "Urn:Epc:id:sscc:"):
        traced = await client.get(f"/trace/{prefix}{body}", headers=admin)
        assert traced.status_code == 200, (prefix, traced.text)
        assert traced.json()["code"] == case


async def test_the_lifecycle_look_up_reads_a_serial_as_the_trace_does(
    client: Any, login: Any, packed: dict[str, Any]
) -> None:
    """A probe: a genuine, active serial typed with a Chinese input method (full-width), with a
    BOM or with a blank around it — read by ``GET /trace/{code}``, ``/v1/verify``, documents and
    packing — was 400 ``malformed_serial`` at ``GET /codes/{serial}/status``: ``code_status``
    handed the raw path text to ``scheme.verify``, so a planner was told it was no serial at
    all. It is read as every reader reads a scan: ``active``, under its canonical serial."""
    admin = await login("admin")
    unit = packed["units"][0]
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in unit)
    for spelling in (full_width, "\ufeff" + unit, f" {unit} "):
        traced = await client.get(f"/trace/{spelling}", headers=admin)
        assert traced.status_code == 200 and traced.json()["code"] == unit, traced.text
        status = await client.get(f"/codes/{spelling}/status", headers=admin)
        assert status.status_code == 200, (repr(spelling), status.text)
        assert (status.json()["serial"], status.json()["status"]) == (unit, "active")


async def test_a_case_label_at_the_lifecycle_look_up_is_not_called_forged(
    client: Any, login: Any, packed: dict[str, Any]
) -> None:
    """A probe: ``GET /codes/{serial}/status`` of a genuine case's scanner label ``00{SSCC}``
    (20 digits, read as a unit serial) answered 422 ``not_genuine`` — a genuine case called a
    counterfeit, the mistake ``lookup.case_label`` was written against — while the bare SSCC
    and ``(00){SSCC}`` answered 400. The look-up is of unit serials (README: "code lifecycle"):
    every spelling of a case is 400 ``malformed_serial``, its message naming a case's code."""
    admin = await login("admin")
    [case] = packed["cases"]
    assert (await client.get(f"/trace/00{case}", headers=admin)).json()["code"] == case
    urn = f"urn:epc:id:sscc:{case[1:8]}.{case[0]}{case[8:17]}"
    for spelling in (case, f"00{case}", f"(00){case}", urn):
        answer = await client.get(f"/codes/{spelling}/status", headers=admin)
        assert_error(answer, 400, "malformed_serial")
        assert "case" in answer.json()["error"]["message"], (spelling, answer.text)
