"""B2B verification for trade partners, GS1 Lightweight Messaging shape (SPEC B8): each answer and
failure reason, lot and expiry, recalled and gone units, brands kept apart, bad input, the
permission, consumer counts untouched, corrUUID idempotency and its race, the request log, the
per-key limit — on the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import msgspec
import psycopg
import pytest
from psycopg.types.json import Jsonb

from app import localtime
from app._core import gs1_check_digit
from app.b2b import service
from app.b2b.schemas import LmsVerifyIn
from app.codes.batches import code_id
from app.logistics.movements import NOT_FOR_SALE
from tests.helpers import activate, assert_error, issue_units, onboarded_brand, within_one_minute
from tests.race_support import lock_waiters

SUN_CREAM = "06901234000023"  # the demo's LM-SC-30
SERUM = "06901234000016"  # the demo's LM-HY-50
_lines = itertools.count()


class Lms:
    batch_no: int
    product_id: int
    lot: str
    serials: list[str]
    key: dict[str, str]  # a partner's key at DIST-NB holding verify.b2b


async def make_key(
    client: Any, headers: dict[str, str], org_id: int | None, permissions: list[str]
) -> dict[str, str]:
    body: dict[str, Any] = {"name": f"lms-{secrets.token_hex(4)}", "permissions": permissions}
    if org_id is not None:
        body["org_id"] = org_id
    made = await client.post("/api-keys", headers=headers, json=body)
    assert made.status_code == 201, made.text
    return {"X-API-Key": made.json()["key"]}


@pytest.fixture
async def lms(client: Any, login: Any, demo: Any, app: Any) -> Lms:
    """Ten activated sun creams of a lot of their own (two more printed, never activated), and a
    distributor's key holding ``verify.b2b``."""
    it = Lms()
    it.batch_no, it.product_id = await issue_units(client, login, demo, 12)
    it.serials = [app.state.scheme.serial(it.batch_no, i) for i in range(12)]
    it.lot = f"L{secrets.token_hex(4).upper()}"
    await activate(
        client, login, it.serials[:10], it.product_id, line=f"LMS{next(_lines)}", lot=it.lot
    )
    it.key = await make_key(client, await login("admin"), demo["DIST-NB"], ["verify.b2b"])
    return it


def ask(it: Lms, i: int = 0, **changes: Any) -> dict[str, Any]:
    body = {
        "gtin": SUN_CREAM,
        "serialNumber": it.serials[i],
        "lotNumber": it.lot,
        "expirationDate": "281231",
        "requestorGLN": "0614141000012",
        "context": "dscsaSaleableReturn",
        "corrUUID": str(uuid.uuid4()),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def verify(client: Any, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/lms/verify", headers=headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def data(client: Any, it: Lms, i: int = 0, **changes: Any) -> dict[str, Any]:
    return (await verify(client, it.key, ask(it, i, **changes)))["data"]  # type: ignore[no-any-return]


async def declare(
    client: Any, login: Any, it: Lms, expiry: str | None = None, recalled: bool = False
) -> dict[str, Any]:
    response = await client.put(
        f"/v1/lms/lots/{SUN_CREAM}/{it.lot}",
        headers=await login("admin"),
        json={"expirationDate": expiry, "recalled": recalled},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def set_status(conn: Any, it: Lms, i: int, status: str) -> None:
    await conn.execute(
        "UPDATE unit_state SET status = %s WHERE code = %s", (status, code_id(it.batch_no, i))
    )
    await conn.commit()


async def test_a_pack_as_printed_is_verified_in_the_standards_shape(
    client: Any, login: Any, lms: Lms
) -> None:
    body = ask(lms)
    answer = await verify(client, lms.key, body)
    assert answer["data"] == {"verified": True}
    assert answer["corrUUID"] == body["corrUUID"]
    assert set(answer) == {"verificationTimestamp", "corrUUID", "data"}  # no GLN on record
    # the standard's GET, lower-case serial, ISO expiry, a resolver's linkType: the same answer
    params = {
        **ask(lms, 1, serialNumber=lms.serials[1].lower()),
        "linkType": "gs1:verificationService",
    }
    params["expirationDate"] = "2028-12-31"
    got = await client.get("/v1/lms/verify", headers=lms.key, params=params)
    assert got.status_code == 200, got.text
    assert got.json()["data"] == {"verified": True}
    # GTIN-13 as printed under the barcode; no corrUUID: one is made
    answer = await verify(client, lms.key, ask(lms, 2, gtin=SUN_CREAM[1:], corrUUID=None))
    assert answer["data"] == {"verified": True} and uuid.UUID(answer["corrUUID"])
    put = await client.put(
        "/v1/lms/responder", headers=await login("admin"), json={"gln": "0614141000005"}
    )
    assert put.status_code == 200, put.text
    answer = await verify(client, lms.key, ask(lms))
    assert answer["responderGLN"] == "0614141000005"


async def test_each_no_match_reason(client: Any, login: Any, lms: Lms) -> None:
    forged = lms.serials[0][:-1] + ("A" if lms.serials[0][-1] != "A" else "B")
    assert await data(client, lms, gtin="06901234999990") == {
        "verified": False,
        "verificationFailureReason": "No_match_GTIN",
    }
    for changes in (
        {"serialNumber": forged},  # forged
        {"serialNumber": "ABC123"},  # a GS1 serial, none of this scheme
        {"serialNumber": lms.serials[11]},  # printed, never commissioned
        {"gtin": SERUM},  # another product's GTIN of the brand
    ):
        assert await data(client, lms, **changes) == {
            "verified": False,
            "verificationFailureReason": "No_match_GTIN_Serial",
        }, changes
    # the lot recorded at commissioning
    assert (await data(client, lms, lotNumber="OTHER"))["verificationFailureReason"] == (
        "No_match_GTIN_Serial_Lot"
    )
    # no expiry declared for the lot: the expiry is not compared
    assert await data(client, lms, expirationDate="300101") == {"verified": True}
    await declare(client, login, lms, expiry="2028-12-31")
    assert await data(client, lms, expirationDate="281130") == {
        "verified": False,
        "verificationFailureReason": "No_match_GTIN_Serial_Expiry",
    }
    assert (await data(client, lms, expirationDate="281130", lotNumber="X"))[
        "verificationFailureReason"
    ] == "No_match_GTIN_Serial_Lot_Expiry"
    assert await data(client, lms, expirationDate="281200") == {"verified": True}  # DD 00: the 31st
    # GTIN and serial not matching: lot and expiry are not looked at
    assert (await data(client, lms, gtin=SERUM, lotNumber="X", expirationDate="200101"))[
        "verificationFailureReason"
    ] == "No_match_GTIN_Serial"


async def test_recalled_decommissioned_destroyed_sold_and_expired(
    client: Any, login: Any, conn: Any, lms: Lms
) -> None:
    lot = await declare(client, login, lms, expiry="2028-12-31", recalled=True)
    assert lot["recalled"] and lot["gtin"] == SUN_CREAM
    assert await data(client, lms) == {
        "verified": False,
        "verificationFailureReason": "Not_for_re-distribution",
        "additionalInfo": "Recalled",
    }
    await declare(client, login, lms, expiry="2028-12-31", recalled=False)  # lifted
    assert await data(client, lms) == {"verified": True}
    for i, status, info in (
        (3, "void", "Decommissioned"),
        (4, "destroyed", "Destroyed"),
        (5, "sold", "Sold"),
    ):
        # states no API sets on a loose factory unit: written by SQL, and put back at once — a
        # unit left "sold" in the factory's stock broke the stock checks of tests running beside
        # this one (the roll-up kept it, the recount did not)
        await set_status(conn, lms, i, status)
        try:
            answer = await data(client, lms, i)
        finally:
            await set_status(conn, lms, i, "active")
        assert answer == {
            "verified": False,
            "verificationFailureReason": "Not_for_re-distribution",
            "additionalInfo": info,
        }, status
    # the whole batch voided: its units are decommissioned
    voided = await client.post(
        f"/batches/{lms.batch_no}/void", headers=await login("planner"), json={"reason": "test"}
    )
    assert voided.status_code == 200, voided.text
    assert (await data(client, lms, 6))["additionalInfo"] == "Decommissioned"
    row = await (
        await conn.execute(
            "SELECT detail FROM lms_requests WHERE code_id = %s ORDER BY id DESC LIMIT 1",
            (code_id(lms.batch_no, 6),),
        )
    ).fetchone()
    await conn.commit()
    assert row["detail"] == "void"


async def test_a_verified_pack_past_its_expiry_says_expired(
    client: Any, login: Any, lms: Lms
) -> None:
    past = localtime.today() - timedelta(days=1)
    await declare(client, login, lms, expiry=past.isoformat())
    assert await data(client, lms, expirationDate=past.strftime("%y%m%d")) == {
        "verified": True,
        "additionalInfo": "Expired",
    }


@pytest.mark.parametrize(("disposition", "info"), [("damaged", "Damaged"), ("expired", "Expired")])
async def test_a_unit_returned_damaged_or_expired_is_not_for_re_distribution(
    client: Any, conn: Any, lms: Lms, disposition: str, info: str
) -> None:
    """A unit a consumer or a store brought back damaged or expired is ``active`` with that
    disposition (``movements.NOT_FOR_SALE``): no store sells it on, and a dock checking a
    saleable return was told ``verified: true``. The state ``documents._take_back`` leaves,
    written by SQL and put back at once."""
    assert set(service._SPOILT) == set(NOT_FOR_SALE)
    code = code_id(lms.batch_no, 7)
    before = await (
        await conn.execute("SELECT disposition FROM unit_state WHERE code = %s", (code,))
    ).fetchone()
    await conn.execute(
        "UPDATE unit_state SET disposition = %s WHERE code = %s", (disposition, code)
    )
    await conn.commit()
    try:
        answer = await data(client, lms, 7)
    finally:
        await conn.execute(
            "UPDATE unit_state SET disposition = %s WHERE code = %s", (before["disposition"], code)
        )
        await conn.commit()
    assert answer == {
        "verified": False,
        "verificationFailureReason": "Not_for_re-distribution",
        "additionalInfo": info,
    }
    row = await (
        await conn.execute(
            "SELECT detail FROM lms_requests WHERE code_id = %s ORDER BY id DESC LIMIT 1", (code,)
        )
    ).fetchone()
    await conn.commit()
    assert row["detail"] == f"returned_{disposition}"


async def test_another_brands_key_gets_the_answer_for_unknown(
    client: Any, login: Any, lms: Lms
) -> None:
    # a company prefix of its own, and a GTIN under it no other test makes: a fixed GTIN of the
    # demo's range was now and then drawn at random by tests/test_catalog.py (409 duplicate_gtin)
    prefix = "56" + "".join(str(secrets.randbelow(10)) for _ in range(7))
    _, other_admin = await onboarded_brand(client, login, gs1_company_prefix=prefix)
    other = await make_key(client, other_admin, None, ["verify.b2b"])
    gtin = f"0{prefix}001{gs1_check_digit(prefix + '001')}"
    unknown = await verify(client, other, ask(lms, gtin="06901234999990"))
    ours = await verify(client, other, ask(lms))
    assert (
        ours["data"]
        == unknown["data"]
        == {
            "verified": False,
            "verificationFailureReason": "No_match_GTIN",
        }
    )
    # and with a GTIN of its own, our serial is no match, as a forged one is
    made = await client.post(
        "/products",
        headers=other_admin,
        json={"name": "Other cream", "product_no": "OC-1", "gtin": gtin},
    )
    assert made.status_code == 201, made.text
    theirs = await verify(client, other, ask(lms, gtin=gtin))
    forged = await verify(client, other, ask(lms, gtin=gtin, serialNumber="Z" * 20))
    assert (
        theirs["data"]
        == forged["data"]
        == {
            "verified": False,
            "verificationFailureReason": "No_match_GTIN_Serial",
        }
    )
    # the brand's list never shows another brand's requests
    mine = await client.get(
        "/v1/lms/requests", headers=await login("admin"), params={"per_page": 200}
    )
    assert theirs["corrUUID"] not in {r["corr_uuid"] for r in mine.json()["items"]}


async def test_bad_input_is_400_with_stable_codes_and_never_recorded(
    client: Any, conn: Any, lms: Lms
) -> None:
    cases = [
        ({"gtin": "06901234000024"}, "invalid_gtin"),
        ({"gtin": "00000000000000"}, "invalid_gtin"),
        ({"gtin": "69012340"}, "invalid_gtin"),
        ({"gtin": "abc"}, "validation_failed"),
        ({"requestorGLN": "0614141000013"}, "invalid_gln"),
        ({"requestorGLN": "061414100001"}, "validation_failed"),
        ({"expirationDate": "281332"}, "invalid_expiration_date"),
        ({"expirationDate": "2028-02-30"}, "invalid_expiration_date"),
        ({"expirationDate": "28-12-31"}, "validation_failed"),
        ({"serialNumber": "A" * 21}, "validation_failed"),
        ({"serialNumber": "AB CD"}, "validation_failed"),
        ({"serialNumber": ""}, "validation_failed"),
        ({"lotNumber": "LOT\n"}, "validation_failed"),
        ({"corrUUID": "not-a-uuid"}, "validation_failed"),
        ({"context": "dscsa saleable"}, "validation_failed"),
        ({"serialNumber": None}, "validation_failed"),  # missing
        ({"extra": 1}, "validation_failed"),  # unknown field
    ]
    for changes, code in cases:
        body = ask(lms, **changes)
        assert_error(await client.post("/v1/lms/verify", headers=lms.key, json=body), 400, code)
        if "extra" not in changes:
            got = await client.get("/v1/lms/verify", headers=lms.key, params=body)
            assert_error(got, 400, code)
    assert_error(
        await client.post(
            "/v1/lms/verify",
            headers={**lms.key, "Content-Type": "application/json"},
            content=b"{not json",
        ),
        400,
        "malformed_json",
    )
    assert_error(
        await client.post("/v1/lms/verify", headers=lms.key, json=[1, 2]), 400, "validation_failed"
    )
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM lms_requests WHERE lot_number = %s AND NOT verified",
            (lms.lot,),
        )
    ).fetchone()
    await conn.commit()
    assert row["n"] == 0


async def test_without_the_permission_403_without_credentials_401(
    client: Any, login: Any, demo: Any, lms: Lms
) -> None:
    plain = await make_key(client, await login("admin"), demo["DIST-NB"], ["orgs.read"])
    assert_error(
        await client.post("/v1/lms/verify", headers=plain, json=ask(lms)), 403, "permission_denied"
    )
    assert_error(
        await client.get("/v1/lms/verify", headers=plain, params=ask(lms)), 403, "permission_denied"
    )
    assert_error(await client.post("/v1/lms/verify", json=ask(lms)), 401)
    assert_error(await client.get("/v1/lms/verify", params=ask(lms)), 401)
    # the brand's lot data: catalog.write, not a partner's
    assert_error(
        await client.put(f"/v1/lms/lots/{SUN_CREAM}/{lms.lot}", headers=lms.key, json={}),
        403,
        "permission_denied",
    )
    admin = await login("admin")
    assert_error(
        await client.put(f"/v1/lms/lots/{SUN_CREAM}/B%20AD", headers=admin, json={}),
        400,
        "invalid_lot",
    )
    assert_error(
        await client.put("/v1/lms/lots/06901234999990/L1", headers=admin, json={}),
        404,
        "unknown_gtin",
    )
    assert_error(
        await client.put("/v1/lms/responder", headers=admin, json={"gln": "0614141000006"}),
        400,
        "invalid_gln",
    )


async def test_a_partners_catalog_key_neither_recalls_the_brands_lots_nor_sets_its_gln(
    client: Any, login: Any, demo: Any, lms: Lms
) -> None:
    """A probe: a distributor's ERP key (``catalog.write`` at DIST-NB, for its own products)
    recalled a lot of the brand's product — every receiving dock then told
    ``Not_for_re-distribution``/``Recalled`` — and set the brand's ``responderGLN``. The lots'
    expiry and recall and the GLN are the brand's master data: its own staff's only (403
    ``brand_staff_only``). The lots stay readable across the tree, as the catalogue."""
    admin = await login("admin")
    erp = await make_key(client, admin, demo["DIST-NB"], ["catalog.read", "catalog.write"])
    recall = {"expirationDate": "2020-01-01", "recalled": True, "recall_note": "distributor"}
    assert_error(
        await client.put(f"/v1/lms/lots/{SUN_CREAM}/{lms.lot}", headers=erp, json=recall),
        403,
        "brand_staff_only",
    )
    assert await data(client, lms) == {"verified": True}  # neither recalled nor expired
    before = (await client.get("/v1/lms/responder", headers=erp)).json()
    assert_error(
        await client.put("/v1/lms/responder", headers=erp, json={"gln": "0614141000029"}),
        403,
        "brand_staff_only",
    )
    assert (await client.get("/v1/lms/responder", headers=admin)).json() == before
    # the brand's staff declare; the partner reads what was declared
    await declare(client, login, lms, expiry="2028-12-31")
    lots = await client.get("/v1/lms/lots", headers=erp, params={"gtin": SUN_CREAM})
    assert lots.status_code == 200, lots.text
    assert any(lot["lot"] == lms.lot for lot in lots.json()["items"])


async def _audits(client: Any, headers: dict[str, str], entity: str, entity_id: Any) -> list[Any]:
    params = {"entity": entity, "entity_id": str(entity_id), "per_page": 200}
    got = await client.get("/audit", headers=headers, params=params)
    assert got.status_code == 200, got.text
    return got.json()["items"]  # type: ignore[no-any-return]


async def test_a_lot_or_gln_saved_unchanged_is_neither_written_nor_audited(
    client: Any, login: Any
) -> None:
    """README: a call that changes nothing writes no audit row (a probe: a lot saved again as it
    was wrote another ``update`` row, before == after, and moved ``updated_at``, re-sorting
    ``GET /v1/lms/lots``, "last changed first"; the responder's GLN saved again, another
    row). The same values (an expiry as YYMMDD or ISO) answer the lot as it is; a change is
    written and audited."""
    admin = await login("admin")
    lot = f"L{secrets.token_hex(4).upper()}"
    url = f"/v1/lms/lots/{SERUM}/{lot}"
    steps = [
        ({"expirationDate": "2028-12-31"}, {"expirationDate": "281231", "recalled": False}),
        ({"expirationDate": "2028-12-31", "recalled": True, "recall_note": "seal"},) * 2,
    ]
    for changed, same in steps:
        first = await client.put(url, headers=admin, json=changed)
        assert first.status_code == 200, first.text
        again = await client.put(url, headers=admin, json=same)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()  # updated_at and recalled_at kept
    rows = await _audits(client, admin, "lms_lot", f"{first.json()['product_id']}/{lot}")
    assert len(rows) == 2, [(r["before"], r["after"]) for r in rows]
    assert rows[0]["before"]["recalled"] is False and rows[0]["after"]["recalled"] is True

    brand, office = await onboarded_brand(client, login)
    for gln in ("0614141000005", "0614141000005", "0614141000012"):
        put = await client.put("/v1/lms/responder", headers=office, json={"gln": gln})
        assert put.status_code == 200 and put.json() == {"gln": gln}, put.text
    rows = await _audits(client, office, "lms_responder", brand["id"])
    assert [(r["before"], r["after"]) for r in rows] == [
        ({"gln": "0614141000005"}, {"gln": "0614141000012"}),
        ({"gln": None}, {"gln": "0614141000005"}),
    ]


async def test_consumer_counts_are_not_touched(app: Any, client: Any, lms: Lms) -> None:
    serial = lms.serials[8]
    pin = app.state.scheme.pin(serial)

    async def consumer() -> dict[str, Any]:
        response = await client.post("/v1/verify", json={"serial": serial, "pin": pin})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    first = await consumer()
    for _ in range(3):
        assert await data(client, lms, 8) == {"verified": True}
    second = await consumer()
    assert (first["queries"], second["queries"]) == (1, 2)


async def test_corr_uuid_replays_the_first_answer_and_refuses_another_request(
    client: Any, conn: Any, lms: Lms
) -> None:
    body = ask(lms)
    first = await verify(client, lms.key, body)
    await asyncio.sleep(1.05)  # a new answer would carry another timestamp
    again = await verify(client, lms.key, body)
    assert again == first
    assert_error(
        await client.post("/v1/lms/verify", headers=lms.key, json={**body, "lotNumber": "X"}),
        409,
        "corr_uuid_reused",
    )
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM lms_requests WHERE corr_uuid = %s", (body["corrUUID"],)
        )
    ).fetchone()
    await conn.commit()
    assert row["n"] == 1
    # a bulk sent again whole (a receiving dock's retry): every answer as the first time
    bodies = [ask(lms, i) for i in range(6)]
    answers = await asyncio.gather(*(verify(client, lms.key, b) for b in bodies))
    retried = await asyncio.gather(*(verify(client, lms.key, b) for b in bodies))
    assert retried == answers


async def test_two_requests_under_one_corr_uuid_at_once_are_decided_once(
    app: Any, client: Any, conn: Any, demo: Any, lms: Lms
) -> None:
    """Both requests find no earlier answer, then meet the unique index: the one that commits
    first (here a transaction held open, holding the row) is the answer of both."""
    body = ask(lms)
    request = service.read_request(msgspec.convert(body, LmsVerifyIn))
    held_answer = {
        "verificationTimestamp": "2026-01-01T00:00:00Z",
        "corrUUID": body["corrUUID"],
        "data": {"verified": True},
    }
    async with await psycopg.AsyncConnection.connect(app.state.settings.database_url) as holder:
        await holder.execute(
            """INSERT INTO lms_requests (brand_id, org_id, corr_uuid, fingerprint, context, gtin,
                   serial_number, lot_number, expiration_date, verified, detail, response)
               VALUES (%s, %s, %s, %s, 'held', %s, %s, %s, %s, true, 'matched', %s)""",
            (
                demo["BRAND-LUMI"],
                demo["DIST-NB"],
                body["corrUUID"],
                request.fingerprint(),
                request.gtin,
                request.serial,
                request.lot,
                request.expiry,
                Jsonb(held_answer),
            ),
        )
        both = asyncio.gather(*(verify(client, lms.key, body) for _ in range(2)))
        assert await lock_waiters(conn, 2)
        await holder.commit()
        answers = await both
    assert answers == [held_answer, held_answer]


async def test_the_request_log_for_the_brand_and_for_the_partner(
    client: Any, login: Any, demo: Any, lms: Lms
) -> None:
    forged = await verify(client, lms.key, ask(lms, serialNumber="Z" * 20))
    good = await verify(client, lms.key, ask(lms))
    admin = await login("admin")
    listed = await client.get(
        "/v1/lms/requests", headers=admin, params={"corrUUID": forged["corrUUID"]}
    )
    assert listed.status_code == 200, listed.text
    (row,) = listed.json()["items"]
    assert row["detail"] == "forged" and row["verified"] is False
    assert row["failure_reason"] == "No_match_GTIN_Serial"
    assert (row["org_id"], row["requestor_gln"], row["context"]) == (
        demo["DIST-NB"],
        "0614141000012",
        "dscsaSaleableReturn",
    )
    assert row["api_key_id"] is not None and row["user_id"] is None
    own = await client.get("/v1/lms/requests", headers=lms.key, params={"verified": True})
    items = own.json()["items"]
    assert good["corrUUID"] in {r["corr_uuid"] for r in items}
    assert all(r["detail"] is None and r["org_id"] == demo["DIST-NB"] for r in items)
    failed = await client.get(
        "/v1/lms/requests",
        headers=admin,
        params={"reason": "No_match_GTIN_Serial", "per_page": 200},
    )
    assert forged["corrUUID"] in {r["corr_uuid"] for r in failed.json()["items"]}
    # a partner elsewhere in the tree sees none of DIST-NB's
    gd = await make_key(client, admin, demo["AGENT-GD"], ["verify.b2b"])
    theirs = await client.get("/v1/lms/requests", headers=gd, params={"per_page": 200})
    assert all(r["org_id"] != demo["DIST-NB"] for r in theirs.json()["items"])
    # a partner's subtree (a review: the README said its organisation's own): the key of the
    # agent above DIST-NB sees DIST-NB's checks, DIST-NB's key never the agent's own
    zj = await make_key(client, admin, demo["AGENT-ZJ"], ["verify.b2b"])
    above = await verify(client, zj, ask(lms, 1))
    seen = await client.get("/v1/lms/requests", headers=zj, params={"per_page": 200})
    assert {good["corrUUID"], above["corrUUID"]} <= {r["corr_uuid"] for r in seen.json()["items"]}
    below = await client.get("/v1/lms/requests", headers=lms.key, params={"per_page": 200})
    assert above["corrUUID"] not in {r["corr_uuid"] for r in below.json()["items"]}
    lots = await client.get("/v1/lms/lots", headers=admin, params={"gtin": SUN_CREAM})
    assert lots.status_code == 200, lots.text


async def test_the_limit_is_per_key_and_head_verifies_nothing(
    app: Any, client: Any, login: Any, conn: Any, demo: Any, lms: Lms
) -> None:
    original = getattr(app.state, "lms_limit", None)
    app.state.lms_limit = service.RateLimit(
        app.state.redis, msgspec.structs.replace(app.state.settings, lms_rate_limit=2)
    )
    try:
        other = await make_key(client, await login("admin"), demo["DIST-NB"], ["verify.b2b"])
        # the limit counts per clock minute: the three below in one (one in 200 runs the minute
        # turned between them, and the third was the new minute's first: 200, not 429)
        await within_one_minute()
        for _ in range(2):
            await verify(client, lms.key, ask(lms))
        refused = await client.post("/v1/lms/verify", headers=lms.key, json=ask(lms))
        error = assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1 and error["details"]["retry_after"] >= 1
        await verify(client, other, ask(lms))  # another key has its own count
    finally:
        app.state.lms_limit = original
    body = ask(lms)
    head = await client.head("/v1/lms/verify", headers=lms.key, params=body)
    assert head.status_code == 200 and head.content == b""
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM lms_requests WHERE corr_uuid = %s", (body["corrUUID"],)
        )
    ).fetchone()
    await conn.commit()
    assert row["n"] == 0


@pytest.mark.parametrize("lot", ["24/01", "24//01", "/A"])
async def test_a_lot_with_a_slash_is_declared_and_recalled(
    client: Any, login: Any, demo: Any, app: Any, lot: str
) -> None:
    """ "/" is GS1 CSET 82 (AI 10): the packing line records it and the request takes it, so the
    brand declares and recalls it — URL-encoded in the path (the router decodes %2F before
    routing: it was 404), or bare; "//" kept, not folded into one."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    lot = f"{lot}{secrets.token_hex(2).upper()}"
    await activate(client, login, serials, product_id, line=f"LMS{next(_lines)}", lot=lot)
    admin = await login("admin")
    key = await make_key(client, admin, demo["DIST-NB"], ["verify.b2b"])
    for path, recalled in ((quote(lot, safe=""), True), (lot, False), (quote(lot, safe=""), True)):
        put = await client.put(
            f"/v1/lms/lots/{SUN_CREAM}/{path}",
            headers=admin,
            json={"expirationDate": "2028-12-31", "recalled": recalled},
        )
        assert put.status_code == 200, (path, put.text)
        assert (put.json()["lot"], put.json()["recalled"]) == (lot, recalled)
    body = {"gtin": SUN_CREAM, "serialNumber": serials[0], "lotNumber": lot}
    answer = await verify(client, key, {**body, "expirationDate": "281231"})
    assert answer["data"]["additionalInfo"] == "Recalled"
    listed = await client.get("/v1/lms/lots", headers=admin, params={"gtin": SUN_CREAM})
    assert [r["lot"] for r in listed.json()["items"]].count(lot) == 1


async def test_the_lot_path_is_read_from_the_raw_path_alone(
    client: Any, login: Any, conn: Any
) -> None:
    """The router decodes ``%2F`` and folds ``//`` before it splits the GTIN off; the lot is
    read from the raw path: ``{gtin}%2FX/L`` named GTIN ``{gtin}/X`` (it saved lot ``L`` of
    the GTIN) and ``//{gtin}/L`` an empty one (it saved lot ``{gtin}/L``): 400
    ``invalid_gtin``, nothing saved."""
    admin = await login("admin")
    lot = f"G{secrets.token_hex(3).upper()}"
    recall = {"expirationDate": None, "recalled": True}
    for path, named in ((f"{SUN_CREAM}%2FX/{lot}", f"{SUN_CREAM}/X"), (f"/{SUN_CREAM}/{lot}", "")):
        error = assert_error(
            await client.put(f"/v1/lms/lots/{path}", headers=admin, json=recall),
            400,
            "invalid_gtin",
        )
        assert error["details"] == {"gtin": named}, error
    row = await (
        await conn.execute("SELECT count(*) AS n FROM lms_lots WHERE lot LIKE %s", (f"%{lot}",))
    ).fetchone()
    await conn.commit()
    assert row["n"] == 0


async def test_the_lot_route_is_found_however_its_words_are_spelled_and_403_comes_first(
    client: Any, login: Any
) -> None:
    """A review: ``/v1/lms/%6Cots/{gtin}/L`` is routed (the router decodes the path) but the raw
    path was searched for the text ``/v1/lms/lots/``: the GTIN read as empty, 400 for a right
    GTIN; ``lots%2F{gtin}`` gives the GTIN no segment of its own: 400, not a 500. And a caller
    without ``catalog.write`` learns 403 before anything of the path's shape."""
    admin, clerk = await login("admin"), await login("store_clerk")
    lot = f"E{secrets.token_hex(3).upper()}"
    recall = {"expirationDate": None, "recalled": True}
    put = await client.put(f"/v1/lms/%6Cots/{SUN_CREAM}/{lot}", headers=admin, json=recall)
    assert put.status_code == 200 and put.json()["lot"] == lot, put.text
    glued = await client.put(f"/v1/lms/lots%2F{SUN_CREAM}/{lot}", headers=admin, json=recall)
    assert_error(glued, 400, "invalid_gtin")
    for path in (f"{SUN_CREAM}%2FX/{lot}", f"{SUN_CREAM}/{lot}/"):
        refused = await client.put(f"/v1/lms/lots/{path}", headers=clerk, json=recall)
        assert refused.status_code == 403, refused.text


async def test_a_lot_ending_in_a_bare_slash_is_400(client: Any, login: Any) -> None:
    """A bare last ``/`` was taken as part of the lot (``L/``; Litestar's ``{lot:str}`` took
    ``L``): a recall sent so answered 200 and recalled nothing. 400 ``invalid_lot`` saying to
    send it as ``%2F``; encoded it is the lot's, as ``%`` is sent as ``%25`` and ``?`` as
    ``%3F`` (README)."""
    admin = await login("admin")
    lot = f"T{secrets.token_hex(3).upper()}"
    recall = {"expirationDate": None, "recalled": True}
    for path in (f"{lot}/", f"{lot}//", f"A/{lot}/"):
        refused = await client.put(f"/v1/lms/lots/{SUN_CREAM}/{path}", headers=admin, json=recall)
        assert "%2F" in assert_error(refused, 400, "invalid_lot")["message"]
    for path, taken in (
        (f"{lot}%2F", f"{lot}/"),
        (f"{lot}%25", f"{lot}%"),
        (f"{lot}%3F", f"{lot}?"),
    ):
        put = await client.put(f"/v1/lms/lots/{SUN_CREAM}/{path}", headers=admin, json=recall)
        assert put.status_code == 200, (path, put.text)
        assert put.json()["lot"] == taken


async def test_the_packing_line_records_only_a_lot_lms_can_verify(
    client: Any, login: Any, demo: Any
) -> None:
    """A lot outside GS1 CSET 82 (``#``, a blank, ``~``: printable ASCII the line took) could
    never be verified or recalled by a trade partner: the line refuses it, as LMS does."""
    _, product_id = await issue_units(client, login, demo, 1)
    operator = await login("operator")
    for lot in ("LOT#1", "LOT 1", "L~1", "L" * 21):
        got = await client.put(
            f"/lines/LMS{next(_lines)}/context",
            headers=operator,
            json={"product_id": product_id, "lot": lot, "production_date": "2026-11-01"},
        )
        assert_error(got, 400, "validation_failed")
    ok = await client.put(
        f"/lines/LMS{next(_lines)}/context",
        headers=operator,
        json={"product_id": product_id, "lot": "24/01-A.B", "production_date": "2026-11-01"},
    )
    assert ok.status_code == 200, ok.text


async def test_get_with_a_parameter_twice_is_400_naming_it(
    client: Any, conn: Any, lms: Lms
) -> None:
    """Two serials (or GTINs, lots …) in one GET: Litestar kept the last, and the dock recorded
    one answer against the wrong pack. 400 ``validation_failed`` naming it, recorded nowhere."""
    body = {k: v for k, v in ask(lms).items() if k != "corrUUID"}
    for name, extra in (
        ("serialNumber", lms.serials[1]),
        ("lotNumber", "OTHER"),
        ("gtin", SERUM),
        ("expirationDate", "281231"),
        ("context", "verify"),
    ):
        params = [*body.items(), (name, extra)]
        error = assert_error(
            await client.get("/v1/lms/verify", headers=lms.key, params=params),
            400,
            "validation_failed",
        )
        assert error["details"][0]["field"] == name, error
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM lms_requests WHERE lot_number = %s", (lms.lot,)
        )
    ).fetchone()
    await conn.commit()
    assert row["n"] == 0


async def test_post_with_a_member_twice_is_400_naming_it(client: Any, conn: Any, lms: Lms) -> None:
    """The POST's object naming ``serialNumber`` (or another member) twice: msgspec kept the
    last, answered and recorded against it — the GET's repeated parameter again. 400
    ``validation_failed`` naming it, recorded nowhere."""
    body = ask(lms)
    for name, extra in (("serialNumber", lms.serials[1]), ("gtin", SERUM), ("corrUUID", None)):
        raw = json.dumps(body)[:-1] + f", {json.dumps(name)}: {json.dumps(extra or body[name])}}}"
        error = assert_error(
            await client.post(
                "/v1/lms/verify",
                headers={**lms.key, "Content-Type": "application/json"},
                content=raw,
            ),
            400,
            "validation_failed",
        )
        assert error["details"][0]["field"] == name, error
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM lms_requests WHERE corr_uuid = %s", (body["corrUUID"],)
        )
    ).fetchone()
    await conn.commit()
    assert row["n"] == 0


async def test_a_retry_in_another_case_is_the_same_request(client: Any, lms: Lms) -> None:
    """README: ``serialNumber`` in any case — a dock's retry with the serial lower-cased is the
    same request (its first answer), not 409 ``corr_uuid_reused``."""
    body = ask(lms)
    first = await verify(client, lms.key, body)
    lower = {**body, "serialNumber": body["serialNumber"].lower()}
    assert await verify(client, lms.key, lower) == first
    got = await client.get("/v1/lms/verify", headers=lms.key, params=lower)
    assert got.status_code == 200, got.text
    assert got.json() == first


async def test_a_retry_of_a_request_recorded_before_serials_were_upper_cased(
    client: Any, app: Any, lms: Lms
) -> None:
    """A request recorded before the serial was upper-cased for the fingerprint holds the
    fingerprint of the serial as sent: its exact retry gets its first answer (it was 409
    ``corr_uuid_reused``); another request under its corrUUID is still 409."""
    body = ask(lms, serialNumber=lms.serials[0].lower())
    first = await verify(client, lms.key, body)
    req = service.read_request(msgspec.convert(body, LmsVerifyIn))
    old = dataclasses.replace(req, serial=body["serialNumber"]).fingerprint()
    async with app.state.pool.connection() as conn:  # the test's own request, as then recorded
        await conn.execute(
            "UPDATE lms_requests SET fingerprint = %s, serial_number = %s WHERE corr_uuid = %s",
            (old, body["serialNumber"], uuid.UUID(body["corrUUID"])),
        )
        await conn.commit()
    assert await verify(client, lms.key, body) == first
    got = await client.get("/v1/lms/verify", headers=lms.key, params=body)
    assert got.status_code == 200 and got.json() == first, got.text
    other = {**body, "serialNumber": lms.serials[1].lower()}
    assert_error(
        await client.post("/v1/lms/verify", headers=lms.key, json=other), 409, "corr_uuid_reused"
    )


async def test_another_brands_serial_is_logged_as_a_never_made_one(
    client: Any, login: Any, app: Any, lms: Lms
) -> None:
    """Another brand's genuine serial under this brand's GTIN is recorded with the detail of a
    forged one (it was ``unknown``: the brand's staff told the other brand's codes from fakes);
    ``unknown`` is left to an index past a batch of the brand's own."""
    prefix = "57" + "".join(str(secrets.randbelow(10)) for _ in range(7))
    _, other_admin = await onboarded_brand(client, login, gs1_company_prefix=prefix)
    other = await make_key(client, other_admin, None, ["verify.b2b"])
    gtin = f"0{prefix}001{gs1_check_digit(prefix + '001')}"
    made = await client.post(
        "/products",
        headers=other_admin,
        json={"name": "Other cream", "product_no": "OC-1", "gtin": gtin},
    )
    assert made.status_code == 201, made.text
    forged = lms.serials[0][:-1] + ("A" if lms.serials[0][-1] != "A" else "B")
    ours = await verify(client, other, ask(lms, gtin=gtin))
    fake = await verify(client, other, ask(lms, gtin=gtin, serialNumber=forged))
    assert ours["data"] == fake["data"]
    log = await client.get("/v1/lms/requests", headers=other_admin, params={"per_page": 10})
    rows = {r["corr_uuid"]: r for r in log.json()["items"]}
    a, b = rows[ours["corrUUID"]], rows[fake["corrUUID"]]
    keep = ("verified", "failure_reason", "additional_info", "product_id", "detail")
    assert {k: a[k] for k in keep} == {k: b[k] for k in keep}
    assert a["detail"] == "forged"
    # the brand's own batch, an index past its size: unknown, as before
    beyond = await verify(
        client, lms.key, ask(lms, serialNumber=app.state.scheme.serial(lms.batch_no, 12))
    )
    own = await client.get(
        "/v1/lms/requests", headers=await login("admin"), params={"corrUUID": beyond["corrUUID"]}
    )
    assert own.json()["items"][0]["detail"] == "unknown"
