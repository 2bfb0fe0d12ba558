"""B2B verification for trade partners (SPEC B8), in the shape of the GS1 Lightweight Messaging
Standard for Verification of Product Identifiers (LMS; the US DSCSA VRS pattern).

A pharmacy chain's, wholesaler's or distributor's receiving system — an API key (or a user) of
an organisation of the brand's tree holding ``verify.b2b`` — asks, before it accepts goods,
whether a product identifier as printed (GTIN, serial, lot, expiry) is one the brand made and
whether the pack is still goods: ``verified`` true or false, and why. No PIN: a trade partner
never has one, so the answer is about the identifier and the unit's state, never "genuine" in
the consumer's sense.

The checks, in the standard's order (a GTIN and serial that do not match are not checked
further):

1. The GTIN is one of the brand's products — else ``No_match_GTIN``; a GTIN of another brand
   answers exactly so too (no leak across brands).
2. The serial, checked by the Rust core without the database (``app.codes.lookup.read_codes``:
   malformed, forged, of another brand or beyond its batch), was activated on a packing line
   (``unit_state``) as that GTIN's product — else ``No_match_GTIN_Serial``.
3. The lot recorded at commissioning, and the expiry the brand declared for that lot
   (``lms_lots``; none on record: not compared) — else ``No_match_GTIN_Serial_Lot``,
   ``_Expiry`` or ``_Lot_Expiry``.
4. The pack is still goods: its lot not recalled, the unit neither voided/replaced, destroyed
   nor sold into the market, nor brought back damaged or expired (a return no store sells on)
   — else ``Not_for_re-distribution`` with ``additionalInfo`` ``Recalled``, ``Decommissioned``,
   ``Destroyed``, ``Sold``, ``Damaged`` (returned damaged) or ``Expired`` (returned expired). A
   matching identifier past its declared expiry is verified with ``additionalInfo``
   ``Expired``.

Bad input (a GTIN's or GLN's check digit, a date that is none, a serial outside GS1 CSET 82) is
400 with a stable code and recorded nowhere; any identifier well formed is answered 200,
forged or not, and recorded (``lms_requests``) with the check that decided it, for the brand.
Consumer verification is never touched: no query count, no record, no alert.

``corrUUID`` makes a request idempotent per asking organisation: the same request again is
answered as the first time (its timestamp too), another one under the same id is 409
``corr_uuid_reused``; two sent at once are decided once (the unique index). Requests are limited
per caller (API key or user): ``lms_rate_limit`` a minute (429 ``rate_limited``); with Redis
unreachable the limit is skipped (logged).
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import msgspec
from litestar.datastructures import State
from psycopg.types.json import Jsonb

from app import audit, localtime
from app._core import Gs1Error, gs1_check_digit, normalize_gtin
from app.auth.principal import Principal
from app.b2b.schemas import (
    AdditionalInfo,
    FailureReason,
    LmsData,
    LmsRequestOut,
    LmsVerifyIn,
    LmsVerifyOut,
    LotIn,
    LotOut,
    ResponderIn,
    ResponderOut,
)
from app.codes.batches import load_batches
from app.codes.lookup import Read, read_codes
from app.codes.scheme import CSET82_1_20, Scheme
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, NotFound, TooManyRequests, ValidationFailed
from app.members.principal import brand_of_staff
from app.paging import Page, fetch_page
from app.redisconn import UNAVAILABLE, AnyRedis, script

log = logging.getLogger("tracecode.b2b")
_CSET82 = re.compile(CSET82_1_20)

PERMISSION = "verify.b2b"

# KEYS: the caller's counter of the minute. ARGV: max. Answers 0, or the seconds left when over.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 60) end
if n > tonumber(ARGV[1]) then return math.max(redis.call('TTL', KEYS[1]), 1) end
return 0
"""


class RateLimit:
    """The per-caller limit of B2B verifications (``lms_rate_limit`` a minute), on Redis."""

    def __init__(self, redis_client: AnyRedis, settings: Settings) -> None:
        self.redis = redis_client
        self.most = settings.lms_rate_limit
        self.ns = f"{settings.redis_namespace}:lms"
        self._count = script(redis_client, _COUNT)

    async def count(self, actor: Principal) -> None:
        """Count one request of the caller; 429 ``rate_limited`` over the limit."""
        who = f"k{actor.api_key_id}" if actor.api_key_id is not None else f"u{actor.user_id}"
        minute = int(time.time()) // 60
        try:
            retry = int(await self._count(keys=[f"{self.ns}:{who}:{minute}"], args=[self.most]))
        except UNAVAILABLE as exc:
            log.warning(
                "B2B verification limit skipped: Redis unavailable", extra={"error": str(exc)}
            )
            return
        if retry:
            raise TooManyRequests(
                "too many verifications; try again later",
                code="rate_limited",
                details={"retry_after": retry},
                headers={"Retry-After": str(retry)},
            )


def rate_limit(state: State) -> RateLimit:
    """The application's B2B limit (made on first use, over the application's Redis)."""
    limit: RateLimit | None = getattr(state, "lms_limit", None)
    if limit is None or limit.redis is not state.redis:
        limit = RateLimit(state.redis, state.settings)
        state.lms_limit = limit
    return limit


# ---------------------------------------------------------------------------------------------
# Reading the request


def parse_gtin(text: str) -> str:
    """A GTIN-8/12/13/14 as GTIN-14; 400 ``invalid_gtin`` on a wrong check digit or all zeros."""
    try:
        return normalize_gtin(text)
    except Gs1Error:
        raise ValidationFailed(
            "not a GTIN: wrong check digit", code="invalid_gtin", details={"gtin": text}
        ) from None


def parse_gln(text: str | None) -> str | None:
    """A GLN's 13 digits checked (400 ``invalid_gln``)."""
    if text is None:
        return None
    if int(text) == 0 or gs1_check_digit(text[:12]) != int(text[12]):
        raise ValidationFailed(
            "not a GLN: wrong check digit", code="invalid_gln", details={"requestorGLN": text}
        )
    return text


def parse_expiry(text: str) -> date:
    """``YYMMDD`` (AI 17: the century by GS1's sliding window, DD 00 the month's last day) or
    ``YYYY-MM-DD``; 400 ``invalid_expiration_date`` for a date that is none."""
    try:
        if len(text) == 6:
            yy, month, day = int(text[:2]), int(text[2:4]), int(text[4:])
            this = localtime.today().year
            century, now_yy = divmod(this, 100)
            year = (century * 100) + yy
            if yy - now_yy >= 51:  # GS1 General Specifications 7.12: 50 years back, 49 ahead
                year -= 100
            elif yy - now_yy <= -50:
                year += 100
            if day == 0 and 1 <= month <= 12:
                day = calendar.monthrange(year, month)[1]
            return date(year, month, day)
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            "not a date: expirationDate is YYMMDD or YYYY-MM-DD",
            code="invalid_expiration_date",
            details={"expirationDate": text},
        ) from None


@dataclass(frozen=True, slots=True)
class Request:
    """A request read: the identifier normalised (what is compared, fingerprinted, recorded)."""

    gtin: str
    serial: str
    lot: str
    expiry: date
    gln: str | None
    context: str

    def fingerprint(self) -> bytes:
        """SHA-256 of the request without its corrUUID (``app.idempotency``'s rule)."""
        plain = [self.gtin, self.serial, self.lot, self.expiry.isoformat(), self.gln, self.context]
        return hashlib.sha256(msgspec.json.encode(plain)).digest()


def head_answer(data: LmsVerifyIn) -> LmsVerifyOut:
    """What a HEAD of the GET answers (its body is dropped): a placeholder, nothing decided."""
    return LmsVerifyOut(
        verificationTimestamp=datetime.now(UTC).replace(microsecond=0),
        corrUUID=data.corrUUID or uuid.uuid4(),
        data=LmsData(verified=False),
    )


def read_request(data: LmsVerifyIn) -> Request:
    """The request checked and normalised: the GTIN as GTIN-14, the serial upper-cased (README:
    any case — a retry in another case is the same request, not 409 ``corr_uuid_reused``)."""
    return Request(
        gtin=parse_gtin(data.gtin),
        serial=data.serialNumber.upper(),
        lot=data.lotNumber,
        expiry=parse_expiry(data.expirationDate),
        gln=parse_gln(data.requestorGLN),
        context=data.context,
    )


# ---------------------------------------------------------------------------------------------
# Deciding


@dataclass(frozen=True, slots=True)
class Decision:
    verified: bool
    reason: FailureReason | None
    info: AdditionalInfo | None
    detail: str  # the check that decided it (``LmsRequestOut``)
    product_id: int | None = None
    code_id: int | None = None


_NO_SERIAL: FailureReason = "No_match_GTIN_Serial"
_NOT_GOODS: FailureReason = "Not_for_re-distribution"
# the unit's state when it is no goods: (recorded detail, additionalInfo)
_GONE: dict[str, tuple[str, AdditionalInfo]] = {
    "void": ("void", "Decommissioned"),
    "destroyed": ("destroyed", "Destroyed"),
    "sold": ("sold", "Sold"),
}
# a unit brought back damaged or expired (``active``, a disposition of
# ``app.logistics.movements.NOT_FOR_SALE``: no store sells it on, POST /sales is 409
# ``not_sellable``): (recorded detail, additionalInfo) — the standard's ``Expired``, and for a
# damaged pack ``Damaged`` of our own (its ``Suspect`` would set off a partner's suspect-product
# handling: README)
_SPOILT: dict[str, tuple[str, AdditionalInfo]] = {
    "damaged": ("returned_damaged", "Damaged"),
    "expired": ("returned_expired", "Expired"),
}


async def decide(conn: Conn, scheme: Scheme, brand_id: int, req: Request) -> Decision:
    """The answer to one request (module docstring, checks 1–4). Reads only: the product of the
    GTIN, the serial through the Rust core and its batch, the unit's state, the lot's data."""
    product = await (
        await conn.execute(
            """SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id
               WHERE p.gtin = %s AND split_part(o.path, '/', 2)::bigint = %s""",
            (req.gtin, brand_id),
        )
    ).fetchone()
    if product is None:  # unknown, or another brand's: one answer
        return Decision(False, "No_match_GTIN", None, "not_our_gtin")
    product_id = product["id"]
    serial = req.serial
    if len(serial) != 20 or not serial.isalnum():  # a GS1 serial, but none of this scheme
        return Decision(False, _NO_SERIAL, None, "malformed", product_id)
    read = (await read_codes(conn, scheme, brand_id, [serial]))[0]
    if read.kind != "unit" or read.reason not in (None, "void"):  # a void batch: its units' state
        detail = await _unmatched(conn, brand_id, read)
        return Decision(False, _NO_SERIAL, None, detail, product_id)
    unit = await (
        await conn.execute(
            """SELECT u.product_id, u.lot, u.status, u.disposition, l.expiry, l.recalled_at
               FROM unit_state u
               LEFT JOIN lms_lots l ON l.product_id = u.product_id AND l.lot = u.lot
               WHERE u.code = %s AND u.brand_id = %s""",
            (read.code, brand_id),
        )
    ).fetchone()
    if unit is None:  # printed, never commissioned: no product identifier on record
        return Decision(False, _NO_SERIAL, None, "not_activated", product_id, read.code)
    if unit["product_id"] != product_id:
        return Decision(False, _NO_SERIAL, None, "wrong_product", product_id, read.code)
    lot_ok = unit["lot"] == req.lot
    expiry_ok = unit["expiry"] is None or unit["expiry"] == req.expiry
    if not (lot_ok and expiry_ok):
        reason: FailureReason = "No_match_GTIN_Serial_Lot_Expiry"
        detail = "lot_expiry"
        if lot_ok:
            reason, detail = "No_match_GTIN_Serial_Expiry", "expiry"
        elif expiry_ok:
            reason, detail = "No_match_GTIN_Serial_Lot", "lot"
        return Decision(False, reason, None, detail, product_id, read.code)
    if unit["recalled_at"] is not None:
        return Decision(False, _NOT_GOODS, "Recalled", "recalled", product_id, read.code)
    status = "void" if read.reason == "void" else unit["status"]
    if status in _GONE:
        detail, info = _GONE[status]
        return Decision(False, _NOT_GOODS, info, detail, product_id, read.code)
    if status == "active" and unit["disposition"] in _SPOILT:
        detail, info = _SPOILT[unit["disposition"]]
        return Decision(False, _NOT_GOODS, info, detail, product_id, read.code)
    expired = unit["expiry"] is not None and unit["expiry"] < localtime.today()
    return Decision(True, None, "Expired" if expired else None, "matched", product_id, read.code)


async def _unmatched(conn: Conn, brand_id: int, read: Read) -> str:
    """The recorded detail of a serial that is no unit of the brand: ``malformed``, ``forged``
    — also another brand's genuine code, or one of no batch, logged exactly as a never-made one
    (``read_codes`` calls both ``unknown``: the brand's staff told another brand's codes from
    fakes) — or ``unknown``, past the size of a batch of the brand's own. A case's label (``00``
    and an SSCC) is no serial of the scheme: ``malformed``."""
    if read.kind != "unit" or read.reason == "malformed":
        return "malformed"
    if read.reason == "unknown":
        batch = (await load_batches(conn, [read.batch])).get(read.batch)
        if batch is not None and batch.brand_id == brand_id:
            return "unknown"
    return "forged"


# ---------------------------------------------------------------------------------------------
# Verifying: decide, record, answer


async def _responder_gln(conn: Conn, brand_id: int, lock: bool = False) -> str | None:
    sql = "SELECT gln FROM lms_responders WHERE brand_id = %s" + (" FOR UPDATE" if lock else "")
    row = await (await conn.execute(sql, (brand_id,))).fetchone()
    return row["gln"] if row else None


async def _replay(
    conn: Conn, actor: Principal, corr: uuid.UUID, fps: tuple[bytes, ...]
) -> LmsVerifyOut | None:
    """The first answer under ``corr`` of the caller's organisation, if any (409
    ``corr_uuid_reused`` when it was another request: its fingerprint is none of ``fps``)."""
    row = await (
        await conn.execute(
            "SELECT fingerprint, response FROM lms_requests WHERE org_id = %s AND corr_uuid = %s",
            (actor.org_id, corr),
        )
    ).fetchone()
    if row is None:
        return None
    if bytes(row["fingerprint"]) not in fps:
        raise Conflict(
            "this corrUUID was used for another verification",
            code="corr_uuid_reused",
            details={"corrUUID": str(corr)},
        )
    return msgspec.convert(row["response"], LmsVerifyOut)


async def verify(
    conn: Conn, actor: Principal, scheme: Scheme, limit: RateLimit | None, data: LmsVerifyIn
) -> LmsVerifyOut:
    """Verify one product identifier for a trade partner (module docstring) and record it."""
    actor.require(PERMISSION)
    req = read_request(data)
    if limit is not None:
        await limit.count(actor)
    brand_id = actor.brand_id
    corr = data.corrUUID or uuid.uuid4()
    fp = req.fingerprint()
    # and with the serial as sent: a request recorded before serials were upper-cased for the
    # fingerprint was fingerprinted so — its exact retry gets its first answer, not 409
    fps = (fp, replace(req, serial=data.serialNumber).fingerprint())
    if data.corrUUID is not None:
        replay = await _replay(conn, actor, corr, fps)
        if replay is not None:
            return replay
    decision = await decide(conn, scheme, brand_id, req)
    out = LmsVerifyOut(
        verificationTimestamp=datetime.now(UTC).replace(microsecond=0),
        corrUUID=corr,
        responderGLN=await _responder_gln(conn, brand_id),
        data=LmsData(
            verified=decision.verified,
            verificationFailureReason=decision.reason,
            additionalInfo=decision.info,
        ),
    )
    inserted = await (
        await conn.execute(
            """INSERT INTO lms_requests
                   (brand_id, org_id, api_key_id, user_id, corr_uuid, fingerprint, requestor_gln,
                    context, gtin, serial_number, lot_number, expiration_date, verified,
                    failure_reason, additional_info, detail, product_id, code_id, response)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (org_id, corr_uuid) DO NOTHING RETURNING id""",
            (
                brand_id,
                actor.org_id,
                actor.api_key_id,
                actor.user_id,
                corr,
                fp,
                req.gln,
                req.context,
                req.gtin,
                req.serial,
                req.lot,
                req.expiry,
                decision.verified,
                decision.reason,
                decision.info,
                decision.detail,
                decision.product_id,
                decision.code_id,
                Jsonb(msgspec.to_builtins(out)),
            ),
        )
    ).fetchone()
    if inserted is None:  # the same corrUUID committed meanwhile by a request sent at once
        replay = await _replay(conn, actor, corr, fps)
        assert replay is not None
        return replay
    return out


# ---------------------------------------------------------------------------------------------
# The brand's side: the requests asked, its lots' expiry and recall, its GLN


_REQUEST_COLUMNS = """r.id, r.created_at AS at, r.org_id, o.name AS org_name, r.api_key_id,
    r.user_id, r.requestor_gln, r.context, r.corr_uuid, r.gtin, r.serial_number, r.lot_number,
    r.expiration_date, r.verified, r.failure_reason, r.additional_info, r.product_id, r.detail"""


async def list_requests(
    conn: Conn,
    actor: Principal,
    *,
    verified: bool | None,
    reason: str | None,
    corr_uuid: uuid.UUID | None,
    gtin: str | None,
    page: int,
    per_page: int,
) -> Page[LmsRequestOut]:
    """The B2B verifications asked by the caller's subtree, newest first: the brand's staff see
    every partner's; a partner (``verify.b2b``) its subtree's — a wholesaler's key at its head
    office its branches' too, a branch's never the head office's. ``detail`` with
    ``reports.read`` only."""
    actor.require_any("reports.read", PERMISSION)
    where = ["r.brand_id = %(brand)s", "o.path LIKE %(prefix)s"]
    params: dict[str, Any] = {"brand": actor.brand_id, "prefix": actor.org_path + "%"}
    if verified is not None:
        where.append("r.verified = %(verified)s")
        params["verified"] = verified
    if reason is not None:
        where.append("r.failure_reason = %(reason)s")
        params["reason"] = reason
    if corr_uuid is not None:
        where.append("r.corr_uuid = %(corr)s")
        params["corr"] = corr_uuid
    if gtin is not None:
        where.append("r.gtin = %(gtin)s")
        params["gtin"] = parse_gtin(gtin)
    shows_detail = actor.has("reports.read")

    def make(row: dict[str, Any]) -> LmsRequestOut:
        if not shows_detail:
            row["detail"] = None
        return LmsRequestOut(**row)

    return await fetch_page(
        conn,
        columns=_REQUEST_COLUMNS,
        source="lms_requests r JOIN orgs o ON o.id = r.org_id",
        where=where,
        params=params,
        order="r.id DESC",
        page=page,
        per_page=per_page,
        make=make,
    )


_LOT_COLUMNS = """l.product_id, p.gtin, l.lot, l.expiry, l.recalled_at IS NOT NULL AS recalled,
    l.recalled_at, l.recall_note, l.updated_at"""


async def _brand_product(conn: Conn, actor: Principal, gtin: str) -> int:
    """The caller's brand's product of a GTIN (404 ``unknown_gtin`` for any other)."""
    row = await (
        await conn.execute(
            """SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id
               WHERE p.gtin = %s AND split_part(o.path, '/', 2)::bigint = %s""",
            (parse_gtin(gtin), actor.brand_id),
        )
    ).fetchone()
    if row is None:
        raise NotFound("no product of the brand has this GTIN", code="unknown_gtin")
    return int(row["id"])


def may_declare_lots(actor: Principal) -> None:
    """``catalog.write`` of the brand's own staff (403 ``brand_staff_only`` below the brand — a
    distributor's ERP key writing its own products recalled the brand's lots)."""
    brand_of_staff(actor, "catalog.write", "a lot's expiry and recall are declared")


async def put_lot(conn: Conn, actor: Principal, gtin: str, lot: str, data: LotIn) -> LotOut:
    """Declare a lot's expiry and recall (``may_declare_lots``: the brand's own master data);
    audited. Recalling keeps the first recall's time; ``recalled: false`` lifts it. The values
    the lot has (compared under its row lock): the lot as it is, nothing written or audited."""
    may_declare_lots(actor)
    if not _CSET82.match(lot):
        raise ValidationFailed(
            "a lot is 1 to 20 characters of GS1 CSET 82", code="invalid_lot", details={"lot": lot}
        )
    product_id = await _brand_product(conn, actor, gtin)
    expiry = parse_expiry(data.expirationDate) if data.expirationDate is not None else None
    before = await _lot(conn, product_id, lot, lock=True)
    if before is not None and (before.expiry, before.recalled, before.recall_note) == (
        expiry,
        data.recalled,
        data.recall_note,
    ):
        return before  # nothing differs: nothing written, nothing audited (README)
    # the WHERE: a lot none was locked for, written at once by another save with these values
    written = await conn.execute(
        """INSERT INTO lms_lots AS l (product_id, lot, brand_id, expiry, recalled_at, recall_note,
                                      updated_by, updated_key)
           VALUES (%(product)s, %(lot)s, %(brand)s, %(expiry)s,
                   CASE WHEN %(recalled)s THEN now() END, %(note)s, %(user)s, %(key)s)
           ON CONFLICT (product_id, lot) DO UPDATE SET
               expiry = EXCLUDED.expiry,
               recalled_at = CASE WHEN %(recalled)s THEN coalesce(l.recalled_at, now()) END,
               recall_note = EXCLUDED.recall_note,
               updated_by = EXCLUDED.updated_by, updated_key = EXCLUDED.updated_key,
               updated_at = now()
           WHERE (l.expiry, l.recalled_at IS NOT NULL, l.recall_note)
                 IS DISTINCT FROM (EXCLUDED.expiry, %(recalled)s, EXCLUDED.recall_note)""",
        {
            "product": product_id,
            "lot": lot,
            "brand": actor.brand_id,
            "expiry": expiry,
            "recalled": data.recalled,
            "note": data.recall_note,
            "user": actor.user_id,
            "key": actor.api_key_id,
        },
    )
    after = await _lot(conn, product_id, lot)
    assert after is not None
    if written.rowcount == 0:
        return after
    await audit.record(
        conn, actor, "update", "lms_lot", f"{product_id}/{lot}", before=before, after=after
    )
    return after


async def _lot(conn: Conn, product_id: int, lot: str, lock: bool = False) -> LotOut | None:
    """The lot as declared (``lock``: its row held until the transaction ends)."""
    row = await (
        await conn.execute(
            f"""SELECT {_LOT_COLUMNS} FROM lms_lots l JOIN products p ON p.id = l.product_id
                WHERE l.product_id = %s AND l.lot = %s"""
            + (" FOR UPDATE OF l" if lock else ""),
            (product_id, lot),
        )
    ).fetchone()
    return LotOut(**row) if row else None


async def list_lots(
    conn: Conn, actor: Principal, gtin: str | None, recalled: bool | None, page: int, per_page: int
) -> Page[LotOut]:
    """The lots the brand declared, last changed first (``catalog.read``): read across the
    brand's tree as its catalogue is (a partner receiving goods learns of a recall); written by
    the brand's own staff only (``put_lot``)."""
    actor.require("catalog.read")
    where = ["l.brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": actor.brand_id}
    if gtin is not None:
        where.append("p.gtin = %(gtin)s")
        params["gtin"] = parse_gtin(gtin)
    if recalled is not None:
        where.append("(l.recalled_at IS NOT NULL) = %(recalled)s")
        params["recalled"] = recalled
    return await fetch_page(
        conn,
        columns=_LOT_COLUMNS,
        source="lms_lots l JOIN products p ON p.id = l.product_id",
        where=where,
        params=params,
        order="l.updated_at DESC, l.product_id, l.lot",
        page=page,
        per_page=per_page,
        make=lambda row: LotOut(**row),
    )


async def get_responder(conn: Conn, actor: Principal) -> ResponderOut:
    actor.require("catalog.read")
    return ResponderOut(gln=await _responder_gln(conn, actor.brand_id))


async def put_responder(conn: Conn, actor: Principal, data: ResponderIn) -> ResponderOut:
    """Set the brand's GLN, answered as ``responderGLN`` (``catalog.write``; 403
    ``brand_staff_only`` below the brand); audited — the GLN it has: nothing written."""
    brand_of_staff(actor, "catalog.write", "the brand's responder GLN is set")
    gln = parse_gln(data.gln)
    before = await _responder_gln(conn, actor.brand_id, lock=True)
    if before == gln:
        return ResponderOut(gln=gln)  # nothing differs: nothing written, nothing audited
    # the WHERE: a GLN none was locked for, set at once by another save to this one
    written = await conn.execute(
        """INSERT INTO lms_responders AS r (brand_id, gln) VALUES (%s, %s)
           ON CONFLICT (brand_id) DO UPDATE SET gln = EXCLUDED.gln, updated_at = now()
           WHERE r.gln IS DISTINCT FROM EXCLUDED.gln""",
        (actor.brand_id, gln),
    )
    if written.rowcount == 0:
        return ResponderOut(gln=gln)
    await audit.record(
        conn,
        actor,
        "update",
        "lms_responder",
        actor.brand_id,
        before={"gln": before},
        after={"gln": gln},
        org_id=actor.brand_id,
    )
    return ResponderOut(gln=gln)
