"""JWT access and refresh tokens (HS256)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt
from litestar.datastructures import CacheControlHeader

from app.errors import Unauthorized

# The answers that hand out tokens (a staff login or refresh, a member's sign-in): their
# requests carry the secret in the body, so app.front's no-store of credentialed requests missed
# them (a probe; RFC 6749 5.1: an answer holding tokens is no-store).
TOKENS_NOT_KEPT = CacheControlHeader(no_store=True)

ISSUER = "tracecode"
_SUB = re.compile(r"[1-9][0-9]{0,17}")  # a user id: a positive bigint, in decimal
_JTI = re.compile(r"[0-9a-f]{32}")  # uuid4().hex
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z


def issue(
    key: bytes, user_id: int, kind: str, ttl: int, jti: str | None = None, sid: str | None = None
) -> tuple[str, int]:
    """A signed token and its expiry. ``sid``: a staff sign-in's session (``app.auth.service``),
    in both tokens of its pairs; an access token lives only as long as its session."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(user_id),
        "typ": kind,
        "iat": now,
        "exp": now + ttl,
        "jti": jti or uuid.uuid4().hex,
    }
    if sid is not None:
        claims["sid"] = sid
    return jwt.encode(claims, key, algorithm="HS256"), now + ttl


def decode(key: bytes, token: str, kind: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "typ", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired", code="token_expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token", code="invalid_token") from None
    if claims.get("typ") != kind:
        raise Unauthorized("wrong kind of token", code="invalid_token")
    # Signed by us, but check every claim we read: a hostile or buggy token is a 401, never a 500.
    sub, jti = claims.get("sub"), claims.get("jti")
    if not (isinstance(sub, str) and _SUB.fullmatch(sub)):
        raise Unauthorized("invalid token subject", code="invalid_token")
    if not (isinstance(jti, str) and _JTI.fullmatch(jti)):
        raise Unauthorized("invalid token id", code="invalid_token")
    sid = claims.get("sid")
    if sid is not None and not (isinstance(sid, str) and _JTI.fullmatch(sid)):
        raise Unauthorized("invalid token session", code="invalid_token")
    for name in ("exp", "iat"):
        value = claims.get(name)
        # bool is no timestamp, floats are not issued, and a time past 9999 (or before 1970) is
        # none a datetime or a bigint holds (a probe: 500 on logout, 400 on the session look-up)
        if type(value) is not int or not 0 <= value <= _LAST_SECOND:
            raise Unauthorized(f"invalid token claim {name}", code="invalid_token")
    return claims


def user_id(claims: dict[str, Any]) -> int:
    """The user id of claims checked by ``decode``."""
    return int(claims["sub"])


def session_id(claims: dict[str, Any]) -> uuid.UUID | None:
    """The session (``sid``) of claims checked by ``decode``; None in a token issued before
    sessions were (a release before migration 0051) and in members' tokens."""
    sid = claims.get("sid")
    return None if sid is None else uuid.UUID(hex=sid)


def token_id(claims: dict[str, Any]) -> uuid.UUID:
    """The refresh token's id (``jti``) of claims checked by ``decode``."""
    return uuid.UUID(hex=claims["jti"])
