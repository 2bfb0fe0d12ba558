"""Signed evidence packs (SPEC B6): one alert, or one code, as a document for the police, a
court or the brand's lawyers, verifiable offline with the pack and the public key alone.

What a pack holds (``format`` ``tracecode-evidence-pack/1``): who made it, when, for what
(``subject``; ``reference``: the caller's case number, optional, as given — never masked), the alert
with its verdicts (every one given, with its note, who and when), the code (serial, kind; none for
an alert counting several serials), its product, its verification records (time, the serial asked
with, result, reason, the n-th query, whether the PIN was given, the coarse location — province and
city the address was placed in —, the client; a code-less alert's — forged serials of one brand
share one alert per reason — those it counted: the brand's code-less records of its reason in its
period, the ``window`` named), its trace (``app.codes.trace``: every event, the containers it
travelled in) as the caller may see it, and for a code pack the alerts of the code (the earliest
``MAX_ALERTS``: ``alerts_total`` counts them all, ``alerts_included`` those held). A unit's pack
holds the alerts and records of the units it replaced too (P5), each naming its serial — an old
label's scans made after its replacement too, where the trace stops: a replaced label scanned again
is a sign of its reuse, which an investigator wants to see. The brand's staff notes are the
verdicts' notes.

A limit of a code-less alert's ``window``: it is by scan time, while an alert counts a record
when it is stored (``app.verify.records.ALERT``). A scan made before the previous alert of its
key was last triggered but stored after that alert was acknowledged (a flush backlog) opened or
bumped the next alert, yet is packed with the previous one. Nothing stored tells which alert
counted a record (no time of storing; ids are drawn before commit, in no commit order), and the
alert upsert is on the verification hot path: the window stays by scan time, and says so.

Consumers' data is masked, as it leaves the company (whoever asks): an IPv4 address keeps its
first two numbers (``115.238.*.*``), an IPv6 address its first three groups; a member's phone is
``138****1234`` (``app.members.mask``); GPS positions are left out (``gps_given`` says whether
one was sent). So that one client can still be followed through the records, each address,
client id and member has a ``*_ref``: a keyed pseudonym (HMAC-SHA256 under a key derived from
the master key, per brand), the same in every pack of the brand, that the brand can match to
the real value on a court's order and nobody else can invert. Staff below the brand get no
client data at all (null), as ``GET /verifications`` shows them none, and only the records that
list shows them (``app.verify.listing.SUBTREE``: the units of their subtree; a code-less record
is the brand's alone): a factory's pack of a unit shipped on to an agent holds none of its
scans. Phone numbers (``138 1234 5678``, ``139-8765-4321``, full-width digits alike) and IPv4
addresses written into free text (notes, details) are masked the same way, and the trace's
``member_id`` is left out.

The document is RFC 8785 canonical JSON (``app.triage.canonical``) signed with the
installation's Ed25519 key (``app.triage.signing``); the download is exactly those bytes.
Integers beyond 2^53 (unit code ids) are written as strings. Generating a pack is audited
(``evidence_pack``, with the pack id and the SHA-256 of the bytes handed out), never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from app import audit
from app.auth.principal import Principal
from app.codes.batches import serials_of
from app.codes.lookup import read_codes
from app.codes.scheme import (
    SERIAL_LENGTH,
    MalformedSerial,
    Scheme,
    crockford_decode,
    crockford_encode,
)
from app.codes.trace import replaced_units, trace
from app.config import Settings
from app.db import Conn
from app.errors import NotFound, Unprocessable, ValidationFailed
from app.members.mask import mask_phone
from app.triage.canonical import MAX_SAFE_INTEGER, canonical
from app.triage.signing import FORMAT, evidence_key
from app.triage.verdicts import verdicts_of, visible_alert
from app.verify.listing import SUBTREE

MAX_VERIFICATIONS = 5000  # the earliest ones; ``verifications.total`` counts them all
# A code-less alert's records (no code id to find them by): those of the alert's own period,
# from this long before it was raised (a record is counted when stored) to its last trigger
SERIAL_MARGIN = timedelta(days=7)
MAX_ALERTS = 200  # of a code pack, the earliest ones; ``alerts_total`` counts them all
MAX_SERIAL_TEXT = 64  # the longest text the scheme reads as a serial (hyphens in it)
PSEUDONYMS = "evidence-pseudonyms/v1"
PRIVACY = (
    "Consumers' data is masked: IPv4 addresses keep their first two numbers, IPv6 addresses "
    "their first three groups; phone numbers keep their first three and last four digits; GPS "
    "positions are left out. *_ref values are keyed pseudonyms (HMAC-SHA256, per brand): equal "
    "refs are the same address, client or member."
)
# A mobile number in free text: 11 digits, ASCII or full-width, whole or written 3-4-4 with one
# separator (``138 1234 5678``, ``139-8765-4321``), ``+86`` before it or not; never a part of a
# longer run of digits or letters (a serial, an order number) — nor, written 3-4-4, of a longer
# number joined by dashes: no digit and dash before it, no dash and digit after it (a review
# probe: ``2026-139-8765-4321``, ``PO-138-1234-5678-01`` were masked in their middle). A number
# next to it with a space only (a date, a time, a count: ``No. 3 139 8765 4321``) is masked: a
# phone shown is worse than a grouped number masked. ``+86`` starts a number whatever is before
# it, and is masked with it (never a ``+`` left before the masked number)
_DIGIT = "[0-9\uff10-\uff19]"
_ALNUM = "[0-9\uff10-\uff19A-Za-z]"
_PLUS = "[+\uff0b][8\uff18][6\uff16][- ]?"
_CC = "(?:[8\uff18][6\uff16][- ]?)?"
_FIRST = "[1\uff11][3-9\uff13-\uff19]"
_PHONE = re.compile(
    rf"(?:(?:{_PLUS}|(?<!{_ALNUM}){_CC})(?P<whole>{_FIRST}{_DIGIT}{{9}})"
    rf"|(?:{_PLUS}|(?<!{_ALNUM})(?<!{_DIGIT}-){_CC})(?P<split>{_FIRST}{_DIGIT}(?P<sep>[- ])"
    rf"{_DIGIT}{{4}}(?P=sep){_DIGIT}{{4}})(?!-{_DIGIT}))"
    rf"(?!{_ALNUM})"
)
_PLAIN = str.maketrans("".join(chr(0xFF10 + d) for d in range(10)), "0123456789", " -")
# an address at a sentence's end keeps its full stop: a dot and a digit would continue it
_IPV4 = re.compile(r"(?<![0-9.])(\d{1,3}\.\d{1,3})\.\d{1,3}\.\d{1,3}(?!\.?[0-9])")


@dataclass(frozen=True)
class Pack:
    body: bytes  # the canonical, signed document
    pack_id: str
    sha256: str
    filename: str


async def alert_pack(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    scheme: Scheme,
    alert_id: int,
    reference: str | None,
) -> Pack:
    """The evidence pack of an alert of the caller's subtree (else the house's 404)."""
    actor.require("alerts.read", "orgs.read")
    await _snapshot(conn)
    alert = await visible_alert(conn, actor, alert_id)
    label = alert["serial"]
    if alert["code_id"] is not None:
        label = (await serials_of(conn, scheme, [alert["code_id"]])).get(alert["code_id"], label)
    traced = await _trace_or_none(conn, actor, scheme, label) if label else None
    records = None
    if alert["code_id"] is not None:
        records = await _verifications(conn, actor, settings, {alert["code_id"]: label})
    elif alert["kind"] == "fake" and (alert["details"] or {}).get("reason"):
        records = await _verifications(conn, actor, settings, None, alert)  # forged serials'
    document = {
        "subject": {"type": "alert", "alert_id": alert_id},
        "alert": await _alert(conn, alert),
        "code": None if _several(alert, records) else _code(label, alert["code_id"], traced),
        "product": await _product(conn, traced),
        "verifications": records,
        "trace": _trace_json(traced),
    }
    return await _finish(conn, actor, settings, document, reference, ("alert", alert_id))


async def code_pack(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    scheme: Scheme,
    text: str,
    reference: str | None,
) -> Pack:
    """The evidence pack of a unit serial or a case's SSCC, as its trace answers it: 400
    ``malformed_code``, 422 ``not_genuine``, 404 ``unknown_code`` (not the brand's, or never in
    the caller's subtree). A unit's alerts and records are those of its code and of the codes
    it replaced (P5, ``replaced_units``: its trace follows them too), each naming its serial."""
    actor.require("alerts.read", "orgs.read")
    await _snapshot(conn)
    traced = await trace(conn, actor, scheme, text)
    read = (await read_codes(conn, scheme, actor.brand_id, [text]))[0]
    code = read.code if read.kind == "unit" else None
    codes: dict[int, str | None] = {}
    if code is not None:
        codes = {code: traced.code, **await replaced_units(conn, scheme, code)}
    rows, alerts_total = await _code_alerts(conn, actor, codes, traced.code)
    document = {
        "subject": {"type": "code", "code": traced.code},
        "alerts": [await _alert(conn, row, codes.get(row["code_id"])) for row in rows],
        "alerts_total": alerts_total,
        "alerts_included": len(rows),
        "code": _code(traced.code, code, traced),
        "product": await _product(conn, traced),
        "verifications": await _verifications(conn, actor, settings, codes) if codes else None,
        "trace": _trace_json(traced),
    }
    return await _finish(conn, actor, settings, document, reference, ("code", traced.code))


_CODE_ALERTS = """
  FROM alerts a JOIN orgs o ON o.id = a.org_id
 WHERE a.brand_id = %(brand)s AND o.path LIKE %(scope)s
   AND (a.code_id = ANY(%(codes)s) OR (a.code_id IS NULL AND a.serial = %(serial)s))"""


async def _code_alerts(
    conn: Conn, actor: Principal, codes: dict[int, str | None], serial: str
) -> tuple[list[Any], int]:
    """A code pack's alerts (those of ``codes``, or of a code-less ``serial``) of the caller's
    subtree: the earliest ``MAX_ALERTS``, and how many there are in all (``alerts_total``)."""
    params = {"brand": actor.brand_id, "scope": actor.org_path + "%", "codes": list(codes),
              "serial": serial, "limit": MAX_ALERTS}  # fmt: skip
    rows = await (
        await conn.execute(
            "SELECT a.*, o.path AS org_path, o.name AS org_name"
            f"{_CODE_ALERTS} ORDER BY a.at, a.id LIMIT %(limit)s",
            params,
        )
    ).fetchall()
    if len(rows) < MAX_ALERTS:
        return rows, len(rows)
    counted = await (await conn.execute(f"SELECT count(*) AS n{_CODE_ALERTS}", params)).fetchone()
    assert counted is not None  # a count has one row
    return rows, counted["n"]


async def _finish(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    content: dict[str, Any],
    reference: str | None,
    subject: tuple[str, object],
) -> Pack:
    """The header, the signature, the canonical bytes; the audit row."""
    key = evidence_key(settings)
    pack_id = str(uuid.uuid4())
    document = {
        "format": FORMAT,
        "key_id": key.key_id,
        "pack_id": pack_id,
        "generated_at": _utc(datetime.now(UTC)),
        "generated_by": await _who(conn, actor),
        "reference": reference or None,  # the caller's own case number: kept as given
        "privacy": PRIVACY,
        **content,
    }
    body = canonical(key.sign(_json_safe(document)))
    digest = hashlib.sha256(body).hexdigest()
    await conn.commit()  # the snapshot's end (read only): the audit row is the next transaction's
    await audit.record(
        conn,
        actor,
        "evidence_pack",
        subject[0],
        subject[1],
        after={"pack_id": pack_id, "key_id": key.key_id, "sha256": digest, "bytes": len(body),
               "reference": document["reference"]},
    )  # fmt: skip
    name = f"evidence-{subject[0]}-{subject[1]}-{pack_id[:8]}.json"
    return Pack(body=body, pack_id=pack_id, sha256=digest, filename=name)


async def _snapshot(conn: Conn) -> None:
    """The pack's reads in one snapshot (``REPEATABLE READ``, ``READ ONLY``): a verdict given or a
    record stored while a pack is made is in all of it or in none (at ``READ COMMITTED`` each read
    saw the database of its own moment, and a signed pack could contradict itself). ``SET
    TRANSACTION`` must come first in its transaction: the request's so far (the caller's look-up,
    reads) is committed before; ``_finish`` ends the snapshot before it writes the audit row."""
    await conn.commit()
    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


async def _who(conn: Conn, actor: Principal) -> dict[str, Any]:
    rows = await (
        await conn.execute(
            "SELECT id, name FROM orgs WHERE id = ANY(%s)", ([actor.org_id, actor.brand_id],)
        )
    ).fetchall()
    names = {row["id"]: row["name"] for row in rows}
    return {
        "user_id": actor.user_id,
        "username": actor.username,
        "api_key_id": actor.api_key_id,
        "org": {"id": actor.org_id, "name": names.get(actor.org_id)},
        "brand": {"id": actor.brand_id, "name": names.get(actor.brand_id)},
    }


async def _alert(conn: Conn, alert: Any, serial: str | None = None) -> dict[str, Any]:
    """An alert as a pack shows it, with every verdict given on it (the staff's notes);
    ``serial``: its code's (a code pack's alerts: the unit's or a unit it replaced), else the
    alert's own."""
    verdicts = await verdicts_of(conn, alert["id"])
    return {
        "id": alert["id"],
        "kind": alert["kind"],
        "rule": (alert["details"] or {}).get("reason"),
        "severity": alert["severity"],
        "message": _masked_text(alert["message"]),
        "details": _scrub(alert["details"] or {}),
        "serial": serial or alert["serial"],
        "org": {"id": alert["org_id"], "name": alert["org_name"]},
        "raised_at": _utc(alert["at"]),
        "last_at": _utc(alert["last_at"]),
        "occurrences": alert["occurrences"],
        "acknowledged_at": _utc(alert["acknowledged_at"]),
        "verdict": _verdict(verdicts[-1]) if verdicts else None,
        "verdict_history": [_verdict(v) for v in verdicts],
    }


def _verdict(verdict: Any) -> dict[str, Any]:
    return {
        "verdict": verdict.verdict,
        "note": _masked_text(verdict.note),
        "revision": verdict.revision,
        "decided_at": _utc(verdict.decided_at),
        "decided_by": {"user_id": verdict.decided_by, "username": verdict.decided_by_name},
        "api_key_id": verdict.decided_key,
    }


def _code(label: str | None, code: int | None, traced: Any) -> dict[str, Any] | None:
    if label is None and code is None:
        return None
    state = traced.state if traced is not None else None
    return {
        "serial": traced.code if traced is not None else label,
        "kind": traced.kind if traced is not None else None,
        "code_id": str(code) if code is not None else None,
        "status": state.status if state else None,
        "disposition": state.disposition if state else None,
        "lot": traced.lot if traced is not None else None,
    }


async def _product(conn: Conn, traced: Any) -> dict[str, Any] | None:
    if traced is None or traced.product is None:
        return None
    row = await (
        await conn.execute(
            "SELECT id, product_no, name, spec, gtin FROM products WHERE id = %s",
            (traced.product.id,),
        )
    ).fetchone()
    return dict(row) if row else None


async def _trace_or_none(conn: Conn, actor: Principal, scheme: Scheme, label: str) -> Any:
    """The code's trace as the caller sees it, or None: a forged or malformed serial, a code
    never in the caller's subtree."""
    try:
        return await trace(conn, actor, scheme, label)
    except (NotFound, Unprocessable, ValidationFailed):
        return None


def _trace_json(traced: Any) -> dict[str, Any] | None:
    """The trace's events and containers (its code, product and state are the pack's own
    members), without members and with free text masked."""
    if traced is None:
        return None
    plain = msgspec.to_builtins(traced)
    for event in plain["events"]:
        if event.get("details"):
            event["details"] = _scrub({k: v for k, v in event["details"].items()
                                       if k != "member_id"})  # fmt: skip
    return {
        "batch": plain["batch"],
        "state": plain["state"],
        "production_date": plain["production_date"],
        "containers": plain["containers"],
        "contents": plain["contents"],
        "events": plain["events"],
    }


_RECORDS = """
SELECT v.at, v.code_id, v.serial, v.result, v.reason, v.queries, v.pin_given, v.province, v.city,
       host(v.client_ip) AS ip, v.client_id, v.user_agent, v.lat IS NOT NULL AS gps_given,
       v.member_id, m.phone
  FROM verifications v LEFT JOIN members m ON m.id = v.member_id AND m.brand_id = v.brand_id
 WHERE v.brand_id = %(brand)s AND {where}
 ORDER BY v.at, v.id LIMIT %(limit)s
"""
# A code-less alert's records (forged serials of one brand share one alert per reason)
_CODELESS = """v.code_id IS NULL AND v.reason = %(reason)s
               AND v.at > %(since)s AND v.at <= %(until)s"""


async def _verifications(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    codes: dict[int, str | None] | None,
    alert: Any = None,
) -> dict[str, Any]:
    """The verification records of ``codes`` (code id → serial), or those a code-less alert
    counted (``_window``), the earliest ``MAX_VERIFICATIONS``, each with the serial it was asked
    with and the consumers' data masked (see the module's docstring). Below the brand, only
    those ``GET /verifications`` shows the caller (``app.verify.listing.SUBTREE``: the units of
    its subtree; a code-less record is the brand's alone), listed and counted alike."""
    window = await _window(conn, alert) if codes is None else None
    params = {
        "brand": actor.brand_id,
        "codes": list(codes or ()),
        "reason": (alert["details"] or {}).get("reason") if window else None,
        "since": window[0] if window else None,
        "until": window[1] if window else None,
        "limit": MAX_VERIFICATIONS,
    }
    where = _CODELESS if window else "v.code_id = ANY(%(codes)s)"
    brand_staff = actor.org_id == actor.brand_id
    if not brand_staff:
        where = f"({where}) AND {SUBTREE}"
        params["scope"] = actor.org_path + "%"
    rows = await (await conn.execute(_RECORDS.format(where=where), params)).fetchall()
    total = len(rows)
    if total == MAX_VERIFICATIONS:
        counted = await (
            await conn.execute(
                "SELECT count(*) AS n FROM verifications v "
                f"WHERE v.brand_id = %(brand)s AND {where}",
                params,
            )
        ).fetchone()
        assert counted is not None  # a count has one row
        total = counted["n"]
    pseudonym = _pseudonyms(settings, actor.brand_id)
    serials = codes or {}  # a code's records: its serial; the others: the serial asked with
    return {
        "total": total,
        "included": len(rows),
        "window": {"from": _utc(window[0]), "to": _utc(window[1])} if window else None,
        "records": [
            _record(
                row, serials.get(row["code_id"]) or row["serial"], brand_staff, actor, pseudonym
            )
            for row in rows
        ],
    }


async def _window(conn: Conn, alert: Any) -> tuple[datetime, datetime]:
    """The period of the records a code-less alert counted (found through ``(brand_id, at)``
    alone, so only those are read): up to when it was last triggered, after ``SERIAL_MARGIN``
    before it was raised (a record is stored, and counted, after its scan: a queue's delay, a
    backlog) but not up to the last trigger of the previous alert of its key, which counted
    those — by scan time: a scan stored late, after that alert was acknowledged, is packed with
    it though the next one counted it (the module's docstring)."""
    row = await (
        await conn.execute(
            """SELECT last_at FROM alerts WHERE dedup_key = %s AND id < %s
                ORDER BY id DESC LIMIT 1""",
            (alert["dedup_key"], alert["id"]),
        )
    ).fetchone()
    since = alert["at"] - SERIAL_MARGIN
    if row is not None and row["last_at"] > since:
        since = row["last_at"]
    return since, max(alert["at"], alert["last_at"])


def _several(alert: Any, records: dict[str, Any] | None) -> bool:
    """Whether a code-less alert counted the scans of more than one serial (forged serials of
    one brand share one alert: its ``serial`` the first, its details the latest): its pack names
    no one code, its records name their serials."""
    if alert["code_id"] is not None:
        return False
    named = {alert["serial"], (alert["details"] or {}).get("serial")}
    named |= {r["serial"] for r in (records or {}).get("records", ())}
    return len({_read_as(serial) for serial in named if serial is not None}) > 1


def _read_as(serial: str) -> str:
    """One spelling of a serial as the scheme reads it (``Scheme.verify``: 20 Crockford symbols
    in any case, O for 0, I and L for 1, hyphens ignored): ``abc…`` and ``ABC…`` are one forged
    serial scanned twice (a probe: two serials, the pack's ``code`` null). Other text (no
    serial's shape: a B2B request's, upper-cased already) is compared upper-cased."""
    if len(serial) <= MAX_SERIAL_TEXT and len(serial.replace("-", "")) == SERIAL_LENGTH:
        try:
            return crockford_encode(crockford_decode(serial))
        except MalformedSerial:
            pass
    return serial.upper()


def _record(
    row: Any, serial: str | None, brand_staff: bool, actor: Principal, ref: Any
) -> dict[str, Any]:
    client = None
    if brand_staff:
        client = {
            "ip": mask_ip(row["ip"]),
            "ip_ref": ref("ip", row["ip"]),
            "client_ref": ref("client", row["client_id"]),
            "user_agent": row["user_agent"],
        }
    member = None
    if brand_staff and row["member_id"] is not None and actor.has("members.read"):
        member = {"member_ref": ref("member", str(row["member_id"])),
                  "phone": mask_phone(row["phone"]) or None}  # fmt: skip
    return {
        "at": _utc(row["at"]),
        "serial": serial,
        "result": row["result"],
        "reason": row["reason"],
        "queries": row["queries"],
        "pin_given": row["pin_given"],
        "location": {"province": row["province"], "city": row["city"]},
        "gps_given": row["gps_given"],
        "client": client,
        "member": member,
    }


def _pseudonyms(settings: Settings, brand: int) -> Any:
    key = settings.subkey(PSEUDONYMS)

    def ref(kind: str, value: str | None) -> str | None:
        if value is None:
            return None
        mac = hmac.new(key, f"{brand}\x00{kind}\x00{value}".encode(), hashlib.sha256)
        return f"{kind}-{mac.hexdigest()[:16]}"

    return ref


def mask_ip(address: str | None) -> str | None:
    """``115.238.*.*`` for an IPv4 address, the first three groups and ``*`` for IPv6."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "*"
    if ip.version == 4:
        return ".".join(address.split(".")[:2]) + ".*.*"
    return ":".join(ip.exploded.split(":")[:3]) + ":*"


def _masked_text(text: str) -> str:
    """Free text with phone numbers (``138****1234``) and IPv4 addresses masked."""
    text = _PHONE.sub(lambda m: mask_phone((m["whole"] or m["split"]).translate(_PLAIN)), text)
    return _IPV4.sub(lambda m: m.group(1) + ".*.*", text)


def _scrub(value: Any) -> Any:
    """``value`` (JSON) with every string's phones and IPv4 addresses masked."""
    if isinstance(value, str):
        return _masked_text(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _json_safe(value: Any) -> Any:
    """``value`` with integers beyond 2^53 as strings (JCS numbers are doubles) and any
    remaining dates as ISO text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > MAX_SAFE_INTEGER else value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | float):
        return value
    return msgspec.to_builtins(value)


def _utc(moment: datetime | None) -> str | None:
    """A moment in UTC, ``2026-11-01T00:00:00.123456Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
