"""Signed evidence packs (SPEC B6): RFC 8785 canonical JSON, Ed25519 signatures verified offline
by independent paths (a fresh process with only the pack and the public key PEM, the RFC 8032
reference algorithm in pure Python, OpenSSL), tampering, masking, scoping and bad input — on
the real PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.triage import verify_pack
from app.triage.canonical import NotCanonicalisable, canonical, number
from app.triage.signing import EvidenceKey, evidence_key
from tests import steady
from tests.helpers import activate, assert_error, issue_units, onboarded_brand, scheme_for_tests
from tests.race_support import audit_rows

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "app" / "triage" / "verify_pack.py"
CONSUMER_IP = "115.238.77.201"
PHONE = "13812345678"

# RFC 8785 appendix B: IEEE 754 doubles (by their bits) and their canonical text
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(bits: str) -> float:
    import struct

    return float(struct.unpack(">d", bytes.fromhex(bits))[0])


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_numbers_are_written_as_rfc_8785_writes_them(bits: str, text: str) -> None:
    value = _double(bits)
    assert number(value) == text
    assert verify_pack.jcs(value) == text.encode()


def test_canonical_form_sorts_by_utf16_and_escapes_as_json_stringify() -> None:
    # RFC 8785 section 3.2.3's sorting example, and its string escapes
    document = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = [k for k in json.loads(canonical(document))]
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    text = {"s": 'a"b\\c\u0001\n/\u00e9\u2028', "n": [1, 2.5, True, None, -0.0, 1e21]}
    expected = '{"n":[1,2.5,true,null,0,1e+21],"s":"a\\"b\\\\c\\u0001\\n/\u00e9\u2028"}'
    assert canonical(text) == expected.encode() == verify_pack.jcs(text)
    for bad in (float("nan"), 2**53, {"x": float("inf")}, "\ud800", {1: 2}):
        with pytest.raises(NotCanonicalisable):
            canonical(bad)


def test_the_pure_python_verifier_passes_rfc_8032_vectors() -> None:
    """RFC 8032 section 7.1, tests 1 and 2; and a signature of pycryptodome's."""
    vectors = [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ]
    for public, message, signature in vectors:
        pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
        assert verify_pack.ed25519_verify_pure(pub, msg, sig)
        assert verify_pack.ed25519_verify(pub, msg, sig)  # pycryptodome
        assert not verify_pack.ed25519_verify_pure(pub, msg + b"x", sig)
        bent = sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]
        assert not verify_pack.ed25519_verify_pure(pub, msg, bent)


def test_the_key_is_derived_from_the_master_key_and_never_printed(settings: Any) -> None:
    key = evidence_key(settings)
    assert key is evidence_key(settings)  # derived once
    again = EvidenceKey(settings.subkey("evidence-signing/ed25519/v1"))
    assert again.public_raw == key.public_raw and again.key_id == key.key_id
    other = EvidenceKey(hashlib.sha256(b"another master key").digest())
    assert other.key_id != key.key_id
    assert verify_pack.key_id(key.public_raw) == key.key_id
    assert verify_pack.public_key_bytes(key.public_pem) == key.public_raw
    assert repr(key) == f"EvidenceKey({key.key_id})"


async def _case(client: Any, login: Any, demo: Any, app: Any) -> dict[str, Any]:
    """An activated unit with three verification records (two from one consumer address,
    one of a member with a phone), a repeat alert on it with a verdict whose note names a phone
    and an address."""
    batch_no, product_id = await issue_units(client, login, demo, 3)
    scheme = scheme_for_tests()
    serial = scheme.serial(batch_no, 1)
    await activate(client, login, [serial], product_id)
    code = (batch_no << 32) | 1
    brand = demo["BRAND-LUMI"]
    phone = steady.phone("139")
    async with app.state.pool.connection() as conn:
        member = await (
            await conn.execute(
                "INSERT INTO members (brand_id, phone) VALUES (%s, %s) RETURNING id", (brand, phone)
            )
        ).fetchone()
        for i, (ip, member_id) in enumerate(
            [(CONSUMER_IP, None), (CONSUMER_IP, None), ("2408:8400:1:2:3:4:5:6", member["id"])]
        ):
            await conn.execute(
                """INSERT INTO verifications (at, record_key, code_id, serial, brand_id, product_id,
                       result, reason, queries, pin_given, client_ip, client_id, user_agent,
                       province, city, lat, lng, member_id)
                   VALUES (now() - make_interval(hours => %s), gen_random_uuid(), %s, %s, %s, %s,
                           %s, %s, %s, true, %s, 'app-7', 'Mozilla/5.0 Probe', '浙江省', '杭州市',
                           30.27, 120.15, %s)""",
                (
                    3 - i,
                    code,
                    serial,
                    brand,
                    product_id,
                    "genuine" if i == 0 else "suspicious",
                    "first_query" if i == 0 else "over_threshold",
                    i + 1,
                    ip,
                    member_id,
                ),
            )
        alert = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, code_id, serial, message,
                                       details, dedup_key, occurrences)
                   VALUES (%s, %s, 'repeat', 'critical', %s, %s, %s, %s, %s, 2) RETURNING id""",
                (
                    brand,
                    brand,
                    code,
                    serial,
                    f"repeat: code {serial} (over_threshold)",
                    json.dumps({"reason": "over_threshold", "queries": 3, "province": "浙江省"}),
                    f"repeat:probe:{code}",
                ),
            )
        ).fetchone()
        await conn.commit()
    admin = await login("admin")
    note = f"Reseller called from {PHONE} (+86 {phone}); scans came from {CONSUMER_IP}"
    marked = await client.put(
        f"/alerts/{alert['id']}/verdict",
        headers=admin,
        json={"verdict": "true_positive", "note": note},
    )
    assert marked.status_code == 200, marked.text
    return {"serial": serial, "code": code, "alert": alert["id"], "phone": phone}


async def test_an_alert_pack_verifies_offline_and_fails_when_altered(
    client: Any, login: Any, demo: Any, app: Any, tmp_path: Path
) -> None:
    case = await _case(client, login, demo, app)
    admin = await login("admin")
    published = await client.get("/.well-known/tracecode-evidence-key")
    assert published.status_code == 200, published.text
    key = published.json()
    pem = await client.get("/.well-known/tracecode-evidence-key.pem")
    assert pem.text.strip() == key["public_key_pem"].strip()
    response = await client.post(
        f"/alerts/{case['alert']}/evidence", headers=admin, params={"reference": "PSB-2026-118"}
    )
    assert response.status_code == 200, response.text
    body = response.content
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    assert response.headers["x-evidence-sha256"] == hashlib.sha256(body).hexdigest()

    document = verify_pack.verify(body, key["public_key_pem"])
    assert document["key_id"] == key["key_id"]
    assert document["subject"] == {"type": "alert", "alert_id": case["alert"]}
    assert document["reference"] == "PSB-2026-118"
    assert document["code"]["serial"] == case["serial"]
    assert document["code"]["code_id"] == str(case["code"])  # beyond 2^53: a string
    assert document["product"]["product_no"] == "LM-SC-30"
    assert document["alert"]["rule"] == "over_threshold"
    assert document["alert"]["verdict"]["verdict"] == "true_positive"
    assert document["alert"]["verdict"]["decided_by"]["username"] == "admin"
    assert [e["biz_step"] for e in document["trace"]["events"]] == ["commissioning"]
    records = document["verifications"]
    assert records["total"] == records["included"] == 3
    assert [r["queries"] for r in records["records"]] == [1, 2, 3]

    # PII: masked addresses and phones, equal refs for the same address, no GPS
    text = body.decode()
    assert CONSUMER_IP not in text and PHONE not in text and case["phone"] not in text
    assert "115.238.*.*" in text and "138****5678" in text
    first, second, third = (r["client"] for r in records["records"])
    assert first["ip"] == "115.238.*.*" and first["ip_ref"] == second["ip_ref"] != third["ip_ref"]
    assert third["ip"] == "2408:8400:0001:*"
    assert (
        records["records"][2]["member"]["phone"] == case["phone"][:3] + "****" + case["phone"][-4:]
    )
    assert "30.27" not in text and all(r["gps_given"] for r in records["records"])

    audited = await audit_rows(app, "alert", case["alert"], "evidence_pack")
    assert audited[-1]["after"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert audited[-1]["after"]["pack_id"] == document["pack_id"]

    _verified_by_independent_paths(tmp_path, body, key["public_key_pem"])
    _tampering_fails(body, key["public_key_pem"])


def _verified_by_independent_paths(tmp_path: Path, body: bytes, pem: str) -> None:
    """The standalone script, copied away from the checkout, in fresh processes given only the
    pack and the PEM: with pycryptodome, and with the RFC 8032 reference code (no library);
    then OpenSSL, when it is installed, on the canonical bytes without the signature."""
    script = tmp_path / "verify_pack.py"
    shutil.copy(SCRIPT, script)
    (tmp_path / "pack.json").write_bytes(body)
    (tmp_path / "key.pem").write_text(pem)
    for extra in ([], ["--pure"]):
        run = subprocess.run(
            [sys.executable, "-I", str(script), *extra, "pack.json", "key.pem"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.startswith("VALID")
    if shutil.which("openssl") is None:
        return
    document = json.loads(body)
    signature = document.pop("signature")
    (tmp_path / "msg.bin").write_bytes(canonical(document))
    raw = signature["value"] + "=" * (-len(signature["value"]) % 4)
    import base64

    (tmp_path / "sig.bin").write_bytes(base64.urlsafe_b64decode(raw))
    openssl = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin",
         "-in", "msg.bin", "-sigfile", "sig.bin"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert openssl.returncode == 0 and "Signature Verified Successfully" in openssl.stdout


def _tampering_fails(body: bytes, pem: str) -> None:
    """One byte changed, a member moved, the document re-encoded, a value changed and the
    document made canonical again, another key: each refused."""
    at = body.index(b'"queries":2')
    one_byte = body[: at + 10] + b"7" + body[at + 11 :]
    document = json.loads(body)
    reordered = json.dumps(dict(reversed(list(document.items()))), ensure_ascii=False,
                           separators=(",", ":")).encode()  # fmt: skip
    pretty = json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True).encode()
    changed = json.loads(body)
    changed["alert"]["verdict"]["verdict"] = "false_positive"
    recanonical = canonical(changed)
    for bad, why in (
        (one_byte, "signature"),
        (body + b"\n", "canonical"),
        (reordered, "canonical"),
        (pretty, "canonical"),
        (recanonical, "signature"),
    ):
        with pytest.raises(verify_pack.Invalid, match=why):
            verify_pack.verify(bad, pem)
        with pytest.raises(verify_pack.Invalid, match=why):
            verify_pack.verify(bad, pem, pure=True)
    # another key: refused by its id; and a pack re-signed by it under the real id fails
    other = EvidenceKey(hashlib.sha256(b"an impostor").digest())
    with pytest.raises(verify_pack.Invalid, match="signed by key"):
        verify_pack.verify(body, other.public_pem)
    forged = json.loads(body)
    forged["alert"]["verdict"]["note"] = "nothing to see"
    resigned = other.sign(forged)
    resigned["signature"]["key_id"] = forged["key_id"]
    with pytest.raises(verify_pack.Invalid, match="signature"):
        verify_pack.verify(canonical(resigned), pem)
    duplicate = body.replace(b'"format":"tracecode', b'"format":"x","format":"tracecode', 1)
    assert duplicate != body
    with pytest.raises(verify_pack.Invalid, match="twice"):
        verify_pack.verify(duplicate, pem)


async def test_a_code_pack_holds_its_alerts_and_scopes_like_its_trace(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    case = await _case(client, login, demo, app)
    admin = await login("admin")
    key = evidence_key(app.state.settings).public_pem
    response = await client.post(f"/codes/{case['serial'].lower()}/evidence", headers=admin)
    assert response.status_code == 200, response.text
    document = verify_pack.verify(response.content, key)
    assert document["subject"] == {"type": "code", "code": case["serial"]}
    assert [a["id"] for a in document["alerts"]] == [case["alert"]]
    assert document["alerts"][0]["verdict_history"][0]["note"].startswith(
        "Reseller called from 138"
    )
    assert document["verifications"]["total"] == 3
    assert document["verifications"]["window"] is None  # a code's records: all of them

    # the house's 404 outside the alert's subtree and for another brand; the trace's answers
    _, other_brand = await onboarded_brand(client, login)
    for headers in (await login("agent_admin"), await login("gd_admin"), other_brand):
        assert_error(await client.post(f"/alerts/{case['alert']}/evidence", headers=headers), 404)
    assert_error(
        await client.post(f"/codes/{case['serial']}/evidence", headers=other_brand),
        404,
        "unknown_code",
    )
    assert_error(
        await client.post(f"/codes/{case['serial']}/evidence", headers=await login("gd_admin")),
        404,
        "unknown_code",
    )


async def test_bad_evidence_requests_are_4xx_with_stable_codes(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin = await login("admin")
    assert_error(await client.post("/codes/NOT-A-SERIAL!/evidence", headers=admin), 400)
    forged = "7" * 20
    assert_error(await client.post(f"/codes/{forged}/evidence", headers=admin), 422, "not_genuine")
    assert_error(await client.post("/alerts/999999999/evidence", headers=admin), 404, "not_found")
    case = await _case(client, login, demo, app)
    too_long = {"reference": "x" * 201}
    assert_error(
        await client.post(f"/alerts/{case['alert']}/evidence", headers=admin, params=too_long),
        400,
        "validation_failed",
    )
    for blank in (" ", "\u200b", "\u3000\u3000", "\u00ad\ufe0f"):  # a probe: shown as nothing
        assert_error(
            await client.post(
                f"/alerts/{case['alert']}/evidence", headers=admin, params={"reference": blank}
            ),
            400,
            "validation_failed",
        )
    assert_error(
        await client.post(f"/alerts/{case['alert']}/evidence", headers=await login("operator")),
        403,
        "permission_denied",
    )
    assert_error(await client.post(f"/alerts/{case['alert']}/evidence"), 401)


async def test_a_forged_serials_alert_packs_its_scans_without_a_trace(
    client: Any, login: Any, app: Any
) -> None:
    """A ``fake`` alert of a serial of no unit (``code_id`` null, the serial in its details):
    its pack holds that serial's records, no trace, no product; one serial, it is the code."""
    serial = "F" + secrets.token_hex(8).upper()[:19]
    made, admin = await onboarded_brand(client, login)  # its own brand: all its forged records
    brand = made["id"]
    async with app.state.pool.connection() as conn:
        await conn.execute(
            """INSERT INTO verifications (at, record_key, serial, brand_id, result, reason,
                   client_ip)
               VALUES (now(), gen_random_uuid(), %s, %s, 'not_genuine', 'forged', %s)""",
            (serial, brand, CONSUMER_IP),
        )
        alert = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, serial, message, details,
                                       dedup_key)
                   VALUES (%s, %s, 'fake', 'warning', %s, 'fake: forged codes', %s, %s)
                   RETURNING id""",
                (brand, brand, serial, json.dumps({"reason": "forged", "serial": serial}),
                 f"fake:forged:probe:{serial}"),
            )
        ).fetchone()  # fmt: skip
        await conn.commit()
    response = await client.post(f"/alerts/{alert['id']}/evidence", headers=admin)
    assert response.status_code == 200, response.text
    document = verify_pack.verify(response.content, evidence_key(app.state.settings).public_pem)
    assert document["trace"] is None and document["product"] is None
    [record] = document["verifications"]["records"]
    assert record["client"]["ip"] == "115.238.*.*" and record["serial"] == serial
    assert document["code"]["serial"] == serial


# -- review fixes ------------------------------------------------------------------------------

# A pack signed before the evidence key moved to ``app.signing`` (the master key 00…07)
KAT_MASTER_KEY = "00" * 31 + "07"
KAT_KEY_ID = "tcev-9e08f1853f76fa83"
KAT_PUBLIC = "6d1816bc2bbb04ecbf7e3b46eb3d00a8851921d3c4ba12934846bdc5423d67c7"
KAT_PACK = (
    b'{"format":"tracecode-evidence-pack/1","key_id":"tcev-9e08f1853f76fa83","pack_id":'
    b'"00000000-0000-4000-8000-000000000001","signature":{"alg":"Ed25519","key_id":'
    b'"tcev-9e08f1853f76fa83","value":"bwS1UAU-Z6nWwZbhXWCTYO25GD81O0fZKIo-_jO6vHqUnx8iQr3eoF2k'
    b'4aAqG-FSPjLmFW7iZQcHfKk2iJwWCg"},"subject":{"code":"KAT","type":"code"}}'
)


def test_a_pack_signed_before_the_shared_key_helper_still_verifies() -> None:
    """A review: the evidence packs and the chain's anchors each derived their Ed25519 key with
    their own copy of the code. Both use ``app.signing`` now — the packs with the same seed
    (``evidence-signing/ed25519/v1``) and the same key id (``tcev-`` + 16 hex digits), so a pack
    signed before verifies under the same key id, and signing it again gives the same bytes."""
    from app.config import Settings
    from app.signing import ed25519_key

    fixed = Settings(master_key=KAT_MASTER_KEY)
    key = evidence_key(fixed)
    shared = ed25519_key(fixed, "evidence-signing/ed25519/v1")
    assert key.public_raw == shared.public_raw and key.public_raw.hex() == KAT_PUBLIC
    assert key.key_id == shared.key_id("tcev-") == verify_pack.key_id(key.public_raw) == KAT_KEY_ID
    assert key.published()["jwk"]["kid"] == KAT_KEY_ID
    for pure in (False, True):
        document = verify_pack.verify(KAT_PACK, key.public_pem, pure=pure)
        assert document["key_id"] == KAT_KEY_ID
    unsigned = json.loads(KAT_PACK)
    del unsigned["signature"]
    assert canonical(key.sign(unsigned)) == KAT_PACK  # Ed25519 is deterministic


def test_every_number_the_signer_writes_the_verifier_reads_back(settings: Any) -> None:
    """A probe: a whole double of 2^53 or more (``1e16``) is written in digits, as RFC 8785
    writes it, and the shipped verifier refused those digits ("an integer beyond 2^53 is not
    canonical"): a pack the server signed did not verify. Digits a double does not write so
    (2^53 + 1, or 10^21, which RFC 8785 writes ``1e+21``) stay refused."""
    from app.triage.signing import FORMAT

    key = evidence_key(settings)
    for value in (1e16, -(2.0**60), 9007199254740992.0, 1e20, 1e21, 123.5):
        document = {"format": FORMAT, "key_id": key.key_id, "alert": {"details": {"n": value}}}
        body = canonical(key.sign(document))
        for pure in (False, True):
            read = verify_pack.verify(body, key.public_pem, pure=pure)
            assert float(read["alert"]["details"]["n"]) == value
    for digits in ("9007199254740993", "1000000000000000000000"):
        with pytest.raises(verify_pack.Invalid, match="beyond 2"):
            verify_pack.jcs(json.loads(digits))


def test_a_key_file_that_is_no_base64_is_invalid_not_a_traceback(settings: Any) -> None:
    """A probe: a PEM whose body is not base64 raised binascii.Error out of the verifier. A
    key copied with blanks at its lines' ends or CRLF line ends still reads (a review)."""
    for pem in ("-----BEGIN PUBLIC KEY-----\n@@@@\n-----END PUBLIC KEY-----", "%%%"):
        with pytest.raises(verify_pack.Invalid):
            verify_pack.public_key_bytes(pem)
    key = evidence_key(settings)
    copied = "\r\n".join(line + " \t" for line in key.public_pem.splitlines())
    assert verify_pack.public_key_bytes(copied) == key.public_raw


# RFC 8032 section 7.1, tests 1, 2 and 3: (public key, message, signature)
RFC8032_VECTORS = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]
_L = 2**252 + 27742317777372353535851937790883648493


def test_the_two_standalone_ed25519_verifiers_agree() -> None:
    """A review: the chain's verifier (``app/events/chainverify.py``) and the packs'
    (``app/triage/verify_pack.py``) each carry their own copy of RFC 8032's reference
    verification — they must stay standalone files. The copies agree, with each other and with
    pycryptodome, on RFC 8032's vectors and on their bent variants (a flipped bit of the message,
    of R, of S; S + L, a non-canonical S; another key; short inputs)."""
    from app.events import chainverify

    assert chainverify.ed25519_verify is not verify_pack.ed25519_verify_pure  # two copies
    for public, message, signature in RFC8032_VECTORS:
        pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
        s_plus_l = (int.from_bytes(sig[32:], "little") + _L).to_bytes(32, "little")
        other = bytes.fromhex(RFC8032_VECTORS[0][0] if pub != bytes.fromhex(
            RFC8032_VECTORS[0][0]) else RFC8032_VECTORS[1][0])  # fmt: skip
        cases = [
            (pub, msg, sig, True),
            (pub, msg + b"x", sig, False),
            (pub, msg, bytes([sig[0] ^ 1]) + sig[1:], False),
            (pub, msg, sig[:40] + bytes([sig[40] ^ 1]) + sig[41:], False),
            (pub, msg, sig[:32] + s_plus_l, False),
            (other, msg, sig, False),
            (pub[:31], msg, sig, False),
            (pub, msg, sig[:63], False),
        ]
        for key, text, signed, expected in cases:
            assert chainverify.ed25519_verify(key, text, signed) is expected
            assert verify_pack.ed25519_verify_pure(key, text, signed) is expected
            assert verify_pack.ed25519_verify(key, text, signed) is expected  # pycryptodome


async def test_a_forged_serials_pack_holds_the_scans_of_its_alerts_period_only(
    client: Any, login: Any, app: Any
) -> None:
    """A review: a forged serial's pack read the serial's records of the 366 days before its
    alert — found through ``(brand_id, at)`` alone, a year of the brand's verifications scanned
    for one pack. It reads the alert's own period now, from 7 days before it was raised (a
    record is counted when it is stored, after its scan) to when it was last triggered (a
    record after it was counted by no trigger of this alert), and names that ``window``."""
    serial = "F" + secrets.token_hex(8).upper()[:19]
    made, admin = await onboarded_brand(client, login)  # its own brand: all its forged records
    brand = made["id"]
    async with app.state.pool.connection() as conn:
        # days ago, and the n-th query (to tell them apart): the alert ran from -30 to -20 days
        for days, n in ((60, 1), (36, 2), (25, 3), (14, 4), (12, 5)):
            await conn.execute(
                """INSERT INTO verifications (at, record_key, serial, brand_id, result, reason,
                       queries, client_ip)
                   VALUES (now() - make_interval(days => %s), gen_random_uuid(), %s, %s,
                           'not_genuine', 'forged', %s, %s)""",
                (days, serial, brand, n, CONSUMER_IP),
            )
        alert = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, serial, message, details,
                                       dedup_key, at, last_at)
                   VALUES (%s, %s, 'fake', 'warning', %s, 'fake: forged codes', %s, %s,
                           now() - interval '30 days', now() - interval '20 days')
                   RETURNING id, at, last_at""",
                (brand, brand, serial, json.dumps({"reason": "forged", "serial": serial}),
                 f"fake:forged:window:{serial}"),
            )
        ).fetchone()  # fmt: skip
        await conn.commit()
    response = await client.post(f"/alerts/{alert['id']}/evidence", headers=admin)
    assert response.status_code == 200, response.text
    document = verify_pack.verify(response.content, evidence_key(app.state.settings).public_pem)
    records = document["verifications"]
    assert [r["queries"] for r in records["records"]] == [2, 3]
    assert records["total"] == records["included"] == 2
    from datetime import UTC, timedelta

    def utc(moment: Any) -> str:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

    assert records["window"] == {
        "from": utc(alert["at"] - timedelta(days=7)),
        "to": utc(alert["last_at"]),
    }


def _signed_pack(settings: Any) -> tuple[bytes, EvidenceKey]:
    from app.triage.signing import FORMAT

    key = evidence_key(settings)
    document = {
        "format": FORMAT,
        "key_id": key.key_id,
        "pack_id": "probe",
        "alert": {"verdict": {"verdict": "true_positive", "note": "checked"}},
    }
    return canonical(key.sign(document)), key


def _with_signature(body: bytes, **members: Any) -> bytes:
    document = json.loads(body)
    document["signature"].update(members)
    altered = canonical(document)
    assert altered != body
    return altered


def test_a_member_added_to_the_signature_is_invalid(settings: Any) -> None:
    """A probe: the (unsigned) signature object took another member — ``"court_note": …`` — and
    the file, made canonical again, verified VALID: a third party could add text to a pack."""
    body, key = _signed_pack(settings)
    verify_pack.verify(body, key.public_pem)
    altered = _with_signature(body, court_note="authenticated by the Hangzhou PSB")
    for pure in (False, True):
        with pytest.raises(verify_pack.Invalid, match="exactly"):
            verify_pack.verify(altered, key.public_pem, pure=pure)


def test_only_the_canonical_spelling_of_the_signature_and_key_verifies(settings: Any) -> None:
    """A probe: the signature value decoded leniently — ``==`` appended, the standard alphabet's
    ``+``/``/``, a character outside the alphabet inserted, other unused low bits — so other
    files of the same 64 bytes (another SHA-256, the audited one no longer naming the pack
    issued) verified VALID. The base64url public key is read as strictly."""
    body, key = _signed_pack(settings)
    value = json.loads(body)["signature"]["value"]
    assert len(value) == 86
    variants = {
        value + "==",
        value + "=",
        value[:10] + "!" + value[10:],
        value[:10] + " " + value[10:],
        value.replace("-", "+").replace("_", "/"),
        value[:-1] + chr(ord(value[-1]) + 1),  # A Q g w: the last byte's 4 unused bits set
        value[:-1],
    }
    variants.discard(value)
    assert variants
    for variant in sorted(variants):
        altered = _with_signature(body, value=variant)
        with pytest.raises(verify_pack.Invalid):
            verify_pack.verify(altered, key.public_pem)
    raw = key.published()["public_key"]
    assert verify_pack.public_key_bytes(raw) == key.public_raw
    assert verify_pack.verify(body, raw)["key_id"] == key.key_id
    for spelled in (raw + "=", raw[:5] + "!" + raw[5:], raw.replace("-", "+").replace("_", "/")):
        if spelled != raw:
            with pytest.raises(verify_pack.Invalid):
                verify_pack.public_key_bytes(spelled)


def test_a_deeply_nested_file_is_invalid_not_a_traceback(settings: Any, tmp_path: Path) -> None:
    """A probe: 100,000 nested arrays raised RecursionError out of the verifier (json.loads; the
    recursive JCS writer is guarded alike) instead of answering ``INVALID: …``."""
    key = evidence_key(settings)
    hostile = b'{"format":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for pure in (False, True):
        with pytest.raises(verify_pack.Invalid, match="nested"):
            verify_pack.verify(hostile, key.public_pem, pure=pure)
    (tmp_path / "pack.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (tmp_path / "key.pem").write_text(key.public_pem)
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "pack.json"), str(tmp_path / "key.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and run.stdout.startswith("INVALID:"), run.stderr


# -- probes of the packs' contents and the verifier's command ---------------------------------


async def _forged_scan(conn: Any, brand: int, serial: str, n: int, reason: str = "forged") -> None:
    """A stored code-less verification of ``serial`` (the n-th query) and the alert it raises,
    as the flusher stores them (``app.verify.records``)."""
    from app.verify.records import ALERT, alert_of

    await conn.execute(
        """INSERT INTO verifications (at, record_key, serial, brand_id, result, reason, queries,
               client_ip)
           VALUES (now(), gen_random_uuid(), %s, %s, 'not_genuine', %s, %s, %s)""",
        (serial, brand, reason, n, CONSUMER_IP),
    )
    await conn.execute(ALERT, alert_of(None, serial, brand, "not_genuine", reason, n, None, None))


async def test_a_forged_serials_alert_packs_the_scans_of_every_serial_it_counted(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: forged serials of one brand share ONE open alert (``fake:forged:brand:B``; its
    ``serial`` the first, its details the latest), and its pack named the first serial as the
    code but held only the latest serial's records, which named no serial: occurrences 2, one
    record, of another serial. The pack holds the records the alert counted — the brand's
    code-less ones of its reason since the previous alert of its key, each naming its serial —
    and names no one code for them."""
    made, admin = await onboarded_brand(client, login)
    brand = made["id"]
    first, latest, before = ("F" + secrets.token_hex(10).upper()[:19] for _ in range(3))
    async with app.state.pool.connection() as conn:
        await _forged_scan(conn, brand, before, 9)  # counted by an alert closed since
        await conn.execute(
            "UPDATE alerts SET acknowledged_at = now() WHERE brand_id = %s AND kind = 'fake'",
            (brand,),
        )
        await conn.commit()
        for n, serial in enumerate((first, latest), start=1):
            await _forged_scan(conn, brand, serial, n)
        await _forged_scan(conn, brand, latest, 5, reason="unknown")  # another rule's alert
        alert = await (
            await conn.execute(
                """SELECT id, serial, occurrences, details FROM alerts
                    WHERE brand_id = %s AND kind = 'fake' AND acknowledged_at IS NULL
                      AND details->>'reason' = 'forged'""",
                (brand,),
            )
        ).fetchone()
        await conn.commit()
    assert alert["occurrences"] == 2 and alert["serial"] == first
    assert alert["details"]["serial"] == latest
    response = await client.post(f"/alerts/{alert['id']}/evidence", headers=admin)
    assert response.status_code == 200, response.text
    document = verify_pack.verify(response.content, evidence_key(app.state.settings).public_pem)
    records = document["verifications"]
    assert [(r["queries"], r["serial"]) for r in records["records"]] == [(1, first), (2, latest)]
    assert records["total"] == records["included"] == 2
    assert document["code"] is None  # two serials: no one code claimed for them
    assert document["alert"]["serial"] == first and document["alert"]["occurrences"] == 2


async def _ten_packed_of_twelve(
    client: Any, login: Any, app: Any, demo: Any
) -> tuple[int, list[str]]:
    """Twelve units of a new batch, the first ten packed into an inner case on a line of their
    own: the batch and the twelve serials."""
    from tests.helpers import issue_cases
    from tests.test_packing import scan, serials, set_line, set_rules, upload

    batch_no, product_id = await issue_units(client, login, demo, 12)
    await set_rules(client, login, product_id, [])
    inner = await issue_cases(client, login, demo, "inner", 1)
    line = "ZE" + secrets.token_hex(2).upper()
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 12)
    await upload(client, login, line, [scan(s) for s in units[:10]] + [scan(inner[0])])
    return batch_no, units


async def test_a_relabelled_units_pack_holds_the_replaced_codes_alerts_and_scans(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a unit relabelled (``POST /packing/replace``) after a consumer scanned its first
    label and an alert was raised on it — the new serial's pack showed the old code's events in
    its trace (``via`` the old serial) but not the old code's alerts and scans, and the
    investigator holding the unit has only the new label. They are in it now, each naming the
    serial it belongs to."""
    batch_no, units = await _ten_packed_of_twelve(client, login, app, demo)
    old, new = units[3], units[10]
    old_code, brand = (batch_no << 32) | 3, demo["BRAND-LUMI"]
    async with app.state.pool.connection() as conn:
        alert = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, code_id, serial, message,
                                       details, dedup_key)
                   VALUES (%s, %s, 'repeat', 'critical', %s, NULL, 'repeat: over_threshold', %s,
                           %s) RETURNING id""",
                (brand, brand, old_code, json.dumps({"reason": "over_threshold"}),
                 f"repeat:relabel:{old_code}"),
            )
        ).fetchone()  # fmt: skip
        await conn.execute(
            """INSERT INTO verifications (at, record_key, code_id, brand_id, result, reason,
                   queries, pin_given)
               VALUES (now(), gen_random_uuid(), %s, %s, 'suspicious', 'over_threshold', 7, true)""",
            (old_code, brand),
        )
        await conn.commit()
    replaced = await client.post(
        "/packing/replace",
        headers=await login("operator"),
        json={"old": old, "new": new, "reason": "label torn"},
    )
    assert replaced.status_code == 200, replaced.text
    admin, pem = await login("admin"), evidence_key(app.state.settings).public_pem
    response = await client.post(f"/codes/{new}/evidence", headers=admin)
    assert response.status_code == 200, response.text
    document = verify_pack.verify(response.content, pem)
    assert any(e.get("via") == old for e in document["trace"]["events"])
    assert [(a["id"], a["serial"]) for a in document["alerts"]] == [(alert["id"], old)]
    records = document["verifications"]["records"]
    assert [(r["queries"], r["serial"]) for r in records] == [(7, old)]
    assert document["code"]["serial"] == new


async def test_one_forged_serial_in_several_spellings_is_one_code(
    client: Any, login: Any, app: Any
) -> None:
    """A review: a forged serial scanned as printed, typed in lower case and with the Crockford
    look-alikes (O for 0, I for 1) and a hyphen counted as three serials, and the pack's
    ``code`` was null. The scheme reads them as one serial (``Scheme.verify``): the pack names
    it, each record the spelling it was asked with."""
    made, admin = await onboarded_brand(client, login)
    brand = made["id"]
    serial = "F01" + secrets.token_hex(10).upper()[:17]
    spellings = [serial, serial.lower(), "FOI-" + serial[3:]]
    async with app.state.pool.connection() as conn:
        for n, spelling in enumerate(spellings, start=1):
            await _forged_scan(conn, brand, spelling, n)
        await _forged_scan(conn, brand, "F" + secrets.token_hex(10).upper()[:19], 4, "unknown")
        alert = await (
            await conn.execute(
                """SELECT id FROM alerts WHERE brand_id = %s AND details->>'reason' = 'forged'
                      AND acknowledged_at IS NULL""",
                (brand,),
            )
        ).fetchone()
        await conn.commit()
    response = await client.post(f"/alerts/{alert['id']}/evidence", headers=admin)
    assert response.status_code == 200, response.text
    document = verify_pack.verify(response.content, evidence_key(app.state.settings).public_pem)
    assert [r["serial"] for r in document["verifications"]["records"]] == spellings
    assert document["code"] is not None and document["code"]["serial"] == serial


async def test_a_relabelled_units_pack_holds_its_old_labels_scans_after_the_replacement(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A review (a choice, documented): A relabelled as B, then B as C. The trace stops at each
    replacement, but C's pack holds every record of A and B, the scans of A's torn or void
    label made AFTER it was replaced included: someone scanning a replaced label is a sign of
    label reuse, which an investigator wants to see. Each record names its serial."""
    batch_no, units = await _ten_packed_of_twelve(client, login, app, demo)
    a, b, c = units[3], units[10], units[11]
    brand, code = demo["BRAND-LUMI"], {a: (batch_no << 32) | 3, b: (batch_no << 32) | 10}

    async def record(serial: str, n: int, reason: str = "first_query") -> None:
        async with app.state.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO verifications (at, record_key, code_id, brand_id, result, reason,
                       queries, pin_given)
                   VALUES (now(), gen_random_uuid(), %s, %s, 'genuine', %s, %s, true)""",
                (code[serial], brand, reason, n),
            )
            await conn.commit()

    operator = await login("operator")
    await record(a, 1)
    for old, new in ((a, b), (b, c)):
        got = await client.post(
            "/packing/replace", headers=operator, json={"old": old, "new": new, "reason": "torn"}
        )
        assert got.status_code == 200, got.text
        if old == a:
            await record(a, 99, "void")  # the old label scanned after its replacement
            await record(b, 2)
    pack = await client.post(f"/codes/{c}/evidence", headers=await login("admin"))
    assert pack.status_code == 200, pack.text
    document = verify_pack.verify(pack.content, evidence_key(app.state.settings).public_pem)
    records = [(r["queries"], r["serial"]) for r in document["verifications"]["records"]]
    assert sorted(records) == [(1, a), (2, b), (99, a)], records


def test_an_unreadable_or_binary_key_or_pack_is_an_answer_not_a_traceback(
    settings: Any, tmp_path: Path
) -> None:
    """A probe: a recipient saved the key as DER (binary), or named a file that is not there,
    and the verifier's command died with a UnicodeDecodeError or FileNotFoundError traceback.
    A pack that is no text is ``INVALID: …`` (exit 1); a file that cannot be read, or a key
    file that is no text, is a usage error (exit 2, one line): a wrong key file says nothing of
    the pack, and ``INVALID`` would tell a court the pack failed."""
    import base64

    body, key = _signed_pack(settings)
    (tmp_path / "pack.json").write_bytes(body)
    (tmp_path / "key.pem").write_text(key.public_pem)
    der = base64.b64decode("".join(key.public_pem.splitlines()[1:-1]))
    assert der.startswith(verify_pack.SPKI_PREFIX)
    (tmp_path / "key.der").write_bytes(der[:12] + b"\xff" + der[13:])  # surely no UTF-8
    # a review: a key saved by Notepad (a UTF-8 BOM) and a key of another kind were INVALID
    (tmp_path / "bom.pem").write_bytes(b"\xef\xbb\xbf" + key.public_pem.encode())
    rsa = base64.b64encode(b"\x30\x82" + bytes(40)).decode()  # a PEM of no Ed25519 key
    (tmp_path / "rsa.pem").write_text(
        f"-----BEGIN PUBLIC KEY-----\n{rsa}\n-----END PUBLIC KEY-----\n"
    )
    expected = [
        (["pack.json", "key.pem"], 0, "VALID"),
        (["pack.json", "bom.pem"], 0, "VALID"),
        (["pack.json", "key.der"], 2, "verify_pack.py: key.der is no Ed25519 public key: no text"),
        (["pack.json", "rsa.pem"], 2, "verify_pack.py: rsa.pem is no Ed25519 public key: the PEM"),
        (["pack.json", "pack.json"], 2, "verify_pack.py: pack.json is no Ed25519 public key"),
        (["key.der", "key.pem"], 1, "INVALID: not UTF-8 JSON"),
        (["missing.json", "key.pem"], 2, "verify_pack.py: cannot read missing.json"),
        (["pack.json", "missing.pem"], 2, "verify_pack.py: cannot read missing.pem"),
        (["pack.json", "."], 2, "verify_pack.py: cannot read ."),
    ]
    for args, code, answer in expected:
        run = subprocess.run(
            [sys.executable, "-I", str(SCRIPT), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = (run.stdout + run.stderr).strip()
        assert run.returncode == code and "Traceback" not in said, (args, said)
        assert said.startswith(answer) and len(said.splitlines()) == 1, (args, said)
        assert (run.stderr if code == 2 else run.stdout).strip() == said, (args, said)


# -- probes of what a pack holds below the brand, its masking, its alerts, the verifier's lines -


async def _plain_alert(app: Any, brand: int, org: int, code: int | None = None) -> int:
    """An open alert of ``org`` (on ``code``, or on none)."""
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, code_id, message,
                                       details, dedup_key)
                   VALUES (%s, %s, 'repeat', 'warning', %s, 'probe', %s, %s) RETURNING id""",
                (brand, org, code, json.dumps({"reason": "over_threshold"}),
                 f"probe:{secrets.token_hex(8)}"),
            )
        ).fetchone()  # fmt: skip
        await conn.commit()
    return int(row["id"])


async def test_below_the_brand_a_pack_holds_only_the_records_its_listing_shows(
    client: Any, login: Any, demo: Any, app: Any, monkeypatch: Any
) -> None:
    """A probe: the factory made a unit, the brand shipped it to AGENT-GD, consumers scanned it
    in Guangdong. ``GET /verifications`` shows the factory none of those scans (the unit is no
    more in its subtree), yet its code pack — and the pack of its own alert on the code — held
    all three. A pack below the brand holds, and counts, only what that listing shows."""
    from app.triage import evidence
    from tests.points_support import into_channel

    batch_no, product_id = await issue_units(client, login, demo, 2)
    serial = scheme_for_tests().serial(batch_no, 1)
    await activate(client, login, [serial], product_id)
    await into_channel(client, login, demo, [serial], agent="AGENT-GD")
    code, brand = (batch_no << 32) | 1, demo["BRAND-LUMI"]
    async with app.state.pool.connection() as conn:
        for n in (1, 2, 3):
            await conn.execute(
                """INSERT INTO verifications (at, record_key, code_id, serial, brand_id,
                       product_id, result, reason, queries, pin_given, client_ip, province, city)
                   VALUES (now() - make_interval(mins => %s), gen_random_uuid(), %s, %s, %s, %s,
                           'genuine', 'first_query', %s, true, %s, '广东省', '广州市')""",
                (10 - n, code, serial, brand, product_id, n, CONSUMER_IP),
            )
        await conn.commit()
    alert = await _plain_alert(app, brand, demo["FACTORY-SZ"], code)
    factory, agent = await login("factory_admin"), await login("gd_admin")
    pem = evidence_key(app.state.settings).public_pem
    for limit in (evidence.MAX_VERIFICATIONS, 0):  # 0: every total is counted apart
        monkeypatch.setattr(evidence, "MAX_VERIFICATIONS", limit)
        for headers, seen in ((factory, 0), (agent, 3)):
            listed = await client.get("/verifications", headers=headers, params={"serial": serial})
            assert listed.status_code == 200 and listed.json()["total"] == seen, listed.text
            pack = await client.post(f"/codes/{serial}/evidence", headers=headers)
            assert pack.status_code == 200, pack.text
            records = verify_pack.verify(pack.content, pem)["verifications"]
            assert (records["total"], records["included"]) == (seen, min(seen, limit)), records
        pack = await client.post(f"/alerts/{alert}/evidence", headers=factory)
        assert pack.status_code == 200, pack.text
        records = verify_pack.verify(pack.content, pem)["verifications"]
        assert (records["total"], records["records"]) == (0, []), records


async def test_phones_written_with_separators_and_addresses_ending_a_sentence_are_masked(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a note's phones written 3-4-4 (``138 1234 5678``, ``139-8765-4321``) or in
    full-width digits, and an IPv4 address followed by a sentence's full stop, reached the pack
    whole. They are masked now; longer runs of digits (an order number, a serial) are not."""
    admin = await login("admin")
    alert = await _plain_alert(app, demo["BRAND-LUMI"], demo["BRAND-LUMI"])
    note = (
        "Reseller: 138 1234 5678, backup 139-8765-4321, WeChat \uff11\uff13\uff17\uff11\uff12"
        "\uff13\uff14\uff15\uff16\uff17\uff18; orders 202613812345678 and 1381234567890; "
        "all 40 scans came from 115.238.77.201. Blocked."
    )
    marked = await client.put(
        f"/alerts/{alert}/verdict", headers=admin, json={"verdict": "true_positive", "note": note}
    )
    assert marked.status_code == 200, marked.text
    pack = await client.post(f"/alerts/{alert}/evidence", headers=admin)
    assert pack.status_code == 200, pack.text
    masked = json.loads(pack.content)["alert"]["verdict"]["note"]
    assert masked == (
        "Reseller: 138****5678, backup 139****4321, WeChat 137****5678; orders 202613812345678 "
        "and 1381234567890; all 40 scans came from 115.238.*.*. Blocked."
    ), masked


@pytest.mark.parametrize(
    "text",
    [
        "police case 2026-139-8765-4321",  # a grouped reference number
        "PO-138-1234-5678-01",  # an order line
        "ids 139-8765-4321-\uff10 and \uff12-138-1234-5678",  # full-width digits
        "2026-86-139-8765-4321",
    ],
)
def test_a_longer_number_written_in_groups_keeps_its_3_4_4_part(text: str) -> None:
    """A review probe: the 3-4-4 form had no guard against its separator going on: a digit and
    a dash before it, or a dash and a digit after it, continue a longer number joined by dashes
    (a case number, an order line), and its middle was masked as a phone."""
    from app.triage.evidence import _masked_text

    assert _masked_text(text) == text
    assert _masked_text(f"{text}; call 138 1234 5678.") == f"{text}; call 138****5678."


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("2026-03-01 139-8765-4321", "2026-03-01 139****4321"),  # a date, then the phone
        ("called at 13:00 138 1234 5678", "called at 13:00 138****5678"),  # a time
        ("tel 138 1234 5678 2 bottles", "tel 138****5678 2 bottles"),  # a count after it
        ("No. 3 139 8765 4321", "No. 3 139****4321"),
        ("lot 7 139 8765 4321", "lot 7 139****4321"),
        ("counts 100 150 1200 1300", "counts 100 150****1300"),  # a phone as far as one can tell
        ("\uff12 \uff11\uff13\uff18 1234 5678", "\uff12 138****5678"),  # full-width digits
        ("x 5 +86 138 1234 5678", "x 5 138****5678"),  # +86 masked with it, no "+" left over
        ("x 5-+86 139-8765-4321", "x 5-139****4321"),  # a "+" starts a number of its own
        ("Tel+86 138 1234 5678", "Tel138****5678"),
        ("2026-03-01 \uff0b86 13812345678", "2026-03-01 138****5678"),
    ],
)
def test_a_split_phone_next_to_a_number_and_a_space_is_masked(text: str, masked: str) -> None:
    """A review probe: the guard against a longer grouped number refused a 3-4-4 phone next to
    any digit and space too — a date, a time, a count before or after it — and the phone went
    into the pack whole (``x 5 +86 138 1234 5678`` became ``x 5 +138****5678``: the match began
    after the ``+86``'s ``+``). Only a dash-joined number continues it now; a ``+86`` is masked
    with the phone."""
    from app.triage.evidence import _masked_text

    assert _masked_text(text) == masked


async def test_the_reference_is_kept_as_given(client: Any, login: Any, demo: Any, app: Any) -> None:
    """A review probe: the pack's ``reference`` — the investigator's own case number, no
    consumer's data — went through the masking of free text: a case number written in groups was
    masked in the pack and in its audit row. It is kept as given."""
    admin = await login("admin")
    alert = await _plain_alert(app, demo["BRAND-LUMI"], demo["BRAND-LUMI"])
    reference = "PSB 138 1234 5678 / 139-8765-4321"
    pack = await client.post(
        f"/alerts/{alert}/evidence", headers=admin, params={"reference": reference}
    )
    assert pack.status_code == 200, pack.text
    assert json.loads(pack.content)["reference"] == reference
    audited = await audit_rows(app, "alert", alert, "evidence_pack")
    assert audited[-1]["after"]["reference"] == reference


async def test_a_code_pack_says_how_many_of_its_alerts_it_holds(
    client: Any, login: Any, demo: Any, app: Any, monkeypatch: Any
) -> None:
    """A probe: a code pack kept its earliest ``MAX_ALERTS`` alerts and said nothing of the
    others (its records say ``total`` and ``included``). ``alerts_total`` and
    ``alerts_included`` say it now."""
    from app.triage import evidence

    batch_no, product_id = await issue_units(client, login, demo, 2)
    serial = scheme_for_tests().serial(batch_no, 1)
    await activate(client, login, [serial], product_id)
    code, brand = (batch_no << 32) | 1, demo["BRAND-LUMI"]
    alerts = [await _plain_alert(app, brand, brand, code) for _ in range(3)]
    admin, pem = await login("admin"), evidence_key(app.state.settings).public_pem
    for limit, held in ((evidence.MAX_ALERTS, alerts), (2, alerts[:2])):
        monkeypatch.setattr(evidence, "MAX_ALERTS", limit)
        pack = await client.post(f"/codes/{serial}/evidence", headers=admin)
        assert pack.status_code == 200, pack.text
        document = verify_pack.verify(pack.content, pem)
        assert [a["id"] for a in document["alerts"]] == held
        assert (document["alerts_total"], document["alerts_included"]) == (3, len(held))


async def test_an_alert_pack_is_read_in_one_snapshot(
    client: Any, login: Any, demo: Any, app: Any, monkeypatch: Any
) -> None:
    """A review: an alert pack's reads (the alert, its verdicts, the trace, the records) each saw
    the database of their own moment, so a record stored meanwhile was in a pack whose other
    parts predate it. They are one snapshot: a record stored once the pack began is not in it."""
    from app.triage import evidence

    case = await _case(client, login, demo, app)
    traced = evidence._trace_or_none

    async def trace_then_a_scan(*args: Any) -> Any:
        async with app.state.pool.connection() as other:
            await other.execute(
                """INSERT INTO verifications (at, record_key, code_id, serial, brand_id, result,
                       reason, queries, pin_given)
                   VALUES (now(), gen_random_uuid(), %s, %s, %s, 'suspicious', 'over_threshold',
                           4, true)""",
                (case["code"], case["serial"], demo["BRAND-LUMI"]),
            )
            await other.commit()
        return await traced(*args)

    monkeypatch.setattr(evidence, "_trace_or_none", trace_then_a_scan)
    pack = await client.post(f"/alerts/{case['alert']}/evidence", headers=await login("admin"))
    assert pack.status_code == 200, pack.text
    records = json.loads(pack.content)["verifications"]
    assert [r["queries"] for r in records["records"]] == [1, 2, 3] and records["total"] == 3


def test_the_verifiers_lines_carry_no_terminal_control_characters(
    settings: Any, tmp_path: Path
) -> None:
    """A probe: a forged pack (signed with the forger's own key) whose ``key_id`` is a carriage
    return and ANSI escapes: the verifier printed it raw in its INVALID line, and on a terminal
    the line read ``VALID: …``. Every value it prints has its non-printing characters escaped,
    in an INVALID line and in a VALID one (a genuine pack whose ``pack_id`` holds them) alike."""
    from app.triage.signing import FORMAT

    real = evidence_key(settings)
    spoof = f"\r\x1b[2KVALID: pack 0f3c, signed by {real.key_id}\x1b[8m\n\u202e"
    forger = EvidenceKey(hashlib.sha256(b"a forger").digest())
    forged = forger.sign({"format": FORMAT, "key_id": spoof, "pack_id": "x"})
    forged["signature"]["key_id"] = spoof  # as the document's: refused for the key, not this
    genuine = real.sign({"format": FORMAT, "key_id": real.key_id, "pack_id": "\r\x1b[2Kp\x85"})
    (tmp_path / "key.pem").write_text(real.public_pem)
    for name, document, code, shown in (
        ("forged", forged, 1, "\\r\\x1b[2KVALID: pack 0f3c"),
        ("genuine", genuine, 0, "VALID: pack \\r\\x1b[2Kp\\x85 of"),
    ):
        (tmp_path / f"{name}.json").write_bytes(canonical(document))
        run = subprocess.run(
            [sys.executable, "-I", str(SCRIPT), f"{name}.json", "key.pem"],
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        said = run.stdout.decode()
        assert run.returncode == code, said
        assert said.startswith(("INVALID: ", "VALID: ")[code == 0]), said
        assert said.count("\n") == 1 and said.endswith("\n"), repr(said)
        assert said[:-1].isprintable() and shown in said, repr(said)
