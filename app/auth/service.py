"""Login with lockout, token refresh and logout, API keys, and loading the caller."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from app import audit
from app.auth import passwords, tokens
from app.auth.permissions import PERMISSIONS
from app.auth.principal import Principal
from app.auth.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut, TokenOut
from app.config import Settings
from app.db import Conn
from app.errors import NotFound, TooManyRequests, Unauthorized, ValidationFailed

_PRINCIPAL_SQL = """
SELECT u.id, u.username, u.org_id, o.path, u.status, o.status AS org_status,
       coalesce((SELECT array_agg(DISTINCT p)
                   FROM user_roles ur JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) p
                  WHERE ur.user_id = u.id), '{}') AS permissions
  FROM users u JOIN orgs o ON o.id = u.org_id
 WHERE u.id = %s
"""


async def login(conn: Conn, settings: Settings, username: str, password: str) -> TokenOut:
    row = await (
        await conn.execute(
            "SELECT u.id, u.password_hash, u.status, o.status AS org_status, u.locked_until, "
            "u.failed_logins FROM users u JOIN orgs o ON o.id = u.org_id "
            "WHERE u.username = %s FOR UPDATE OF u",
            (username,),
        )
    ).fetchone()
    now = datetime.now(UTC)
    if row and row["locked_until"] and row["locked_until"] > now:
        retry = int((row["locked_until"] - now).total_seconds()) + 1
        raise TooManyRequests(
            "too many failed logins; try again later",
            code="login_locked",
            details={"retry_after": retry},
            headers={"Retry-After": str(retry)},
        )
    ok = await asyncio.to_thread(
        passwords.verify_password, row["password_hash"] if row else None, password
    )
    if not ok or row is None:
        if row is not None:
            failures = row["failed_logins"] + 1
            locked = failures >= settings.login_max_failures
            await conn.execute(
                "UPDATE users SET failed_logins = %s, locked_until = %s WHERE id = %s",
                (
                    0 if locked else failures,
                    now + timedelta(seconds=settings.login_lockout_seconds) if locked else None,
                    row["id"],
                ),
            )
            await conn.commit()  # the failure must count even though the request fails
        raise Unauthorized("invalid username or password", code="invalid_credentials")
    if row["status"] != "active" or row["org_status"] != "active":
        raise Unauthorized("the account is inactive", code="account_inactive")
    await conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = now() "
        "WHERE id = %s",
        (row["id"],),
    )
    return await _issue_pair(conn, settings, row["id"])


async def _issue_pair(conn: Conn, settings: Settings, user_id: int) -> TokenOut:
    key = settings.jwt_key()
    access, expires = tokens.issue(key, user_id, "access", settings.access_token_ttl)
    jti = uuid.uuid4()
    refresh, refresh_expires = tokens.issue(
        key, user_id, "refresh", settings.refresh_token_ttl, jti=jti.hex
    )
    await conn.execute(
        "INSERT INTO refresh_tokens (id, user_id, expires_at) VALUES (%s, %s, to_timestamp(%s))",
        (jti, user_id, refresh_expires),
    )
    return TokenOut(access, refresh, "Bearer", expires, refresh_expires)


async def refresh(conn: Conn, settings: Settings, refresh_token: str) -> TokenOut:
    """Rotate: the presented refresh token is spent and a new pair issued."""
    claims = tokens.decode(settings.jwt_key(), refresh_token, "refresh")
    spent = await (
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() "
            "WHERE id = %s AND revoked_at IS NULL AND expires_at > now() RETURNING user_id",
            (uuid.UUID(hex=claims["jti"]),),
        )
    ).fetchone()
    if spent is None:
        raise Unauthorized("refresh token already used or revoked", code="invalid_token")
    principal = await load_user(conn, int(claims["sub"]))
    return await _issue_pair(conn, settings, principal.user_id or 0)


async def logout(conn: Conn, settings: Settings, refresh_token: str) -> None:
    claims = tokens.decode(settings.jwt_key(), refresh_token, "refresh")
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (uuid.UUID(hex=claims["jti"]),),
    )


async def load_user(conn: Conn, user_id: int) -> Principal:
    row = await (await conn.execute(_PRINCIPAL_SQL, (user_id,))).fetchone()
    if row is None or row["status"] != "active" or row["org_status"] != "active":
        raise Unauthorized("the account is inactive or gone", code="account_inactive")
    return Principal(
        org_id=row["org_id"],
        org_path=row["path"],
        permissions=frozenset(row["permissions"]),
        user_id=row["id"],
        username=row["username"],
    )


async def principal_from_headers(
    conn: Conn, settings: Settings, authorization: str | None, api_key: str | None
) -> Principal:
    if api_key:
        return await load_api_key(conn, api_key)
    if not authorization:
        raise Unauthorized("authentication required", code="unauthorized")
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        claims = tokens.decode(settings.jwt_key(), credential, "access")
        return await load_user(conn, int(claims["sub"]))
    if scheme.lower() == "apikey" and credential:
        return await load_api_key(conn, credential)
    raise Unauthorized("unsupported authorization scheme", code="unauthorized")


def _hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def load_api_key(conn: Conn, key: str) -> Principal:
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != "tck":
        raise Unauthorized("invalid API key", code="invalid_api_key")
    row = await (
        await conn.execute(
            "SELECT k.id, k.org_id, k.secret_hash, k.permissions, k.revoked_at, o.path, o.status "
            "FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.prefix = %s",
            (parts[1],),
        )
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), _hash_secret(parts[2])):
        raise Unauthorized("invalid API key", code="invalid_api_key")
    if row["revoked_at"] is not None or row["status"] != "active":
        raise Unauthorized("the API key is revoked", code="api_key_revoked")
    await conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = %s "
        "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        (row["id"],),
    )
    return Principal(
        org_id=row["org_id"],
        org_path=row["path"],
        permissions=frozenset(row["permissions"]),
        api_key_id=row["id"],
    )


def check_grantable(actor: Principal, permissions: list[str]) -> None:
    """Nobody hands out a permission they do not hold, or one that does not exist."""
    unknown = sorted(set(permissions) - PERMISSIONS.keys())
    if unknown:
        raise ValidationFailed(
            "unknown permission", code="unknown_permission", details={"unknown": unknown}
        )
    beyond = sorted(set(permissions) - actor.permissions)
    if beyond:
        raise ValidationFailed(
            "cannot grant permissions you do not hold",
            code="permission_escalation",
            details={"permissions": beyond},
        )


_KEY_COLUMNS = "id, org_id, name, prefix, permissions, created_at, last_used_at, revoked_at"


async def create_api_key(conn: Conn, actor: Principal, data: ApiKeyIn) -> ApiKeyCreated:
    actor.require("apikeys.write")
    org_id = data.org_id or actor.org_id
    org = await (await conn.execute("SELECT path FROM orgs WHERE id = %s", (org_id,))).fetchone()
    actor.ensure_sees(org["path"] if org else None)
    check_grantable(actor, data.permissions)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    row = await (
        await conn.execute(
            f"INSERT INTO api_keys (org_id, name, prefix, secret_hash, permissions, created_by) "
            f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_KEY_COLUMNS}",
            (
                org_id,
                data.name,
                prefix,
                _hash_secret(secret),
                sorted(set(data.permissions)),
                actor.user_id,
            ),
        )
    ).fetchone()
    assert row is not None
    out = ApiKeyOut(**row)
    await audit.record(conn, actor, "create", "api_key", out.id, after=out, org_id=org_id)
    return ApiKeyCreated(key=f"tck_{prefix}_{secret}", api_key=out)


async def list_api_keys(conn: Conn, actor: Principal) -> list[ApiKeyOut]:
    actor.require("apikeys.write")
    rows = await (
        await conn.execute(
            f"SELECT k.{_KEY_COLUMNS.replace(', ', ', k.')} FROM api_keys k "
            "JOIN orgs o ON o.id = k.org_id WHERE o.path LIKE %s ORDER BY k.id",
            (actor.org_path + "%",),
        )
    ).fetchall()
    return [ApiKeyOut(**r) for r in rows]


async def revoke_api_key(conn: Conn, actor: Principal, key_id: int) -> ApiKeyOut:
    actor.require("apikeys.write")
    row = await (
        await conn.execute(
            "SELECT k.id, o.path FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.id = %s",
            (key_id,),
        )
    ).fetchone()
    actor.ensure_sees(row["path"] if row else None, "API key")
    updated = await (
        await conn.execute(
            f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s "
            f"RETURNING {_KEY_COLUMNS}",
            (key_id,),
        )
    ).fetchone()
    if updated is None:
        raise NotFound("API key not found")
    out = ApiKeyOut(**updated)
    await audit.record(conn, actor, "revoke", "api_key", key_id, after=out)
    return out
