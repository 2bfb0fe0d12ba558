"""JWT access and refresh tokens (HS256)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from app.errors import Unauthorized

ISSUER = "tracecode"


def issue(key: bytes, user_id: int, kind: str, ttl: int, jti: str | None = None) -> tuple[str, int]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(user_id),
        "typ": kind,
        "iat": now,
        "exp": now + ttl,
        "jti": jti or uuid.uuid4().hex,
    }
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
    return claims
