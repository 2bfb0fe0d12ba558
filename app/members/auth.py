"""Member sign-up and log-in by phone and SMS one-time code (M1), and member log-out.

``request_code`` makes a 6-digit code, stores only its HMAC (keyed from the master key, so a copy
of the database alone does not give the codes away) and hands the SMS to the outbox
(``app.sms.outbox.enqueue``, in this transaction: the outbox throttles each phone, 429
``sms_throttled``). A new code supersedes the phone's older ones.

``login`` checks a code against the phone's newest one. A code works once, for
``member_otp_ttl`` seconds, and dies after ``member_otp_max_tries`` wrong tries (counted under a
row lock, so parallel guesses get exactly that many). The first successful log-in of a phone
creates the member: sign-up and log-in are one step; a phone whose membership was erased while
frozen signs up frozen (``app.members.freezes``). A frozen member may still sign in (to read
its points and codes); claiming and redeeming refuse it (``Member.require_active``).

Log-out revokes the presented member token (its ``jti``) until it would have expired.
Phones are never logged; the limits count a phone by its hash (``app.members.limits``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.auth import tokens
from app.config import Settings
from app.db import Conn
from app.errors import NotFound, Unauthorized, ValidationFailed
from app.members import freezes
from app.members.limits import MemberLimits, login_account
from app.members.mask import mask_phone
from app.members.principal import MEMBER_TOKEN, issue_token
from app.members.profile import member_out
from app.members.schemas import MemberTokenOut, OtpSent
from app.sms.optouts import lock_phone
from app.textguard import without_blanks

STALE_ROWS = 200  # spent codes (and expired revocations) cleaned up per request at most


def sign_in_code(typed: str) -> str:
    """The 6-digit sign-in code as a member typed it: full-width digits (a Chinese input
    method) read as ASCII, blanks (zero-width marks too) dropped — the API and the sign-in page
    read it alike (a probe: the page took ``２４６８１０`` and ``246 810``, the API refused
    both). Not six digits then: 400 ``validation_failed`` naming ``code``, before a try of the
    code is spent."""
    code = without_blanks(unicodedata.normalize("NFKC", typed))[:12]
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        raise ValidationFailed(
            "invalid request (code): six digits",
            details=[{"field": "code", "message": "six digits", "source": "body"}],
        )
    return code


def code_hash(settings: Settings, brand_id: int, phone: str, code: str) -> bytes:
    """HMAC-SHA256 of the code, bound to its brand and phone (a hash fits no other phone)."""
    message = f"{brand_id}:{phone}:{code}".encode()
    return hmac.digest(settings.subkey("member-otp"), message, hashlib.sha256)


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


async def require_brand(conn: Conn, brand_id: int) -> None:
    """404 unless ``brand_id`` is an active brand (one a consumer can join); the sign-in page
    asks it too."""
    row = await (
        await conn.execute(
            "SELECT 1 FROM orgs WHERE id = %s AND kind = 'brand' AND status = 'active'",
            (brand_id,),
        )
    ).fetchone()
    if row is None:
        raise NotFound("brand not found")


async def store_code(
    conn: Conn, settings: Settings, brand_id: int, phone: str, code: str, ip: str | None
) -> datetime:
    """Store a new code of the phone (superseding its older ones); return its expiry."""
    await conn.execute(
        "UPDATE member_otps SET spent_at = now() "
        "WHERE brand_id = %s AND phone = %s AND spent_at IS NULL",
        (brand_id, phone),
    )
    row = await (
        await conn.execute(
            """INSERT INTO member_otps (brand_id, phone, code_hash, expires_at, client_ip)
               VALUES (%s, %s, %s, now() + make_interval(secs => %s), %s::inet)
               RETURNING expires_at""",
            (
                brand_id,
                phone,
                code_hash(settings, brand_id, phone, code),
                settings.member_otp_ttl,
                _inet(ip),
            ),
        )
    ).fetchone()
    await conn.execute(
        "DELETE FROM member_otps WHERE id IN (SELECT id FROM member_otps "
        "WHERE created_at < now() - interval '1 day' LIMIT %s)",
        (STALE_ROWS,),
    )
    assert row is not None
    return row["expires_at"]  # type: ignore[no-any-return]


def _inet(ip: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(ip or ""))
    except ValueError:
        return None


async def request_code(
    conn: Conn,
    settings: Settings,
    limits: MemberLimits,
    ip: str,
    brand_id: int,
    phone: str,
    lang: str = "zh",
) -> OtpSent:
    """Send a one-time code to ``phone`` (a normalised mobile number) for ``brand_id``, the SMS
    in ``lang`` (the page's or the caller's: a probe got Chinese on the English page)."""
    from app.sms.outbox import enqueue  # the SMS domain sits beside members, not below it

    await limits.code_requested(ip)
    await limits.login.check(login_account(brand_id, phone), ip)  # a locked address gets no code
    await require_brand(conn, brand_id)
    member = await (
        await conn.execute(
            "SELECT id FROM members WHERE brand_id = %s AND phone = %s", (brand_id, phone)
        )
    ).fetchone()
    code = new_code()
    expires_at = await store_code(conn, settings, brand_id, phone, code, ip)
    variables = {"code": code, "minutes": str(max(settings.member_otp_ttl // 60, 1))}
    if lang == "en":
        variables["lang"] = "en"  # the outbox's English template
    await enqueue(
        conn,
        brand_id=brand_id,
        phone=phone,
        template="otp",
        variables=variables,
        purpose="otp",
        member_id=member["id"] if member else None,
        settings=settings,
    )
    return OtpSent(
        phone=mask_phone(phone),
        expires_at=expires_at,
        expires_in=settings.member_otp_ttl,
        resend_after=settings.sms_otp_interval_seconds,  # the outbox's per-phone throttle
    )


async def login(
    conn: Conn,
    settings: Settings,
    limits: MemberLimits,
    ip: str,
    brand_id: int,
    phone: str,
    code: str,
) -> MemberTokenOut:
    """Check the code; sign the member in (creating the membership on its first log-in).

    Every failure counts against the client IP and the phone (``app.members.limits``). A wrong
    code costs one of the code's tries, committed although the answer is 401."""
    account = login_account(brand_id, phone)
    await limits.login.attempt(account, ip)
    otp = await (
        await conn.execute(
            """SELECT id, code_hash, tries, spent_at IS NOT NULL AS spent,
                      expires_at <= now() AS expired
                 FROM member_otps WHERE brand_id = %s AND phone = %s
                ORDER BY id DESC LIMIT 1 FOR UPDATE""",
            (brand_id, phone),
        )
    ).fetchone()
    failure = _refusal(otp, settings)
    if failure is None and otp is not None:
        given = code_hash(settings, brand_id, phone, code)
        if hmac.compare_digest(given, bytes(otp["code_hash"])):
            await require_brand(conn, brand_id)  # a probe: a deactivated brand's sign-up
            return await _signed_in(conn, settings, limits, ip, otp["id"], brand_id, phone)
        await conn.execute("UPDATE member_otps SET tries = tries + 1 WHERE id = %s", (otp["id"],))
        await conn.commit()  # the try counts although the answer is an error
        left = settings.member_otp_max_tries - otp["tries"] - 1
        failure = Unauthorized(
            "wrong code" if left else "wrong code; this code is now used up: ask for a new one",
            code="otp_wrong",
            details={"tries_left": left},
        )
    raise failure or Unauthorized("no code", code="otp_invalid")


def _refusal(otp: dict[str, Any] | None, settings: Settings) -> Unauthorized | None:
    """Why the phone's newest code cannot be tried at all, or None."""
    if otp is None or otp["spent"]:
        return Unauthorized("no code is waiting for this phone: ask for one", code="otp_invalid")
    if otp["expired"]:
        return Unauthorized("the code has expired: ask for a new one", code="otp_expired")
    if otp["tries"] >= settings.member_otp_max_tries:
        return Unauthorized(
            "too many wrong tries: ask for a new code",
            code="otp_exhausted",
            details={"tries_left": 0},
        )
    return None


async def _signed_in(
    conn: Conn,
    settings: Settings,
    limits: MemberLimits,
    ip: str,
    otp_id: int,
    brand_id: int,
    phone: str,
) -> MemberTokenOut:
    await conn.execute("UPDATE member_otps SET spent_at = now() WHERE id = %s", (otp_id,))
    # the phone's opt-out read under its lock, as a TD reply writes it (a review: a TD committing
    # during a first sign-up listed the phone and switched no member — none yet — and the
    # sign-up, not seeing the list's row, made the member opted in)
    await lock_phone(conn, brand_id, phone)
    row = await (
        await conn.execute(
            """INSERT INTO members (brand_id, phone, last_login_at, marketing_opt_out)
               VALUES (%(b)s, %(p)s, now(), EXISTS (SELECT 1 FROM sms_opt_outs
                                                    WHERE brand_id = %(b)s AND phone = %(p)s))
               ON CONFLICT (brand_id, phone) DO UPDATE SET last_login_at = now()
               RETURNING *, (xmax = 0) AS signed_up""",  # a phone on the brand's opt-out list
            {"b": brand_id, "p": phone},  # signs up opted out: the switch says what is done
        )
    ).fetchone()
    assert row is not None
    if row["signed_up"]:  # a freeze kept from an erased membership of the phone holds
        frozen = await freezes.carry_over(conn, settings, brand_id, phone, row["id"])
        row = {**frozen, "signed_up": True} if frozen is not None else row
    await limits.login.succeeded(login_account(brand_id, phone), ip)
    token, expires = issue_token(settings, row["id"])
    return MemberTokenOut(
        access_token=token,
        token_type="Bearer",
        expires_at=expires,
        signed_up=bool(row["signed_up"]),
        member=member_out(row),
    )


async def logout(conn: Conn, settings: Settings, member_id: int, token: str) -> None:
    """Revoke this member token (the member's other sessions stay signed in). Revocations are
    kept a day past their token's expiry: a verification made with it after the sign-out and
    stored late (a queue's backlog, a dead letter replayed) still finds its revocation and names
    no member (``app.verify.records``)."""
    claims = tokens.decode(settings.jwt_key(), token, MEMBER_TOKEN)
    await conn.execute(
        """INSERT INTO member_token_revocations (jti, member_id, expires_at)
           VALUES (%s, %s, %s) ON CONFLICT (jti) DO NOTHING""",
        (
            uuid.UUID(hex=claims["jti"]),
            member_id,
            datetime.fromtimestamp(claims["exp"], UTC) + timedelta(seconds=1),
        ),
    )
    await conn.execute(
        "DELETE FROM member_token_revocations WHERE jti IN (SELECT jti FROM "
        "member_token_revocations WHERE expires_at < now() - interval '1 day' LIMIT %s)",
        (STALE_ROWS,),
    )
