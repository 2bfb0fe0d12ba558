"""What a scanner reads, as the API takes it (app/codes/scheme.py sscc_from_scan, read by
app/codes/lookup.py read_codes): the written forms of a case code beyond the SSCC's own digits."""

from __future__ import annotations

from typing import Any

from app.codes.scheme import sscc_from_scan
from tests.test_logistics import document, pack

SSCC = "106141411234567897"  # the GS1 General Specifications' example (valid check digit)


def test_an_sscc_epc_urn_reads_as_its_sscc() -> None:
    """A probe: an RFID sled (keyboard wedge, EPC URI output) types a case's tag as
    ``urn:epc:id:sscc:{company}.{extension + serial reference}``; it was refused as malformed.
    The URN carries no check digit: it is computed; any company prefix length (6-12) reads."""
    assert sscc_from_scan("urn:epc:id:sscc:0614141.1123456789") == SSCC
    assert sscc_from_scan("urn:epc:id:sscc:061414112.13456789") == SSCC
    assert sscc_from_scan("URN:EPC:ID:SSCC:0614141.1123456789") == SSCC
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
