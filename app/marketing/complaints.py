"""Complaints and suggestions from consumers (SPEC W3; seed 1.10.1 "客户投诉与建议: 消费者通过手机
网站可以进行投诉,投诉信息通过网络上传到系统后台"): the member's side — filing one, reading one's
own with where it stands and the brand's reply. The brand's side is ``app.marketing.handling``.

A signed-in member files a complaint or a suggestion: its text (one visible character, at most
2,000; control characters are refused at the edge), optionally the product — a pack's serial
(or the scanned link) or a GTIN — or the store it was bought at, and how the member wants to be
contacted. A serial is read as every scan is (``app.codes.lookup``): the product of a genuine
code of the member's brand is recorded beside it; a code that is no genuine one of the brand (a
counterfeit is worth a complaint) is kept as typed, without a product. A GTIN must be one (400
``invalid_gtin``); its product is the brand's product of that GTIN, if any. A frozen member may
still file one (the freeze stops points, not a consumer's voice).

``client_id`` makes a filing idempotent per member (``app.idempotency``): the same filing sent
again answers the first (200), another under its id is 409 ``client_id_reused``. Filings are
limited per member — ``FILING_MAX`` within ``FILING_WINDOW_SECONDS`` (429 ``rate_limited`` with
``Retry-After``); a retry of one already filed does not count, even sent at once with the first
(the filings of one client id are made one at a time, ``Lock.COMPLAINT_CLIENT_ID``: the retry
waits, then answers the committed filing). With Redis unreachable the limit
is skipped (logged), as the member sign-in limits are.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar.datastructures import State

from app import audit, idempotency, locks
from app._core import Gs1Error, SerialError, normalize_gtin
from app.codes.lookup import read_codes
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import Conn
from app.errors import TooManyRequests, Unauthorized, ValidationFailed
from app.locks import Lock
from app.marketing.schemas import ComplaintIn, MyComplaint
from app.members.principal import Member
from app.paging import Page, fetch_page
from app.redisconn import UNAVAILABLE, AnyRedis, script

log = logging.getLogger("tracecode.marketing")

FILING_MAX = 10  # complaints and suggestions one member may file per window
FILING_WINDOW_SECONDS = 3600

# KEYS: the member's counter. ARGV: window seconds, max. Answers 0, or the seconds left when over.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return math.max(redis.call('TTL', KEYS[1]), 1) end
return 0
"""

MINE = """c.id, c.kind, c.body, c.status, c.serial, c.gtin, p.name AS product_name, c.store_name,
          c.contact, c.reply, c.replied_at, c.created_at, c.closed_at"""
MINE_SOURCE = "complaints c LEFT JOIN products p ON p.id = c.product_id"


class FilingLimit:
    """The per-member limit of filings, on the application's Redis."""

    def __init__(self, redis_client: AnyRedis, settings: Settings) -> None:
        self.redis = redis_client
        self.ns = f"{settings.redis_namespace}:complaints"
        self._count = script(redis_client, _COUNT)

    async def count(self, member_id: int) -> None:
        """Count one filing of the member; 429 ``rate_limited`` over ``FILING_MAX``."""
        try:
            retry = int(
                await self._count(
                    keys=[f"{self.ns}:member:{member_id}"],
                    args=[FILING_WINDOW_SECONDS, FILING_MAX],
                )
            )
        except UNAVAILABLE as exc:
            log.warning("complaint limit skipped: Redis unavailable", extra={"error": str(exc)})
            return
        if retry:
            raise TooManyRequests(
                "too many complaints and suggestions filed; try again later",
                code="rate_limited",
                details={"retry_after": retry},
                headers={"Retry-After": str(retry)},
            )


def filing_limit(state: State) -> FilingLimit:
    """The application's filing limit (made on first use, over the application's Redis)."""
    limit: FilingLimit | None = getattr(state, "complaint_limit", None)
    if limit is None or limit.redis is not state.redis:
        limit = FilingLimit(state.redis, state.settings)
        state.complaint_limit = limit
    return limit


def _mine(row: dict[str, Any]) -> MyComplaint:
    return MyComplaint(**row)


async def _earlier(conn: Conn, member: Member, data: ComplaintIn) -> MyComplaint | None:
    """The filing the member made under ``data``'s client id, if any (409 if another)."""
    if data.client_id is None:
        return None
    row = await (
        await conn.execute(
            f"SELECT {MINE}, c.client_hash FROM {MINE_SOURCE} "
            "WHERE c.member_id = %s AND c.client_id = %s",
            (member.id, data.client_id),
        )
    ).fetchone()
    if row is None:
        return None
    idempotency.check(row.pop("client_hash"), data, "complaint")
    return _mine(row)


def _gtin14(value: str) -> str:
    try:
        return normalize_gtin(value)
    except Gs1Error as exc:
        raise ValidationFailed(str(exc), code="invalid_gtin", details={"field": "gtin"}) from None


async def _serial_product(
    conn: Conn, scheme: Scheme, brand_id: int, text: str
) -> tuple[str, int | None]:
    """The serial as printed and its product, for a genuine code of the brand; else the text
    as typed, whole (the schema's 200 characters: a probe saw a counterfeiter's link cut to 64,
    losing the code after its host), and no product."""
    try:
        (read,) = await read_codes(conn, scheme, brand_id, [text])
    except (SerialError, Gs1Error, ValueError):
        return text.strip(), None
    if read.kind != "unit" or read.reason is not None:
        return text.strip(), None
    row = await (
        await conn.execute(
            "SELECT coalesce((SELECT product_id FROM unit_state WHERE code = %s), %s) AS id",
            (read.code, read.batch_product),
        )
    ).fetchone()
    return read.label, row["id"] if row else None


async def _gtin_product(conn: Conn, brand_id: int, gtin: str) -> int | None:
    row = await (
        await conn.execute(
            "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
            "WHERE p.gtin = %s AND o.path LIKE %s ORDER BY p.id LIMIT 1",
            (gtin, f"/{brand_id}/%"),
        )
    ).fetchone()
    return int(row["id"]) if row else None


async def _subject(
    conn: Conn, scheme: Scheme, brand_id: int, serial: str | None, gtin: str | None
) -> tuple[str | None, int | None]:
    """(serial as kept, product id) of what the complaint is about (``gtin``: a GTIN-14)."""
    product = None
    if serial is not None:
        serial, product = await _serial_product(conn, scheme, brand_id, serial)
    if product is None and gtin is not None:
        product = await _gtin_product(conn, brand_id, gtin)
    return serial, product


async def file(
    conn: Conn, scheme: Scheme, limit: FilingLimit, member: Member, data: ComplaintIn
) -> tuple[MyComplaint, bool]:
    """File the member's complaint or suggestion; (it, created). See the module's docstring."""
    now = await (
        await conn.execute("SELECT status FROM members WHERE id = %s FOR SHARE", (member.id,))
    ).fetchone()
    if now is None or now["status"] == "erased":  # erased while this waited
        raise Unauthorized("the membership was erased", code="member_erased")
    if data.client_id is not None:  # a retry sent at once waits here, then finds the filing
        await locks.xact_lock(conn, Lock.COMPLAINT_CLIENT_ID, f"{member.id}:{data.client_id}")
    if (found := await _earlier(conn, member, data)) is not None:
        return found, False
    gtin = _gtin14(data.gtin) if data.gtin is not None else None  # 400 before it counts
    await limit.count(member.id)
    serial, product = await _subject(conn, scheme, member.brand_id, data.serial, gtin)
    row = await (
        await conn.execute(
            """INSERT INTO complaints (brand_id, member_id, kind, body, serial, gtin, product_id,
                                       store_name, contact, client_id, client_hash)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (member_id, client_id) DO NOTHING RETURNING id""",
            (
                member.brand_id,
                member.id,
                data.kind,
                data.body,
                serial,
                gtin,
                product,
                data.store_name.strip() if data.store_name else None,
                data.contact,
                data.client_id,
                idempotency.fingerprint(data) if data.client_id is not None else None,
            ),
        )
    ).fetchone()
    if row is None:  # defensive: retries of one client id wait for each other above
        found = await _earlier(conn, member, data)
        assert found is not None
        return found, False
    made = await (
        await conn.execute(f"SELECT {MINE} FROM {MINE_SOURCE} WHERE c.id = %s", (row["id"],))
    ).fetchone()
    assert made is not None
    out = _mine(made)
    # no text and no phone in the log: what the member wrote is read in the complaint itself
    after = {"kind": out.kind, "member_id": member.id, "product_id": product, "status": "open"}
    await audit.record(conn, None, "file", "complaint", out.id, after=after, org_id=member.brand_id)
    return out, True


async def my_complaints(conn: Conn, member: Member, page: int, per_page: int) -> Page[MyComplaint]:
    """The member's own complaints and suggestions, newest first, with the brand's replies."""
    return await fetch_page(
        conn,
        columns=MINE,
        source=MINE_SOURCE,
        where=["c.member_id = %(member)s"],
        params={"member": member.id},
        order="c.id DESC",
        page=page,
        per_page=per_page,
        make=_mine,
    )
