"""Who a member is: the consumer behind a member token.

Member tokens are JWTs of their own kind (``typ: "member"``), signed with the same key as staff
tokens but never accepted where a staff token is expected, and the other way round: a member can
never call a staff API. ``provide_member`` is the Litestar dependency ``member``; a handler that
takes it is a member-only endpoint (401 without a valid member token).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request

from app.auth import tokens
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.errors import Forbidden, Unauthorized

MEMBER_TOKEN = "member"


class Member(msgspec.Struct, frozen=True):
    id: int
    brand_id: int
    phone: str
    status: Literal["active", "frozen", "erased"]

    def require_active(self) -> None:
        """403 ``member_frozen`` for a frozen member (who may still sign in and read)."""
        if self.status != "active":
            raise Forbidden("this membership is frozen", code="member_frozen")


def issue_token(settings: Settings, member_id: int) -> tuple[str, int]:
    """A member access token and its expiry (unix seconds)."""
    return tokens.issue(settings.jwt_key(), member_id, MEMBER_TOKEN, settings.member_token_ttl)


async def member_from_token(conn: Conn, settings: Settings, token: str) -> Member:
    claims = tokens.decode(settings.jwt_key(), token, MEMBER_TOKEN)
    cur = await conn.execute(
        "SELECT m.id, m.brand_id, m.phone, m.status, EXISTS (SELECT 1 FROM "
        "member_token_revocations WHERE jti = %s) AS revoked, b.status AS brand_status "
        "FROM members m JOIN orgs b ON b.id = m.brand_id WHERE m.id = %s",
        (tokens.token_id(claims), int(claims["sub"])),
    )
    row = await cur.fetchone()
    if row is None or row["brand_status"] != "active":  # a brand turned off: its members too
        raise Unauthorized("unknown member", code="invalid_token")
    if row["revoked"]:  # signed out (app.members.auth.logout)
        raise Unauthorized("signed out: sign in again", code="token_revoked")
    if row["status"] == "erased":  # closed for good (app.members.erasure)
        raise Unauthorized("the membership was erased", code="member_erased")
    return Member(row["id"], row["brand_id"], row["phone"], row["status"])


def signed_member(settings: Settings, token: str) -> tuple[int, str] | None:
    """The member a token names and the token's id (``jti``, hex), by its signature and expiry
    alone (``member_from_token``'s first step; no database): the verifications record them
    (``app.verify``), and anything but a valid member token is None, never an error — a
    verification is answered whatever token came with it. A token signed out, or of a member
    erased or of another brand than the code's, still names its member here; the flusher
    (``app.verify.records``) stores no member of another brand, none of an erased one and none
    named by a token signed out before the verification (``member_token_revocations``)."""
    try:
        claims = tokens.decode(settings.jwt_key(), token, MEMBER_TOKEN)
        return tokens.user_id(claims), tokens.token_id(claims).hex
    except Exception:  # expired, forged, another kind, not a JWT at all
        return None


async def provide_member(request: Request[Any, Any, Any], conn: Conn, settings: Settings) -> Member:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("sign in as a member", code="unauthorized")
    return await member_from_token(conn, settings, token.strip())


def brand_of_staff(
    actor: Principal, permission: str = "members.read", what: str = "members are administered"
) -> int:
    """The brand whose members the caller administers: its own, if it is the brand's staff
    (members, their points and the gifts they redeem are the brand head office's; 403
    ``brand_staff_only`` below it, whatever role grants the permission). ``what``: the
    refusal's subject."""
    actor.require(permission)
    if actor.org_id != actor.brand_id:
        raise Forbidden(f"{what} by the brand's own staff", code="brand_staff_only")
    return actor.brand_id
