"""Login with lockout, token refresh and logout, API keys, and loading the caller."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NoReturn

from psycopg_pool import AsyncConnectionPool

from app import audit, locks
from app.auth import passwords, tokens
from app.auth.limits import LoginLimiter
from app.auth.permissions import PERMISSIONS
from app.auth.principal import Principal, brand_of
from app.auth.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut, PasswordChangeIn, TokenOut
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable, ValidationFailed
from app.paging import Page, fetch_page

log = logging.getLogger("tracecode.auth")


def org_status(alias: str) -> str:
    """SQL: the status of the organisation ``alias`` as far as access goes: 'active' while it
    and every organisation above it are (deactivating an agent or a brand turns off its whole
    subtree: its users, API keys and members)."""
    return f"""CASE WHEN EXISTS (
    SELECT 1 FROM orgs a
     WHERE a.id = ANY(string_to_array(trim(both '/' FROM {alias}.path), '/')::bigint[])
       AND a.status <> 'active') THEN 'inactive' ELSE 'active' END"""


ORG_STATUS = org_status("o")  # of the organisation aliased ``o``


def session_live(sid: str, iat: str) -> str:
    """SQL: whether an access token of the user aliased ``u``, of session ``sid`` issued at
    ``iat`` (epoch seconds), still works: its session has a live refresh token (a sign-out, a
    password set, the account deactivated or moved revoke them). A token without a session
    (issued before migration 0051): issued at or after the user's ``sessions_from``. Both NULL
    (the user looked up without a token): true."""
    return f"""CASE WHEN {sid} IS NOT NULL THEN EXISTS (
    SELECT 1 FROM refresh_tokens t
     WHERE t.session_id = {sid} AND t.user_id = u.id AND t.revoked_at IS NULL
       AND t.expires_at > now())
  ELSE {iat} IS NULL OR u.sessions_from IS NULL
       OR {iat} >= extract(epoch FROM u.sessions_from) END"""


_PRINCIPAL_SQL = f"""
SELECT u.id, u.username, u.org_id, o.path, u.status, {ORG_STATUS} AS org_status,
       u.must_change_password,
       {session_live("%(sid)s::uuid", "%(iat)s::bigint")} AS session_live,
       coalesce((SELECT array_agg(DISTINCT p)
                   FROM user_roles ur JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) p
                  WHERE ur.user_id = u.id), '{{}}') AS permissions
  FROM users u JOIN orgs o ON o.id = u.org_id
 WHERE u.id = %(id)s
"""


# The argon2 checks of log-ins and password changes, per process (its event loop): at most as
# many at once as the default thread pool runs (``asyncio.to_thread``'s), each waiting for its
# turn before it asks for any connection. A check holds no pooled connection either: the row is
# read in a short transaction, the connection given back, the password checked, and the write
# made in a transaction of its own that checks again what the first one read (a probe: a burst
# of right-password log-ins, never counted against the limits, each held a connection idle in
# its transaction through argon2, and every other page of the API waited for one, then 503).
CHECK_SLOTS = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default size
_CHECKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def password_checks() -> asyncio.Semaphore:
    """The running event loop's turns of argon2 checks (``CHECK_SLOTS`` of them)."""
    loop = asyncio.get_running_loop()
    slots = _CHECKS.get(loop)
    if slots is None:
        slots = _CHECKS[loop] = asyncio.Semaphore(CHECK_SLOTS)
    return slots


_LOGIN_ROW = f"""
SELECT u.id, u.password_hash, u.status, {ORG_STATUS} AS org_status
  FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.username = %s"""


async def login(
    pool: AsyncConnectionPool[Conn],
    settings: Settings,
    limiter: LoginLimiter,
    client_ip: str,
    username: str,
    password: str,
) -> TokenOut:
    """Password login under the limits of ``app.auth.limits`` (per IP, per account + IP, per
    account); unknown names cost the same argon2 check and count like wrong passwords. No
    connection is held while argon2 runs (``password_checks``): the user is read, the password
    checked, and the pair issued in a transaction of its own that checks the row again."""
    await limiter.attempt(username, client_ip)
    async with password_checks():  # before any connection: a log-in queued here holds nothing
        async with pool.connection() as conn:  # given back before the check
            row = await (await conn.execute(_LOGIN_ROW, (username,))).fetchone()
        stored = row["password_hash"] if row else None
        ok = await asyncio.to_thread(passwords.verify_password, stored, password)
    if not ok or row is None:  # the attempt stays counted as a failure
        raise Unauthorized("invalid username or password", code="invalid_credentials")
    if row["status"] != "active" or row["org_status"] != "active":
        raise Unauthorized("the account is inactive", code="account_inactive")
    await limiter.succeeded(username, client_ip)
    # the organisation's line held live to the end (``_hold_org_line``) and the row as checked,
    # locked to the end: a password set or the account or its organisation deactivated during
    # the check (argon2, ~0.1 s) refuses this log-in, and one after it waits for this one and
    # then ends its session too (review R5)
    async with pool.connection() as conn:  # committed as the block ends
        org_id = await _hold_org_line(conn, row["id"])
        still = await (
            await conn.execute(
                "UPDATE users SET last_login_at = now() WHERE id = %s AND password_hash = %s "
                "AND status = 'active' AND org_id = %s RETURNING id",
                (row["id"], row["password_hash"], org_id),
            )
        ).fetchone()
        if still is None:
            raise Unauthorized("invalid username or password", code="invalid_credentials")
        return await _issue_pair(conn, settings, row["id"])


Caller = Callable[[Conn], Awaitable[Principal]]  # loads the request's caller on a connection


async def change_password(
    pool: AsyncConnectionPool[Conn],
    settings: Settings,
    limiter: LoginLimiter,
    client_ip: str,
    actor: Principal,
    data: PasswordChangeIn,
    *,
    reload: Caller,
) -> TokenOut:
    """The caller's own password (an imported user's initial one, say): the current one is
    checked under the log-in limits (422 ``wrong_password``), every session of the user ends,
    and this one goes on with a new pair. A reset or the end of the user's sessions while it
    runs wins: the change is refused (``_changed_meanwhile``). No connection is held during the
    hashes (``password_checks``, as ``login``); the caller (``actor`` as loaded before) is loaded
    again by ``reload`` in the transaction that reads the row, once its turn has come (a session
    ended while the change waited for it: 401 as any request)."""
    if actor.user_id is None or actor.username is None:
        raise Forbidden("an API key has no password", code="not_a_user")
    await limiter.attempt(actor.username, client_ip)
    async with password_checks():  # before any connection, as ``login``'s
        async with pool.connection() as conn:  # given back before the checks
            actor = await reload(conn)
            row = await (
                await conn.execute(
                    "SELECT password_hash, sessions_from FROM users WHERE id = %s",
                    (actor.user_id,),
                )
            ).fetchone()
        current = row["password_hash"] if row else None
        if not await asyncio.to_thread(passwords.verify_password, current, data.current_password):
            raise Unprocessable("the current password is wrong", code="wrong_password")
        assert row is not None
        await limiter.succeeded(actor.username or "", client_ip)
        if passwords.same(data.new_password, data.current_password):  # kept: no change
            raise Unprocessable("the new password is the current one", code="same_password")
        new_hash = await asyncio.to_thread(passwords.hash_password, data.new_password)
    async with pool.connection() as conn:  # committed as the block ends
        return await _write_password(conn, settings, actor, current, new_hash, row["sessions_from"])


async def _write_password(
    conn: Conn,
    settings: Settings,
    actor: Principal,
    current: str | None,
    new_hash: str,
    sessions_from: datetime | None,
) -> TokenOut:
    """``change_password``'s write: the new hash over the row as checked (``current``,
    ``sessions_from``), every session ended, and a new pair."""
    user_id = actor.user_id
    assert user_id is not None
    # the row as checked, locked from here to the end (not during the hashes): a reset, or the
    # sessions ended (the account deactivated or moved), committed during the checks refuses
    # this change, and one after it waits for this one and then ends the new session too
    # (a probe: an intruder's change overwrote the administrator's reset and got a new pair;
    # review R5, as ``login``); its organisation's line too (``_hold_org_line``)
    org_id = await _hold_org_line(conn, user_id)
    changed = await (
        await conn.execute(
            "UPDATE users SET password_hash = %s, failed_logins = 0, locked_until = NULL, "
            "must_change_password = false, updated_at = now() "
            "WHERE id = %s AND password_hash = %s AND status = 'active' AND org_id = %s "
            "AND sessions_from IS NOT DISTINCT FROM %s RETURNING id",
            (new_hash, user_id, current, org_id, sessions_from),
        )
    ).fetchone()
    if changed is None:
        await _changed_meanwhile(conn, user_id, sessions_from)
    await end_sessions(conn, user_id)
    await audit.record(conn, actor, "change_password", "user", user_id)
    return await _issue_pair(conn, settings, user_id)


_ORG_LINE_SQL = """
SELECT u.org_id, o.path AS seen, a.id, a.path, a.status
  FROM users u JOIN orgs o ON o.id = u.org_id
  JOIN orgs a ON a.id = ANY(string_to_array(trim(both '/' FROM o.path), '/')::bigint[])
 WHERE u.id = %s ORDER BY length(a.path), a.id FOR SHARE OF a"""


async def _hold_org_line(conn: Conn, user_id: int) -> int:
    """The user's organisation, its line (it and every organisation above it, ``ORG_STATUS``'s)
    locked ``FOR SHARE`` to the end of the transaction, and live, else 401 ``account_inactive``.
    A deactivation committed meanwhile is seen (a locked row is read as it is now, not as of the
    statement's start), and one under way waits for this transaction (its ``UPDATE`` of the
    row): no pair is issued after a deactivation answered (probes: a log-in and a password
    change checked the organisation before argon2 and answered 200 with a pair after it).
    Top down, as a move locks its new parent and then the rows moved; before the user's row, as
    a deactivation or a move locks organisations before users. The user's organisation moved
    meanwhile (its path as locked is not the one read): read again, under the lock now held."""
    for _ in range(3):
        rows = await (await conn.execute(_ORG_LINE_SQL, (user_id,))).fetchall()
        own = next((r for r in rows if r["id"] == r["org_id"]), None)
        if own is None:
            raise Unauthorized("the account is inactive or gone", code="account_inactive")
        if own["path"] != own["seen"]:
            continue
        if any(r["status"] != "active" for r in rows):
            raise Unauthorized("the account is inactive", code="account_inactive")
        return int(own["org_id"])
    raise Conflict("the organisation moved meanwhile; try again", code="retry")


async def _changed_meanwhile(conn: Conn, user_id: int, sessions_from: datetime | None) -> NoReturn:
    """Refuse a password change whose user changed between its check and its write: 401 as
    ``load_user`` once the account is inactive or its sessions were ended (a reset does), else
    422 ``wrong_password`` (the password checked is no longer the current one)."""
    await load_user(conn, user_id)  # 401 account_inactive
    row = await (
        await conn.execute("SELECT sessions_from FROM users WHERE id = %s", (user_id,))
    ).fetchone()
    if row is None or row["sessions_from"] != sessions_from:
        raise Unauthorized("the session was ended: sign in again", code="token_revoked")
    raise Unprocessable("the current password is wrong", code="wrong_password")


async def _issue_pair(
    conn: Conn, settings: Settings, user_id: int, session: uuid.UUID | None = None
) -> TokenOut:
    """A new pair of ``session`` (a refresh goes on with its token's), or of a new session."""
    key, sid = settings.jwt_key(), (session or uuid.uuid4()).hex
    access, expires = tokens.issue(key, user_id, "access", settings.access_token_ttl, sid=sid)
    jti = uuid.uuid4()
    refresh, refresh_expires = tokens.issue(
        key, user_id, "refresh", settings.refresh_token_ttl, jti=jti.hex, sid=sid
    )
    await conn.execute(
        "INSERT INTO refresh_tokens (id, user_id, expires_at, session_id) "
        "VALUES (%s, %s, to_timestamp(%s), %s)",
        (jti, user_id, refresh_expires, uuid.UUID(hex=sid)),
    )
    # the user's dead rows go as it gets new ones (probe W: a row per log-in and refresh, kept
    # for ever): expired ones, and ones spent or revoked a week ago (one sent again later is
    # refused all the same, without ending the user's sessions as a fresh replay does)
    await conn.execute(
        "DELETE FROM refresh_tokens WHERE user_id = %s "
        "AND (expires_at < now() OR revoked_at < now() - make_interval(days => %s))",
        (user_id, SPENT_KEPT_DAYS),
    )
    return TokenOut(access, refresh, "Bearer", expires, refresh_expires)


async def refresh(conn: Conn, settings: Settings, refresh_token: str) -> TokenOut:
    """Rotate: the presented refresh token is spent and a new pair issued."""
    claims = tokens.decode(settings.jwt_key(), refresh_token, "refresh")
    await _hold(conn, tokens.user_id(claims), "FOR SHARE")
    spent = await (
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now(), spent = true "
            "WHERE id = %s AND revoked_at IS NULL AND expires_at > now() "
            "RETURNING user_id, session_id",
            (tokens.token_id(claims),),
        )
    ).fetchone()
    if spent is None:
        # the share of the user's row goes first: two replays at once, each asking for it
        # exclusively while holding it shared, deadlocked (nothing was written yet)
        await conn.rollback()
        raced = await _replayed(conn, tokens.token_id(claims))
        refused = RefreshRaced if raced else Unauthorized
        raise refused("refresh token already used or revoked", code="invalid_token")
    principal = await load_user(conn, tokens.user_id(claims))
    return await _issue_pair(conn, settings, principal.user_id or 0, spent["session_id"])


class RefreshRaced(Unauthorized):
    """A refresh token spent by a refresh less than ``REPLAY_GRACE`` ago, sent again: a client's
    race (two requests with the same token), only refused. The same 401 ``invalid_token`` as any
    spent token; told apart for the clerk's pages, whose other request holds the new pair (a
    probe: the refused one dropped the session cookies, signing the clerk out)."""


_TOKEN_STATE = """
SELECT revoked_at IS NULL AND expires_at > now() AS live,
       spent AND revoked_at >= now() - make_interval(secs => %s) AS raced
  FROM refresh_tokens WHERE id = %s
"""


async def session_access(conn: Conn, settings: Settings, refresh_token: str) -> str:
    """An access token, never sent, of a live refresh token's session, nothing written: what the
    HEAD of a page that would renew the pair looks its user up by (a HEAD has no side effect of
    its GET: a probe's spent the token). 401 ``invalid_token`` as ``refresh`` refuses it."""
    claims = tokens.decode(settings.jwt_key(), refresh_token, "refresh")
    row = await (
        await conn.execute(_TOKEN_STATE, (REPLAY_GRACE, tokens.token_id(claims)))
    ).fetchone()
    if row is None or not row["live"]:
        refused = RefreshRaced if row is not None and row["raced"] else Unauthorized
        raise refused("refresh token already used or revoked", code="invalid_token")
    key, user_id, sid = settings.jwt_key(), tokens.user_id(claims), claims.get("sid")
    access, _ = tokens.issue(key, user_id, "access", settings.access_token_ttl, sid=sid)
    return access


async def end_sessions(conn: Conn, user_id: int) -> None:
    """End every session of a user: its refresh tokens, and its access tokens issued so far
    (a password set, the account deactivated or moved). A token of these sessions sent again
    later is refused, and ends nothing more: spent ones are no longer told apart (an old
    stolen token ended the sessions anew after every password change: probe)."""
    await _hold(conn, user_id, "FOR UPDATE")
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()), spent = false "
        "WHERE user_id = %s AND (revoked_at IS NULL OR spent)",
        (user_id,),
    )
    await conn.execute(  # by the clock that stamps the tokens' iat, in whole seconds
        "UPDATE users SET sessions_from = to_timestamp(%s) WHERE id = %s",
        (int(time.time()), user_id),
    )


async def _hold(conn: Conn, user_id: int, mode: str) -> None:
    """Lock the user's row to the end of the transaction: a refresh (``FOR SHARE``) and the end
    of sessions (``FOR UPDATE``) go one after the other (review R5: a refresh at the moment of a
    reset inserted a token the reset's revocation never saw, and the session lived on)."""
    await conn.execute(f"SELECT 1 FROM users WHERE id = %s {mode}", (user_id,))


REPLAY_GRACE = 30  # seconds: a spent refresh token sent again this soon is a client's race
SPENT_KEPT_DAYS = 7  # a spent or revoked refresh token's row is kept this long (replays)


async def _replayed(conn: Conn, token_id: uuid.UUID) -> bool:
    """A refresh token spent by a refresh a while ago came back: a copy of it is in other
    hands, and whichever side refreshed since holds a live one. End every session of the user
    (committed now: the request itself fails). One revoked by a sign-out or by the end of the
    user's sessions is only refused (a probe: a signed-out tab's retry ended every other
    session), and so is one spent within ``REPLAY_GRACE``: a client's race, told by True."""
    row = await (
        await conn.execute(
            "SELECT t.user_id, u.org_id, "
            "t.revoked_at >= now() - make_interval(secs => %s) AS raced "
            "FROM refresh_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = %s AND t.spent",
            (REPLAY_GRACE, token_id),
        )
    ).fetchone()
    if row is not None and row["raced"]:
        return True
    if row is not None:
        await end_sessions(conn, row["user_id"])
        await audit.record(  # a security change like any other (a probe: only logged)
            conn, None, "end_sessions", "user", row["user_id"],
            after={"reason": "refresh_token_replayed"}, org_id=row["org_id"],
        )  # fmt: skip
        await conn.commit()
        log.warning(
            "a spent refresh token was replayed: every session of the user ended",
            extra={"user_id": row["user_id"]},
        )
    return False


async def logout(conn: Conn, settings: Settings, refresh_token: str) -> None:
    """End the refresh token's session: its access tokens stop working at once."""
    claims = tokens.decode(settings.jwt_key(), refresh_token, "refresh")
    await _hold(conn, tokens.user_id(claims), "FOR UPDATE")  # after a refresh in flight
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() "
        "WHERE (id = %s OR session_id = %s) AND user_id = %s AND revoked_at IS NULL",
        (tokens.token_id(claims), tokens.session_id(claims), tokens.user_id(claims)),
    )


async def load_user(
    conn: Conn, user_id: int, issued_at: int | None = None, session: uuid.UUID | None = None
) -> Principal:
    """The user as a caller; with an access token's ``iat`` and session (``sid``), 401
    ``token_revoked`` once that session has ended (``session_live``)."""
    params = {"id": user_id, "sid": session, "iat": issued_at}
    row = await (await conn.execute(_PRINCIPAL_SQL, params)).fetchone()
    if row is None or row["status"] != "active" or row["org_status"] != "active":
        raise Unauthorized("the account is inactive or gone", code="account_inactive")
    if not row["session_live"]:
        raise Unauthorized("the session was ended: sign in again", code="token_revoked")
    return Principal(
        org_id=row["org_id"],
        org_path=row["path"],
        permissions=frozenset(row["permissions"]),
        user_id=row["id"],
        username=row["username"],
        password_change_due=row["must_change_password"],
    )


def password_change_required() -> Forbidden:
    """The refusal of every request of a user whose password someone else chose (an ERP
    import's initial one, a reset asking for a change), until the user replaces it."""
    return Forbidden(
        "change the password you were given first (POST /auth/password)",
        code="password_change_required",
    )


def require_credentials(authorization: str | None, api_key: str | None) -> None:
    """401 ``unauthorized`` for a request that carries no credentials at all: neither
    ``Authorization`` nor ``X-API-Key``. Cheap (no database, no signature): ``app.deps`` asks it
    before a route that takes the caller reads the body."""
    if not api_key and not authorization:
        raise Unauthorized("authentication required", code="unauthorized")


async def principal_from_headers(
    conn: Conn,
    settings: Settings,
    authorization: str | None,
    api_key: str | None,
    pool: AsyncConnectionPool[Conn] | None = None,
) -> Principal:
    """The caller of a request's headers (401 without valid credentials). With ``pool``, an API
    key's last use is written on a connection of its own (``load_api_key``)."""
    require_credentials(authorization, api_key)
    if api_key:
        return await load_api_key(conn, api_key, pool)
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        claims = tokens.decode(settings.jwt_key(), credential, "access")
        user = tokens.user_id(claims)
        return await load_user(conn, user, claims["iat"], tokens.session_id(claims))
    if scheme.lower() == "apikey" and credential:
        return await load_api_key(conn, credential, pool)
    raise Unauthorized("unsupported authorization scheme", code="unauthorized")


def _hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


# tck_<12 hex prefix>_<43 url-safe base64 characters without "_">, as ``create_api_key`` makes
_API_KEY = re.compile(r"tck_([0-9a-f]{12})_([A-Za-z0-9-]{43})")


# the last use of a key is written at most once a minute (``_note_use``)
_USE_DUE = "(k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')"

# A key never outlives or outranks the user who made it: it works while that user is active
# (and its organisations) and its organisation is still in that user's subtree (a user moved
# away leaves its keys behind, dead: probe U), with those of its permissions the user still
# holds.
_API_KEY_SQL = f"""
SELECT k.id, k.org_id, k.secret_hash, k.permissions, k.revoked_at, o.path, k.created_by,
       {ORG_STATUS} AS status, {_USE_DUE} AS use_due,
       k.created_by IS NULL
           OR (c.status = 'active' AND {org_status("co")} = 'active'
               AND starts_with(o.path, co.path)) AS creator_active,
       CASE WHEN k.created_by IS NOT NULL THEN
           coalesce((SELECT array_agg(DISTINCT p)
                       FROM user_roles ur JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) p
                      WHERE ur.user_id = k.created_by), '{{}}') END AS creator_permissions
  FROM api_keys k JOIN orgs o ON o.id = k.org_id
  LEFT JOIN users c ON c.id = k.created_by LEFT JOIN orgs co ON co.id = c.org_id
"""


async def load_api_key(
    conn: Conn, key: str, pool: AsyncConnectionPool[Conn] | None = None
) -> Principal:
    """The caller of an API key, read as it is now (a revoked key is refused at once). Its last
    use is written once a minute, never in ``conn``'s transaction: with ``pool``, after this, on
    a connection of its own (``_note_use``); without, not at all."""
    match = _API_KEY.fullmatch(key)
    if match is None:  # checked before anything reaches the database
        raise Unauthorized("invalid API key", code="invalid_api_key")
    prefix, secret = match.groups()
    row = await (await conn.execute(_API_KEY_SQL + " WHERE k.prefix = %s", (prefix,))).fetchone()
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), _hash_secret(secret)):
        raise Unauthorized("invalid API key", code="invalid_api_key")
    principal = _key_principal(row)
    if pool is not None and row["use_due"]:
        _note_use(pool, row["id"])
    return principal


_noted: dict[int, float] = {}  # key id -> when this process last wrote its use (monotonic)
_writes: set[asyncio.Task[None]] = set()  # the writes under way (a task needs a reference)


def _note_use(pool: AsyncConnectionPool[Conn], key_id: int) -> None:
    """Write the key's ``last_used_at`` in the background, once a minute per process at most.

    Bookkeeping never holds up a request: written in the request's transaction, the first
    request of a minute held the key's row lock to its end, and every other request of the key
    (and its revocation) waited for it (a probe: one slow export stalled a partner's every
    call). Here the statement commits on its own (autocommit) and skips a row another
    transaction holds (a revocation, a key being made with it): that use goes unwritten, the
    next minute's is."""
    now = time.monotonic()
    if now - _noted.get(key_id, float("-inf")) < 60:
        return
    _noted[key_id] = now
    task = asyncio.get_running_loop().create_task(_write_use(pool, key_id))
    _writes.add(task)
    task.add_done_callback(_writes.discard)


async def _write_use(pool: AsyncConnectionPool[Conn], key_id: int) -> None:
    try:
        async with pool.connection() as conn:
            await conn.set_autocommit(True)  # the pool turns it off again as it is given back
            await conn.execute(
                f"UPDATE api_keys SET last_used_at = now() WHERE id = ("
                f"SELECT k.id FROM api_keys k WHERE k.id = %s AND {_USE_DUE} "
                f"FOR UPDATE SKIP LOCKED)",
                (key_id,),
            )
    except Exception as exc:  # a stale last use, never an error of anyone's request
        log.warning("the last use of API key %s was not written: %r", key_id, exc)


async def load_api_key_by_id(conn: Conn, key_id: int) -> Principal:
    """The principal of an API key by its id, as ``load_api_key`` makes it now — 401 when it is
    revoked, its organisation inactive, its maker gone — for work the key handed over (an EPCIS
    capture job: probe, a job ran after its key had stopped working)."""
    row = await (await conn.execute(_API_KEY_SQL + " WHERE k.id = %s", (key_id,))).fetchone()
    if row is None:
        raise Unauthorized("invalid API key", code="invalid_api_key")
    return _key_principal(row)


def _key_principal(row: dict[str, Any]) -> Principal:
    if row["revoked_at"] is not None:
        raise Unauthorized("the API key is revoked", code="api_key_revoked")
    if row["status"] != "active":  # works again when the organisation does (probe Y; review
        # R6: before the maker's check, which a maker of that organisation fails as well)
        raise Unauthorized("the key's organisation is inactive", code="account_inactive")
    if not row["creator_active"]:
        raise Unauthorized("the API key is revoked", code="api_key_revoked")
    held = frozenset(row["permissions"])
    if row["creator_permissions"] is not None:
        held &= frozenset(row["creator_permissions"])
    return Principal(
        org_id=row["org_id"],
        org_path=row["path"],
        permissions=held,
        api_key_id=row["id"],
        key_maker=row["created_by"],
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


async def permissions_held_below(conn: Conn, org_path: str) -> list[str]:
    """Every permission held by a user or a live API key of an organisation subtree."""
    row = await (
        await conn.execute(
            """SELECT coalesce(array_agg(DISTINCT p), '{}') AS permissions FROM (
                   SELECT unnest(r.permissions) AS p
                     FROM orgs o JOIN users u ON u.org_id = o.id
                     JOIN user_roles ur ON ur.user_id = u.id JOIN roles r ON r.id = ur.role_id
                    WHERE o.path LIKE %(prefix)s
                   UNION ALL
                   SELECT unnest(k.permissions) FROM orgs o JOIN api_keys k ON k.org_id = o.id
                    WHERE o.path LIKE %(prefix)s AND k.revoked_at IS NULL) held""",
            {"prefix": org_path + "%"},
        )
    ).fetchone()
    return list(row["permissions"]) if row else []


def ensure_not_stronger(actor: Principal, held: list[str], what: str) -> None:
    """Nobody resets, edits, disables or revokes what holds a permission they do not hold:
    the rule of granting, applied to the accounts (users, roles, API keys) one changes."""
    beyond = actor.lacks(held)
    if beyond:
        raise Forbidden(
            f"the {what} holds permissions you do not hold",
            code="stronger_account",
            details={"permissions": beyond},
        )


_KEY_COLUMNS = "id, org_id, name, prefix, permissions, created_at, last_used_at, revoked_at"


async def _key_org(conn: Conn, actor: Principal, org_id: int) -> str:
    """The path of the organisation a key is made for: one the caller sees, whose line is live
    (a probe: a key made silently under a deactivated agent, 422 ``org_inactive``)."""
    org = await (
        await conn.execute(
            f"SELECT path, {ORG_STATUS} AS status FROM orgs o WHERE id = %s", (org_id,)
        )
    ).fetchone()
    if org is None:
        raise NotFound("organisation not found")
    actor.ensure_sees(org["path"])
    if org["status"] != "active":
        raise Unprocessable("the organisation is inactive", code="org_inactive")
    return str(org["path"])


async def create_api_key(conn: Conn, actor: Principal, data: ApiKeyIn) -> ApiKeyCreated:
    actor.require("apikeys.write")
    # 0 names no organisation (404 as any other), not the caller's own (a probe: brand-wide)
    org_id = actor.org_id if data.org_id is None else data.org_id
    path = await _key_org(conn, actor, org_id)
    check_grantable(actor, data.permissions)
    if actor.api_key_id is not None:  # its revocation waits, and then revokes this one too;
        # one committed first leaves nothing to make keys with (review R5: a key made at the
        # moment its maker was revoked escaped the revocation of the keys it had made)
        live = await (
            await conn.execute(
                "SELECT 1 FROM api_keys WHERE id = %s AND revoked_at IS NULL FOR SHARE",
                (actor.api_key_id,),
            )
        ).fetchone()
        if live is None:
            raise Unauthorized("the API key is revoked", code="api_key_revoked")
    # a grant as a role's to a user: made under the brand's role-name lock, as a deactivation or
    # a move of the organisation checks what is held below it and writes (probes: a weaker
    # administrator's deactivation or move did not see a stronger key made meanwhile; a key
    # made as its organisation was deactivated came out live in it) — taken before the insert's
    # key share of the organisation's row (``Lock.ROLE_NAMES``), after the maker's row (no
    # holder of the lock waits for a key's row), and the organisation read again under it
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(path))
    await _key_org(conn, actor, org_id)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    row = await (
        await conn.execute(
            # a key made by a key answers to the user who made that one
            # (and is revoked with that key: ``revoke_api_key``)
            f"INSERT INTO api_keys "
            f"(org_id, name, prefix, secret_hash, permissions, created_by, made_by_key) "
            f"VALUES (%(org)s, %(name)s, %(prefix)s, %(hash)s, %(permissions)s, "
            f"coalesce(%(user)s, (SELECT created_by FROM api_keys WHERE id = %(key)s)), %(key)s) "
            f"RETURNING {_KEY_COLUMNS}",
            {
                "org": org_id,
                "name": data.name,
                "prefix": prefix,
                "hash": _hash_secret(secret),
                "permissions": sorted(set(data.permissions)),
                "user": actor.user_id,
                "key": actor.api_key_id,
            },
        )
    ).fetchone()
    assert row is not None
    out = ApiKeyOut(**row)
    await audit.record(conn, actor, "create", "api_key", out.id, after=out, org_id=org_id)
    return ApiKeyCreated(key=f"tck_{prefix}_{secret}", api_key=out)


async def list_api_keys(conn: Conn, actor: Principal, page: int, per_page: int) -> Page[ApiKeyOut]:
    """The API keys of the caller's subtree, oldest first."""
    actor.require("apikeys.write")
    return await fetch_page(
        conn,
        columns=f"k.{_KEY_COLUMNS.replace(', ', ', k.')}",
        source="api_keys k JOIN orgs o ON o.id = k.org_id",
        where=["o.path LIKE %(prefix)s"],
        params={"prefix": actor.org_path + "%"},
        order="k.id",
        page=page,
        per_page=per_page,
        make=lambda row: ApiKeyOut(**row),
    )


async def _api_key(conn: Conn, key_id: int) -> ApiKeyOut:
    row = await (
        await conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
    ).fetchone()
    if row is None:
        raise NotFound("API key not found")
    return ApiKeyOut(**row)


async def revoke_api_key(conn: Conn, actor: Principal, key_id: int) -> ApiKeyOut:
    actor.require("apikeys.write")
    row = await (
        await conn.execute(
            "SELECT k.id, k.permissions, o.path FROM api_keys k "
            "JOIN orgs o ON o.id = k.org_id WHERE k.id = %s",
            (key_id,),
        )
    ).fetchone()
    actor.ensure_sees(row["path"] if row else None, "API key")
    assert row is not None
    ensure_not_stronger(actor, row["permissions"], "API key")
    # revoked once: a revocation again is no event (a probe), nor is one that waited for
    # another's at once (a double click: both read it live, a probe): only the statement that
    # changed it from NULL is audited
    updated = await (
        await conn.execute(
            f"UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL "
            f"RETURNING {_KEY_COLUMNS}",
            (key_id,),
        )
    ).fetchone()
    if updated is not None:
        out = ApiKeyOut(**updated)
        await audit.record(conn, actor, "revoke", "api_key", key_id, after=out, org_id=out.org_id)
    else:
        out = await _api_key(conn, key_id)
    # The keys it made, and theirs: their holder had this one. Again until none is left: a
    # key made while this ran (its maker held FOR SHARE, so the update waited for it) was not in
    # the statement's snapshot, and the next statement's sees it (review: it stayed valid).
    made: list[dict[str, Any]] = []
    while rows := await (
        await conn.execute(
            """WITH RECURSIVE made AS (
                   SELECT id FROM api_keys WHERE made_by_key = %(id)s
                   UNION SELECT k.id FROM api_keys k JOIN made ON k.made_by_key = made.id)
               UPDATE api_keys k SET revoked_at = now() FROM made
                WHERE k.id = made.id AND k.revoked_at IS NULL RETURNING k.id, k.org_id""",
            {"id": key_id},
        )
    ).fetchall():
        made.extend(rows)
    for child in made:
        await audit.record(
            conn,
            actor,
            "revoke",
            "api_key",
            child["id"],
            org_id=child["org_id"],
            after={"revoked_with": key_id},
        )
    return out
