"""Redemption of gifts for points, its codes, fulfilment, expiry and settlement (M4).

Redeeming is one transaction: the member's balance row is locked, the gift's stock taken (only
while it is offered and in stock), the redemption written with a fresh code, the points debited
through the ledger (never below zero), and the SMS with the code queued in the outbox
(``app.sms.outbox.enqueue``, sent after commit). Locks are always taken balance first, then gift,
so redemptions, claims and expiries never deadlock: no overselling, no negative balance.

Codes are 10 characters of Crockford's base32 from ``secrets`` (50 bits: unguessable, short
enough to read aloud; case, spaces, dashes and the look-alikes I, L, O do not matter). The
database holds an HMAC of the code (the unique lookup key) and the code sealed with AES-GCM (for
the member's own list); both keys are derived from the master key, which never enters it.

Staff holding ``redemptions.fulfil`` check a code (the gift and the member's masked phone) and
fulfil it: e-shop vouchers (online) by customer-service staff above the stores, physical gifts
(offline) by a store's staff at their store, recorded with who, where and when. A code is
fulfilled once (409 ``code_used``: 您的兑换码已使用，请勿重复兑换); nor while its member is
frozen (not valid, ``refusal: member_frozen``; 409 ``member_frozen``: the fulfil takes the
member's row FOR SHARE before the code's, as a redemption and an erasure take the member first);
after its expiry it cannot be (409 ``code_expired``) and the worker job
``expire_redemptions`` gives its points and stock back, once (``expire_due``; a code it cannot
expire is set aside in the dead letters, queue ``redemption_expiry``, and the others go on).
Stores' fulfilled physical gifts are summed per store and gift over a period for settlement
with the brand, within the caller's subtree.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import unicodedata
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import msgspec
from psycopg_pool import AsyncConnectionPool

from app import audit, sealing, tabular
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.deadletters import is_poison, reason_of
from app.errors import BadRequest, Conflict, NotFound, Unauthorized, Unprocessable
from app.localtime import aware
from app.members.gifts import OFFERED
from app.members.mask import mask_phone, sees_phones, shown_phone
from app.members.points import post_entry
from app.members.principal import Member
from app.members.returns import REPAID
from app.members.schemas_points import (
    CheckOut,
    CodeIn,
    FulfilIn,
    GiftKind,
    RedeemIn,
    RedemptionOut,
    RedemptionStatus,
    SettlementRow,
    StaffRedemptionRow,
)
from app.orgs.service import CHILD_KINDS, org_path, path_live
from app.paging import Page, check_period, fetch_page

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
CODE_LENGTH = 10
CHINA = timezone(timedelta(hours=8))  # the SMS tells the date of expiry in Beijing time
log = logging.getLogger("tracecode.members")

_LOOKALIKE = str.maketrans({"I": "1", "L": "1", "O": "0"})

USED = {
    "zh": "您的兑换码已使用，请勿重复兑换",
    "en": "This redemption code has already been used; it cannot be redeemed again.",
}
EXPIRED = {
    "zh": "您的兑换码已过期，积分已退回或即将退回",
    "en": "This redemption code has expired; its points are (or will shortly be) refunded.",
}
ERASED = {  # its points were forfeited with the membership, not refunded
    "zh": "该会员已注销，兑换码已失效",
    "en": "This membership was closed: the redemption code is void.",
}
VALID = {"zh": "兑换码有效", "en": "The redemption code is valid."}
FROZEN = {
    "zh": "该会员已被冻结，兑换码暂不能兑换",
    "en": "This member is frozen: the redemption code cannot be redeemed now.",
}
FULFILLED = {"zh": "已兑换", "en": "Redeemed."}
HOW = {
    ("online", "zh"): "请联系天猫旗舰店客服，出示手机号和兑换码领取代金券",
    ("online", "en"): "show your phone number and this code to the e-shop's customer service",
    ("offline", "zh"): "请到门店向店员出示手机号和兑换码领取礼品",
    ("offline", "en"): "show your phone number and this code to a store's staff",
}


# -- codes -----------------------------------------------------------------------------------


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """The code as stored: upper case, without spaces or dashes, look-alikes mapped, full-width
    letters and digits (a Chinese input method's) as ASCII (400 ``malformed_code`` when it
    cannot be one)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    code = text.upper().replace(" ", "").replace("-", "").translate(_LOOKALIKE)
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        raise BadRequest("a redemption code is 10 letters and digits", code="malformed_code")
    return code


def digest(settings: Settings, code: str) -> bytes:
    """The code's lookup key: HMAC-SHA256 under a key of its own (``Settings.subkey``)."""
    key = settings.subkey("redemption-code-digest")
    return hmac.new(key, code.encode(), hashlib.sha256).digest()


def seal(settings: Settings, code: str) -> bytes:
    """The code encrypted (``app.sealing.encrypt``) for the member's own list."""
    return sealing.encrypt(settings, "redemption-code-seal", code.encode())


def unseal(settings: Settings, blob: bytes) -> str:
    """The code ``seal`` sealed; ValueError when it was sealed under another master key (or
    altered)."""
    return sealing.decrypt(settings, "redemption-code-seal", blob).decode()


def _readable(settings: Settings, blob: bytes) -> str | None:
    """The member's code, or None when it cannot be unsealed here: sealed under another master
    key (a host given another key, a key file replaced). A probe: every list of a member who
    ever redeemed answered 500, where the webhook sender, the ERP cursor and the H5 tickets
    answer such sealed data of their own (a dead delivery, 400 ``bad_cursor``). The request
    says so once (``_warn_unreadable``)."""
    try:
        return unseal(settings, blob)
    except ValueError:  # the MAC check failed
        return None


def _warn_unreadable(answered: Iterable[RedemptionOut]) -> None:
    """One warning per request for the redemptions it answered without their codes."""
    unreadable = [r.id for r in answered if r.code is None]
    if unreadable:
        log.warning(
            "redemption codes that cannot be unsealed under this master key are left out",
            extra={"redemptions": unreadable[:20], "count": len(unreadable)},
        )


# -- status as read ---------------------------------------------------------------------------

# What a redemption ``r`` is as every list and export reads it: a code past its date is
# ``expired`` from that moment, as the check and the fulfil call it, though the sweep moves the
# row (and refunds it) within a minute (a probe: the member's list, the member admin's records
# and ``GET /redemptions?status=issued`` showed it ``issued`` while the check said expired).
STATUS_NOW = """CASE WHEN r.status = 'issued' AND r.expires_at <= now() THEN 'expired'
                     ELSE r.status END"""
_STATUS_IS = {
    "issued": "(r.status = 'issued' AND r.expires_at > now())",
    "fulfilled": "r.status = 'fulfilled'",
    "expired": "(r.status = 'expired' OR (r.status = 'issued' AND r.expires_at <= now()))",
}


def status_is(status: str) -> str:
    """SQL: the redemption ``r`` reads ``status`` (``STATUS_NOW``), as a list's filter."""
    return _STATUS_IS[status]


# -- redeeming -------------------------------------------------------------------------------

_MINE = f"""r.id, r.code_sealed, r.gift_id, g.name AS gift_name, r.gift_kind AS kind, r.points,
           {STATUS_NOW} AS status, r.created_at, r.expires_at, r.fulfilled_at, g.how_to_collect"""


def _mine(
    settings: Settings, row: dict[str, Any], lang: str, balance: int | None = None
) -> RedemptionOut:
    """A member's redemption as the member reads it; a gift without collection instructions of
    its own shows the default ones in ``lang``, as its first answer did (a probe: a retry, the
    list and the H5 page showed none). Its code null when it cannot be unsealed here
    (``_readable``)."""
    return RedemptionOut(
        id=row["id"],
        code=_readable(settings, bytes(row["code_sealed"])),
        gift_id=row["gift_id"],
        gift_name=row["gift_name"],
        kind=row["kind"],
        points=row["points"],
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        fulfilled_at=row["fulfilled_at"],
        how_to_collect=row["how_to_collect"] or HOW[(row["kind"], lang)],
        balance=balance,
    )


async def redeem(
    conn: Conn, settings: Settings, member: Member, data: RedeemIn
) -> tuple[RedemptionOut, bool]:
    """Redeem a gift for the member; (redemption with its code, created). The same client id
    again answers the first redemption, also once the member is frozen (a probe: a retry of a
    redemption made before the freeze was refused, so a client that lost the answer never got
    its code)."""
    # the member as it is now (FOR SHARE waits for a freeze or an erasure under way), before
    # the balance, in the erasure's order: the one read with the token may be from before a
    # freeze that committed since (a probe: a redemption waiting on the balance went through)
    now = await (
        await conn.execute("SELECT status FROM members WHERE id = %s FOR SHARE", (member.id,))
    ).fetchone()
    locked = await (
        await conn.execute(
            "SELECT balance FROM point_balances WHERE member_id = %s FOR UPDATE", (member.id,)
        )
    ).fetchone()
    earlier = await (
        await conn.execute(
            f"""SELECT {_MINE} FROM redemptions r JOIN gifts g ON g.id = r.gift_id
                WHERE r.member_id = %s AND r.client_id = %s""",
            (member.id, data.client_id),
        )
    ).fetchone()
    if earlier is not None:
        if earlier["gift_id"] != data.gift_id:
            raise Conflict(
                "this client id was used for another redemption", code="client_id_reused"
            )
        # the balance as it is now (locked above): the first answer's, unless it moved since
        out = _mine(settings, earlier, data.lang, locked["balance"] if locked else 0)
        _warn_unreadable([out])
        return out, False
    if now is None or now["status"] == "erased":  # erased while this waited (a probe: "frozen")
        raise Unauthorized("the membership was erased", code="member_erased")
    msgspec.structs.replace(member, status=now["status"]).require_active()
    gift = await _take_one(conn, member, data.gift_id)
    if locked is None or locked["balance"] < gift["points_cost"]:
        raise Unprocessable(
            "not enough points for this gift",
            code="insufficient_points",
            details={"balance": locked["balance"] if locked else 0, "cost": gift["points_cost"]},
        )
    code = new_code()
    row = await (
        await conn.execute(
            """INSERT INTO redemptions (brand_id, member_id, gift_id, gift_kind, points,
                                        code_digest, code_sealed, client_id, expires_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(days => %s))
               RETURNING id, created_at, expires_at""",
            (
                member.brand_id,
                member.id,
                gift["id"],
                gift["kind"],
                gift["points_cost"],
                digest(settings, code),
                seal(settings, code),
                data.client_id,
                gift["collect_days"],
            ),
        )
    ).fetchone()
    assert row is not None
    posted = await post_entry(
        conn,
        member_id=member.id,
        brand_id=member.brand_id,
        kind="redemption",
        points=-gift["points_cost"],
        redemption_id=row["id"],
    )
    assert posted is not None  # the balance row is locked and covers the cost
    how = gift["how_to_collect"] or HOW[(gift["kind"], data.lang)]
    sms_id = await _send_code(conn, member, code, gift["name"], row["expires_at"], how, data.lang)
    if sms_id:
        await conn.execute("UPDATE redemptions SET sms_id = %s WHERE id = %s", (sms_id, row["id"]))
    await _tell_wechat(conn, settings, member, row["id"], gift["name"], row["expires_at"])
    out = RedemptionOut(
        id=row["id"],
        code=code,
        gift_id=gift["id"],
        gift_name=gift["name"],
        kind=gift["kind"],
        points=gift["points_cost"],
        status="issued",
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        fulfilled_at=None,
        how_to_collect=how,
        balance=posted[1],
    )
    return out, True


async def _take_one(conn: Conn, member: Member, gift_id: int) -> dict[str, Any]:
    """Take one of the gift's stock while it is offered to the member (its row stays locked
    to the end of the transaction); 404 / 409 ``out_of_stock`` / 422 ``gift_not_offered``.
    When the take misses, the reason is read from the row locked (its latest version): a gift
    restocked between the two statements was answered "not offered to you" (probe skew); it is
    taken then."""
    province = await (
        await conn.execute("SELECT province FROM members WHERE id = %s", (member.id,))
    ).fetchone()
    assert province is not None  # the member's row (members are never deleted, only erased)
    params = {"gift": gift_id, "brand": member.brand_id, "province": province["province"]}
    for _ in range(2):
        taken = await (
            await conn.execute(
                f"""UPDATE gifts g SET stock = g.stock - 1, updated_at = now()
                    WHERE g.id = %(gift)s AND {OFFERED}
                    RETURNING g.id, g.name, g.kind, g.points_cost, g.collect_days,
                              g.how_to_collect""",
                params,
            )
        ).fetchone()
        if taken is not None:
            return taken  # type: ignore[no-any-return]
        gift = await (
            await conn.execute(
                f"""SELECT g.stock, {OFFERED} AS offered FROM gifts g
                    WHERE g.id = %(gift)s AND g.brand_id = %(brand)s AND g.deleted_at IS NULL
                    FOR UPDATE""",
                params,
            )
        ).fetchone()
        if gift is None:
            raise NotFound("gift not found")
        if gift["stock"] <= 0:
            raise Conflict("this gift is out of stock", code="out_of_stock")
        if not gift["offered"]:
            raise Unprocessable("this gift is not offered to you now", code="gift_not_offered")
    raise AssertionError("a gift offered on its locked row is taken")


async def _send_code(
    conn: Conn, member: Member, code: str, gift: str, until: datetime, how: str, lang: str
) -> int:
    """Queue the SMS with the code in the caller's transaction (the outbox sends it after
    commit, and wipes the code once sent); the outbox row's id."""
    from app.sms.outbox import enqueue

    variables = {
        "code": code,
        "gift": gift,
        "until": until.astimezone(CHINA).strftime("%Y-%m-%d %H:%M"),
        "how": how,
    }
    if lang == "en":
        variables["lang"] = "en"  # the outbox's English template
    return await enqueue(
        conn,
        brand_id=member.brand_id,
        phone=member.phone,
        template="redemption",
        variables=variables,
        purpose="redemption",
        member_id=member.id,
    )


async def _tell_wechat(
    conn: Conn, settings: Settings, member: Member, redemption_id: int, gift: str, until: datetime
) -> None:
    """The WeChat template message of the code issued, for a member bound to the brand's
    WeChat (``app.wechat.outbox``: nothing otherwise; the SMS goes all the same)."""
    from app.wechat.outbox import redemption_issued  # the WeChat domain sits beside members

    await redemption_issued(
        conn,
        settings,
        brand_id=member.brand_id,
        member_id=member.id,
        redemption_id=redemption_id,
        gift=gift,
        until=until,
    )


async def member_redemptions(
    conn: Conn,
    settings: Settings,
    member: Member,
    status: str | None,
    page: int,
    per_page: int,
    lang: str = "zh",
) -> Page[RedemptionOut]:
    """The member's own redemptions with their codes, newest first (the default collection
    instructions in ``lang``)."""
    where = ["r.member_id = %(member)s"]
    if status is not None:
        where.append(status_is(status))
    found = await fetch_page(
        conn,
        columns=_MINE,
        source="redemptions r JOIN gifts g ON g.id = r.gift_id",
        where=where,
        params={"member": member.id},
        order="r.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: _mine(settings, row, lang),
    )
    _warn_unreadable(found.items)
    return found


# -- staff: check and fulfil -------------------------------------------------------------------


async def _by_code(
    conn: Conn, settings: Settings, actor: Principal, text: str, lock: bool = False
) -> dict[str, Any]:
    """The code's redemption with its member's phone and status; with ``lock``, the member's
    row FOR SHARE (a freeze or an erasure under way commits first, or waits for this), then the
    code's FOR UPDATE: the member before what is the member's, as a redemption and an erasure
    take them."""
    actor.require("redemptions.fulfil")
    key = (digest(settings, normalise_code(text)), actor.brand_id)
    if lock:
        await conn.execute(
            """SELECT 1 FROM members WHERE id = (SELECT member_id FROM redemptions
                                                 WHERE code_digest = %s AND brand_id = %s)
               FOR SHARE""",
            key,
        )
    row = await (
        await conn.execute(
            """SELECT r.id, r.gift_id, g.name AS gift_name, r.gift_kind AS kind, r.points,
                      r.status, r.created_at, r.expires_at, r.fulfilled_at, r.fulfilled_by,
                      r.fulfilled_org_id, m.phone, m.status AS member_status,
                      r.expires_at <= now() AS due
               FROM redemptions r JOIN gifts g ON g.id = r.gift_id
                    JOIN members m ON m.id = r.member_id
               WHERE r.code_digest = %s AND r.brand_id = %s"""
            + (" FOR UPDATE OF r" if lock else ""),
            key,
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such redemption code", code="unknown_code")
    return row


def _check_out(row: dict[str, Any], lang: str) -> CheckOut:
    status: RedemptionStatus = (
        "expired" if row["status"] == "issued" and row["due"] else row["status"]
    )
    # a frozen member's code is handed out to nobody (a probe: it checked valid and was
    # fulfilled after the freeze); an erased member's expired with the erasure
    refusal: Literal["member_frozen"] | None = None
    if status == "issued" and row["member_status"] != "active":
        refusal = "member_frozen"
    valid = status == "issued" and refusal is None
    message = _message(status, refusal, row["member_status"])[lang]
    return CheckOut(
        redemption_id=row["id"],
        valid=valid,
        status=status,
        refusal=refusal,
        message=message,
        gift_id=row["gift_id"],
        gift_name=row["gift_name"],
        kind=row["kind"],
        points=row["points"],
        phone=mask_phone(row["phone"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        fulfilled_at=row["fulfilled_at"],
        fulfilled_by=row["fulfilled_by"],
        fulfilled_org_id=row["fulfilled_org_id"],
    )


def _message(status: str, refusal: str | None, member_status: str) -> dict[str, str]:
    if refusal:
        return FROZEN
    if status == "expired" and member_status == "erased":  # a probe: it said "refunded"
        return ERASED
    return {"issued": VALID, "fulfilled": USED, "expired": EXPIRED}[status]


async def check(conn: Conn, settings: Settings, actor: Principal, data: CodeIn) -> CheckOut:
    """What a code is: valid or not (used, expired), its gift, the member's masked phone; who
    fulfilled it and where only when that organisation is in the caller's subtree, as the list
    shows them (a probe: a store's clerk read another agent's store and its clerk's user id)."""
    row = await _by_code(conn, settings, actor, data.code)
    where = row["fulfilled_org_id"]
    if where is not None and not actor.sees(await org_path(conn, where) or ""):
        row = {**row, "fulfilled_by": None, "fulfilled_org_id": None}
    return _check_out(row, data.lang)


async def _where(conn: Conn, actor: Principal, kind: str, store_id: int | None) -> int:
    """The organisation a gift is handed out at: the caller's own for an e-shop voucher (staff
    above the stores: of an organisation that can hold stores, 422 ``online_gift`` elsewhere);
    for a physical gift the caller's store, or a store of its subtree — an active one under
    active organisations (422 ``org_inactive``)."""
    own = await (
        await conn.execute("SELECT kind FROM orgs WHERE id = %s", (actor.org_id,))
    ).fetchone()
    if kind == "online":
        # a store, and a factory, warehouse or printer (no store below them, outside the sales
        # channel: a probe saw the factory's admin spend a member's voucher) hand none out
        if own is None or "store" not in CHILD_KINDS[own["kind"]]:
            raise Unprocessable(
                "e-shop vouchers are handed out by customer service of the brand or of an"
                " organisation with stores below it, not at a store or a factory",
                code="online_gift",
            )
        return actor.org_id
    store = store_id if store_id is not None else actor.org_id
    row = await (
        await conn.execute("SELECT path, kind FROM orgs WHERE id = %s", (store,))
    ).fetchone()
    if store_id is not None:
        actor.ensure_sees(row["path"] if row else None, "store")
    if row is None or row["kind"] != "store":
        raise Unprocessable(
            "a physical gift is handed out at a store: give store_id", code="store_required"
        )
    if not await path_live(conn, row["path"]):  # as documents and inspections (a probe)
        raise Unprocessable(
            "the store is closed, or under a closed organisation", code="org_inactive"
        )
    return store


async def fulfil(conn: Conn, settings: Settings, actor: Principal, data: FulfilIn) -> CheckOut:
    """Mark a code fulfilled (已兑换) with who, where and when — once."""
    row = await _by_code(conn, settings, actor, data.code, lock=True)
    if row["status"] == "fulfilled":
        raise Conflict(USED[data.lang], code="code_used", details={"message_en": USED["en"]})
    if row["status"] == "expired" or row["due"]:
        if row["status"] == "issued":  # due, not swept yet: the job gives the points back,
            # asked for now; handed over off the loop and within a bound (a probe: a broker down
            # answered 500, a hung one froze the process 5 s): the schedule runs it anyway
            from app import jobs

            await jobs.hand_over("expire_redemptions")
        said = _message("expired", None, row["member_status"])
        raise Conflict(said[data.lang], code="code_expired", details={"message_en": said["en"]})
    if row["member_status"] != "active":  # frozen (locked FOR SHARE: it stays so meanwhile)
        raise Conflict(
            FROZEN[data.lang], code="member_frozen", details={"message_en": FROZEN["en"]}
        )
    where = await _where(conn, actor, row["kind"], data.store_id)
    # who: the user, or the person behind an API key (its maker), as a document's handler (a
    # probe: a partner system's key fulfilled vouchers handed out by nobody)
    done = await (
        await conn.execute(
            """UPDATE redemptions SET status = 'fulfilled', fulfilled_at = now(),
                      fulfilled_by = %s, fulfilled_org_id = %s
               WHERE id = %s AND status = 'issued' RETURNING fulfilled_at""",
            (actor.person, where, row["id"]),
        )
    ).fetchone()
    assert done is not None  # the row is locked and was issued
    row = {
        **row,
        "status": "fulfilled",
        "fulfilled_at": done["fulfilled_at"],
        "fulfilled_by": actor.person,
        "fulfilled_org_id": where,
    }
    out = _check_out(row, data.lang)
    out = CheckOut(**{**_fields(out), "message": FULFILLED[data.lang], "valid": False})
    # without the phone (masked, it is 7 of 11 digits): the erasure leaves the audit log as it
    # is, and a probe read an erased member's number there beside each of its redemptions
    kept = {k: v for k, v in _fields(out).items() if k != "phone"}
    await audit.record(conn, actor, "fulfil", "redemption", row["id"], after=kept, org_id=where)
    return out


def _fields(out: CheckOut) -> dict[str, Any]:
    return {f: getattr(out, f) for f in out.__struct_fields__}


# -- expiry ------------------------------------------------------------------------------------

# A code the sweep could not expire, alone, is set aside: a dead letter (queue ``QUEUE``, payload
# ``{"redemption_id":<id>}``, the reason) that also keeps it out of every later sweep — it stays
# issued, past its date (not fulfillable), until an operator fixes the cause and deletes the
# letter: the next sweep expires it then.
QUEUE = "redemption_expiry"
_NOT_SET_ASIDE = """NOT EXISTS (
    SELECT 1 FROM dead_letters d
     WHERE d.queue = %(queue)s
       AND d.payload = convert_to(format('{"redemption_id":%%s}', redemptions.id), 'UTF8'))"""

_DUE = f"""status = 'issued' AND expires_at <= now() AND {_NOT_SET_ASIDE}
   AND (%(only)s::bigint IS NULL OR id = %(only)s)"""

# The members' balances are locked before their codes, as a redemption and an erasure lock
# them (review: the codes first, then the balances, deadlocked with an erasure).
_DUE_BALANCES = f"""
SELECT b.member_id FROM point_balances b
WHERE b.member_id IN (SELECT member_id FROM redemptions
                      WHERE {_DUE}
                      ORDER BY expires_at LIMIT %(limit)s)
ORDER BY b.member_id
FOR UPDATE OF b
"""

_EXPIRE = f"""
WITH due AS (
    SELECT id FROM redemptions
    WHERE {_DUE} AND member_id = ANY(%(members)s)
    FOR UPDATE SKIP LOCKED
)
UPDATE redemptions r SET status = 'expired', expired_at = now()
FROM due WHERE r.id = due.id
RETURNING r.id, r.member_id, r.brand_id, r.points, r.gift_id
"""

_DUE_IDS = f"""SELECT id FROM redemptions WHERE {_DUE}
               ORDER BY expires_at, id LIMIT %(limit)s"""

_SET_ASIDE = """INSERT INTO dead_letters (queue, payload, reason)
                VALUES (%(queue)s, convert_to(format('{"redemption_id":%%s}', %(id)s::bigint),
                                              'UTF8'), %(reason)s)"""


async def expire_due(conn: Conn, limit: int = 500) -> int:
    """Expire the redemptions past their date that were never fulfilled: each one's points
    come back (a ``refund`` ledger row, once: the row moves from issued to expired once, and
    the ledger holds one refund per redemption) and its gift goes back into stock. Runs in
    batches (every due code of the members of the ``limit`` first due) until none is due;
    returns how many expired. A batch that fails for a reason of its data is done again code
    by code, and a code that fails alone is set aside (``_expire_alone``): one bad code stops
    no other (a probe: a gift whose stock was at the top of its integer column failed every
    sweep, and no member's code expired again). ``conn`` autocommit."""
    total = 0
    while True:
        try:
            async with conn.transaction():
                expired = await _expire(conn, limit)
        except Exception as exc:
            if not is_poison(exc):
                raise  # the database is down, say: the batch is tried again as it is
            expired, set_aside = await _expire_alone(conn, limit)
            total += expired
            if expired or set_aside:
                continue
            return total  # what failed is being fulfilled (skipped): the next sweep sees
        if expired is None:
            return total
        total += expired
        if not expired:  # what is due is being fulfilled (skipped): no longer due once it is
            return total


async def _expire(conn: Conn, limit: int, only: int | None = None) -> int | None:
    """One batch, in the caller's transaction: the due codes of the members of the ``limit``
    first due (or the code ``only``) expired, refunded and restocked; how many, or None when
    none is due."""
    due = {"limit": limit, "only": only, "queue": QUEUE}
    members = [r["member_id"] for r in await (await conn.execute(_DUE_BALANCES, due)).fetchall()]
    if not members:
        return None
    rows = await (await conn.execute(_EXPIRE, {**due, "members": members})).fetchall()
    for row in sorted(rows, key=lambda r: (r["member_id"], r["id"])):
        refunded = await post_entry(
            conn,
            member_id=row["member_id"],
            brand_id=row["brand_id"],
            kind="refund",
            points=row["points"],
            redemption_id=row["id"],
        )
        assert refunded is not None  # a credit never fails the balance check
        await _repay_owed(conn, row["member_id"], row["brand_id"], row["points"])
    stock: dict[int, int] = {}
    for row in rows:
        stock[row["gift_id"]] = stock.get(row["gift_id"], 0) + 1
    for gift_id in sorted(stock):
        await conn.execute(
            "UPDATE gifts SET stock = stock + %s, updated_at = now() WHERE id = %s",
            (stock[gift_id], gift_id),
        )
    return len(rows)


async def _expire_alone(conn: Conn, limit: int) -> tuple[int, int]:
    """After a batch failed for a reason of its data: the ``limit`` first due codes, each in a
    transaction of its own; one that still fails for a reason of its data is set aside in the
    dead letters and logged. Returns how many expired and how many were set aside."""
    due = {"limit": limit, "only": None, "queue": QUEUE}
    ids = [r["id"] for r in await (await conn.execute(_DUE_IDS, due)).fetchall()]
    expired = set_aside = 0
    for redemption_id in ids:
        try:
            async with conn.transaction():
                expired += await _expire(conn, limit, redemption_id) or 0
        except Exception as exc:
            if not is_poison(exc):
                raise
            reason = reason_of(exc)
            await conn.execute(_SET_ASIDE, {"queue": QUEUE, "id": redemption_id, "reason": reason})
            log.warning("redemption %d set aside, its expiry failed: %s", redemption_id, reason)
            set_aside += 1
    return expired, set_aside


async def _repay_owed(conn: Conn, member_id: int, brand_id: int, refunded: int) -> None:
    """Take the points a consumer's return could not take back (``returns.withdraw_points``)
    from a refund just credited, up to its points (the balance row is locked)."""
    row = await (
        await conn.execute("SELECT owed FROM point_balances WHERE member_id = %s", (member_id,))
    ).fetchone()
    paid = min(int(row["owed"]), refunded) if row else 0
    if paid <= 0:
        return
    taken = await post_entry(
        conn,
        member_id=member_id,
        brand_id=brand_id,
        kind="adjustment",
        points=-paid,
        reason=REPAID,
    )
    assert taken is not None  # the refund just credited covers it
    await conn.execute(
        "UPDATE point_balances SET owed = owed - %s WHERE member_id = %s", (paid, member_id)
    )


# -- settlement --------------------------------------------------------------------------------

SETTLEMENT_COLUMNS = [
    "store_id",
    "store_name",
    "store_erp_code",
    "gift_id",
    "gift_name",
    "fulfilled",
    "points",
]


async def _settlement_query(
    conn: Conn, actor: Principal, start: datetime, end: datetime, store_id: int | None
) -> tuple[list[str], dict[str, Any]]:
    actor.require("redemptions.read")
    start, end = aware(start), aware(end)
    check_period(start, end)
    if store_id is not None:  # 404 outside the subtree, as the list (a probe: an empty 200)
        actor.ensure_sees(await org_path(conn, store_id), "store")
    where = [
        "r.status = 'fulfilled'",
        "r.gift_kind = 'offline'",
        "r.brand_id = %(brand)s",
        "r.fulfilled_at >= %(start)s",
        "r.fulfilled_at < %(end)s",
        "o.path LIKE %(path)s",
    ]
    if store_id is not None:
        where.append("o.id = %(store)s")
    params = {
        "brand": actor.brand_id,
        "start": start,
        "end": end,
        "path": actor.org_path + "%",
        "store": store_id,
    }
    return where, params


_SETTLEMENT_SOURCE = """(SELECT o.id AS store_id, o.name AS store_name,
                            o.erp_code AS store_erp_code, g.id AS gift_id,
                            g.name AS gift_name, count(*) AS fulfilled, sum(r.points) AS points
                     FROM redemptions r JOIN orgs o ON o.id = r.fulfilled_org_id
                          JOIN gifts g ON g.id = r.gift_id
                     WHERE {where}
                     GROUP BY o.id, o.name, o.erp_code, g.id, g.name) s"""


async def settlement(
    conn: Conn,
    actor: Principal,
    start: datetime,
    end: datetime,
    store_id: int | None,
    page: int,
    per_page: int,
) -> Page[SettlementRow]:
    """Physical gifts fulfilled by the stores of the caller's subtree in [start, end), per
    store and gift: how many and their points."""
    where, params = await _settlement_query(conn, actor, start, end, store_id)
    return await fetch_page(
        conn,
        columns="*",
        source=_SETTLEMENT_SOURCE.format(where=" AND ".join(where)),
        where=[],
        params=params,
        order="store_id, gift_id",
        page=page,
        per_page=per_page,
        make=lambda row: SettlementRow(**row),
    )


async def settlement_csv(
    conn: Conn, actor: Principal, start: datetime, end: datetime, store_id: int | None
) -> AsyncIterator[bytes]:
    """The whole settlement as CSV (``app.tabular``)."""
    where, params = await _settlement_query(conn, actor, start, end, store_id)
    rows = await (
        await conn.execute(
            f"SELECT * FROM {_SETTLEMENT_SOURCE.format(where=' AND '.join(where))} "
            "ORDER BY store_id, gift_id",
            params,
        )
    ).fetchall()
    return tabular.csv_chunks(
        SETTLEMENT_COLUMNS, tabular.one_batch([[r[c] for c in SETTLEMENT_COLUMNS] for r in rows])
    )


# -- staff: the list of redemptions -------------------------------------------------------------

LIST_COLUMNS = [
    "id", "member_id", "phone", "gift_id", "gift_name", "gift_kind", "points", "status",
    "created_at", "expires_at", "fulfilled_at", "fulfilled_by", "fulfilled_by_name",
    "fulfilled_org_id", "fulfilled_org_name", "fulfilled_org_erp_code", "expired_at",
]  # fmt: skip
# The member behind a redemption is the brand's alone (``app.members.admin``: below it staff see
# no member): NULL below the brand, as in ``GET /verifications`` and a store's webhook (0093) — a
# store's or an agent's staff linked one consumer's redemptions across stores by it (a probe)
_MEMBER, _MEMBER_BELOW = "r.member_id", "NULL::bigint AS member_id"
_LIST_SELECT = f"""r.id, {{member}}, m.phone, r.gift_id, g.name AS gift_name, r.gift_kind,
    r.points, {STATUS_NOW} AS status, r.created_at, r.expires_at, r.fulfilled_at, r.fulfilled_by,
    u.username AS fulfilled_by_name, r.fulfilled_org_id, o.name AS fulfilled_org_name,
    o.erp_code AS fulfilled_org_erp_code, r.expired_at"""
_LIST_SOURCE = """redemptions r JOIN members m ON m.id = r.member_id
    JOIN gifts g ON g.id = r.gift_id LEFT JOIN users u ON u.id = r.fulfilled_by
    LEFT JOIN orgs o ON o.id = r.fulfilled_org_id"""
# Newest first: by when it was fulfilled, or issued while it was not.
_LIST_ORDER = "coalesce(r.fulfilled_at, r.created_at) DESC, r.id DESC"
CSV_BATCH = 2000


class ListFilters(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /redemptions``: [start, end) bounds the fulfilment time of fulfilled redemptions
    and the issue time of the others."""

    store_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    status: RedemptionStatus | None = None
    kind: GiftKind | None = None


def _list_select(actor: Principal) -> str:
    """The list's columns for ``actor``: the member's id only for the brand's own staff."""
    return _LIST_SELECT.format(member=_MEMBER if actor.org_id == actor.brand_id else _MEMBER_BELOW)


async def _list_query(
    conn: Conn, actor: Principal, f: ListFilters
) -> tuple[list[str], dict[str, Any]]:
    """The conditions of the caller's list. Staff of the brand organisation see every
    redemption of the brand (issued, fulfilled, expired); staff below it only those fulfilled
    at an organisation of their subtree — a store its own fulfilments, an agent its stores'."""
    actor.require("redemptions.read")
    f = msgspec.structs.replace(f, start=f.start and aware(f.start), end=f.end and aware(f.end))
    check_period(f.start, f.end)
    where = ["r.brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": actor.brand_id, "path": actor.org_path + "%"}
    if actor.org_id != actor.brand_id:
        where.append("o.path LIKE %(path)s")
    if f.store_id is not None:
        actor.ensure_sees(await org_path(conn, f.store_id), "store")
        where.append("r.fulfilled_org_id = %(store)s")
        params["store"] = f.store_id
    at = "coalesce(r.fulfilled_at, r.created_at)"
    if f.start is not None:
        where.append(f"{at} >= %(start)s")
        params["start"] = f.start
    if f.end is not None:
        where.append(f"{at} < %(end)s")
        params["end"] = f.end
    if f.status is not None:
        where.append(status_is(f.status))
    if f.kind is not None:
        where.append("r.gift_kind = %(kind)s")
        params["kind"] = f.kind
    return where, params


def _list_row(actor: Principal, row: dict[str, Any]) -> StaffRedemptionRow:
    return StaffRedemptionRow(**{**row, "phone": shown_phone(actor, row["phone"])})


async def list_redemptions(
    conn: Conn, actor: Principal, f: ListFilters, page: int, per_page: int
) -> Page[StaffRedemptionRow]:
    """The redemptions the caller may see, newest first; phones masked unless the caller
    holds ``members.read_phone``; the member's id null below the brand; never the code."""
    where, params = await _list_query(conn, actor, f)
    return await fetch_page(
        conn,
        columns=_list_select(actor),
        source=_LIST_SOURCE,
        where=where,
        params=params,
        order=_LIST_ORDER,
        page=page,
        per_page=per_page,
        make=lambda row: _list_row(actor, row),
    )


async def list_csv(
    conn: Conn, pool: AsyncConnectionPool, actor: Principal, f: ListFilters, *, audited: bool = True
) -> AsyncIterator[bytes]:
    """Every redemption of the list as CSV (``app.tabular``), streamed from a server-side
    cursor; the export is audited in the request's transaction first (``audited=False``: a
    HEAD, which sends nothing)."""
    where, params = await _list_query(conn, actor, f)
    if audited:
        await audit.record(
            conn,
            actor,
            "export",
            "redemption",
            None,
            after={"filters": msgspec.to_builtins(f), "phones": sees_phones(actor)},
        )
    sql = (
        f"SELECT {_list_select(actor)} FROM {_LIST_SOURCE} WHERE {' AND '.join(where)} "
        f"ORDER BY {_LIST_ORDER}"
    )
    return tabular.csv_chunks(LIST_COLUMNS, _csv_batches(pool, actor, sql, params))


def _csv_batches(
    pool: AsyncConnectionPool, actor: Principal, sql: str, params: dict[str, Any]
) -> AsyncIterator[Iterable[Sequence[Any]]]:
    """The redemptions' rows from a connection of ``pool`` (``app.tabular.pooled_batches``:
    429 ``exports_busy`` now when the pool's export streams are all taken)."""
    return tabular.pooled_batches(
        pool,
        sql,
        params,
        lambda r: [shown_phone(actor, r[c]) if c == "phone" else r[c] for c in LIST_COLUMNS],
        name="redemptions",
        batch=CSV_BATCH,
    )
