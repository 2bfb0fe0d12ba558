"""Login limits in Redis: brute force is slowed down, and nobody can lock out someone else.

Three counters of failed attempts (a successful login never counts):

* per client IP, over every account (unknown names too): ``login_ip_max_failures`` within
  ``login_ip_window_seconds`` → 429 ``rate_limited`` for that IP;
* per account and client IP: ``login_max_failures`` → that IP is locked out of that account for
  ``login_lockout_seconds`` (429 ``login_locked``); the real user, elsewhere, still logs in;
* per account over all IPs: ``login_account_max_failures`` within ``login_lockout_seconds`` (a
  guess from many addresses) → the account is locked for every IP except those it logged in
  from successfully during the last ``KNOWN_CLIENT_SECONDS``.

The client IP is the socket's peer address (an IPv6 client counts by its /64, which one host
usually has whole); forwarded headers are never trusted. With Redis unreachable the limits are
skipped (logged): argon2 still makes every guess expensive.

An attempt is counted as a failure *before* the password is checked (``attempt``) and taken
back when it was right (``succeeded``): counted afterwards, guesses sent in parallel all passed
the limits before the first failure was recorded (200 at once from one address had 24 passwords
checked against a limit of 5). An attempt that ends in neither (an inactive account, an error)
stays counted.

Each attempt is two scripts: the IP's counter, then the account's keys, which on a Redis
Cluster carry the account as their hash tag so that one script touches one slot
(``app.redisconn``); on one server the key names are untagged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time

from litestar.datastructures import State

from app.config import Settings
from app.errors import TooManyRequests
from app.redisconn import UNAVAILABLE, AnyRedis, is_cluster, script

log = logging.getLogger("tracecode.auth")

KNOWN_CLIENT_SECONDS = 30 * 86400  # an IP that logged in stays known for the account this long
_REDIS_DOWN = UNAVAILABLE

# KEYS: ip counter. ARGV: ip max, ip window, 1 to count an attempt (else 0: check only).
# Answers {verdict, seconds}.
_IP = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return {'rate', redis.call('TTL', KEYS[1])} end
if ARGV[3] == '1' and redis.call('INCR', KEYS[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {'ok', 0}
"""

# KEYS: account locks (hash ip -> until), account counter, known clients (hash ip -> last
# success), account failures (hash ip -> n). ARGV: ip, now, account max, max failures (account
# + ip), lockout seconds, 1 to count an attempt (else 0: check only), seconds an address stays
# known. Answers {verdict, seconds}. A counted
# attempt is a failure in advance: the address that reaches the max is locked out of the
# account from now on (this attempt itself goes ahead).
_ACCOUNT = """
local now, lockout = tonumber(ARGV[2]), tonumber(ARGV[5])
local locked = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if locked > now then return {'locked', locked - now} end
local a = tonumber(redis.call('GET', KEYS[2]) or '0')
if a >= tonumber(ARGV[3]) then
  local seen = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
  if now - seen >= tonumber(ARGV[7]) then return {'locked', redis.call('TTL', KEYS[2])} end
end
if ARGV[6] ~= '1' then return {'ok', 0} end
local f = redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('EXPIRE', KEYS[4], lockout)
if f >= tonumber(ARGV[4]) then
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('HSET', KEYS[1], ARGV[1], now + lockout)
  redis.call('EXPIRE', KEYS[1], lockout)
end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], lockout) end
return {'ok', 0}
"""

# KEYS: account failures, account locks, account counter, known clients.
# ARGV: ip, now, seconds an address stays known.
# The attempt was right: its failure counted in advance is taken back, this address's
# failures and lock are forgotten, and the address becomes a known client; addresses not
# seen for that long are forgotten (probe W: they stayed known, and the hash grew, for as long
# as any address logged in every 30 days).
_SUCCEEDED = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
local now, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
local known = redis.call('HGETALL', KEYS[4])
for i = 1, #known, 2 do
  if now - tonumber(known[i + 1]) >= keep then redis.call('HDEL', KEYS[4], known[i]) end
end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[3])
"""

# KEYS: a counter. One failure counted in advance taken back (never below 0; TTL kept).
_REFUND = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
"""


_V4_MAPPED = bytes(10) + b"\xff\xff"


def client_bucket(ip: str) -> str:
    """The address a limit counts by: an IPv4 address, or an IPv6 address's /64 network
    (``2001:db8:77:1::/64``; an IPv4-mapped one as its IPv4 address). The limits of log-in,
    member sign-in and verification (``app.verify.service``, the hot path: an IPv4 address costs
    one ``in``, an IPv6 one ~0.7 µs; through ``ipaddress`` they cost 3 and 22 µs) all count by it.
    """
    if ":" not in ip:
        return ip[:64]  # IPv4 (its text as ``ipaddress`` writes it), or not an address: as given
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip)
    except OSError:  # a zone ("fe80::1%eth0") or not an address: the slow, general way
        return _bucket_of_text(ip)
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


def _bucket_of_text(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]  # not an address (e.g. "unknown"): counted as given
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginLimiter:
    def __init__(self, redis_client: AnyRedis, settings: Settings) -> None:
        self.redis = redis_client
        self.settings = settings
        self.ns = f"{settings.redis_namespace}:login"
        self.cluster = is_cluster(redis_client)
        self._ip = script(redis_client, _IP)
        self._account = script(redis_client, _ACCOUNT)
        self._succeeded = script(redis_client, _SUCCEEDED)
        self._refund = script(redis_client, _REFUND)
        # keyed: a member's account is ``member:<brand>:<phone>``, and a plain hash of it in a
        # key name gave the phone back to anyone reading the keys (probe N)
        self._name_key = settings.subkey("login-limits")

    def _keys(self, username: str, ip: str) -> tuple[str, str, str, str, str]:
        """ip counter, account failures, account locks, account counter, known clients (the
        account's four share the account as hash tag on a cluster)."""
        account = hmac.digest(self._name_key, username.encode(), hashlib.sha256).hex()[:32]
        if self.cluster:
            account = f"{{{account}}}"
        return (
            f"{self.ns}:ip:{ip}",
            f"{self.ns}:fail:{account}",
            f"{self.ns}:lock:{account}",
            f"{self.ns}:acct:{account}",
            f"{self.ns}:known:{account}",
        )

    async def check(self, username: str, ip: str) -> None:
        """429 when this IP or this account + IP is locked; counts nothing (for a step before
        any guess, such as asking for a one-time code)."""
        await self._limit(username, ip, count=False)

    async def attempt(self, username: str, ip: str) -> None:
        """Before a password (or code) is checked: 429 when this IP or this account + IP is
        locked; otherwise the attempt counts as a failure from now on, until ``succeeded``
        takes it back. Counted before the check, not after, so that guesses sent in parallel
        cannot all pass the limits before the first failure is counted."""
        await self._limit(username, ip, count=True)

    async def _limit(self, username: str, ip: str, *, count: bool) -> None:
        ip = client_bucket(ip)
        ip_key, fail, lock, acct, known = self._keys(username, ip)
        s = self.settings
        flag = 1 if count else 0
        try:
            verdict, seconds = await self._ip(
                keys=[ip_key], args=[s.login_ip_max_failures, s.login_ip_window_seconds, flag]
            )
            if verdict == b"ok":
                verdict, seconds = await self._account(
                    keys=[lock, acct, known, fail],
                    args=[
                        ip,
                        int(time.time()),
                        s.login_account_max_failures,
                        s.login_max_failures,
                        s.login_lockout_seconds,
                        flag,
                        KNOWN_CLIENT_SECONDS,
                    ],
                )
                if count and verdict != b"ok":  # no attempt after all: the address's goes back
                    await self._refund(keys=[ip_key])
        except _REDIS_DOWN as exc:
            log.warning("login limits skipped: Redis unavailable", extra={"error": str(exc)})
            return
        _refuse(verdict, seconds)

    async def succeeded(self, username: str, ip: str) -> None:
        """The attempt was right: its failure is taken back, this IP's failures and lock on the
        account are forgotten, and the IP becomes a known client."""
        ip = client_bucket(ip)
        ip_key, fail, lock, acct, known = self._keys(username, ip)
        try:
            await self._succeeded(
                keys=[fail, lock, acct, known], args=[ip, int(time.time()), KNOWN_CLIENT_SECONDS]
            )
            await self._refund(keys=[ip_key])
        except _REDIS_DOWN as exc:
            log.warning("login success not recorded: Redis unavailable", extra={"error": str(exc)})

    async def clear(self, username: str, *, forget: bool = False) -> None:
        """A password reset lifts every lock on the account; ``forget`` (an account erased)
        also forgets the addresses it signed in from."""
        _, fail, lock, acct, known = self._keys(username, "")
        try:
            await self.redis.delete(fail, lock, acct, *([known] if forget else []))
        except _REDIS_DOWN as exc:
            log.warning("login locks not cleared: Redis unavailable", extra={"error": str(exc)})


def _refuse(verdict: bytes, seconds: int) -> None:
    """Raise the 429 of a limit's verdict (``ok``: nothing)."""
    if verdict == b"ok":
        return
    retry = max(int(seconds), 1)
    if verdict == b"rate":
        raise TooManyRequests(
            "too many failed logins from this address; try again later",
            code="rate_limited",
            details={"retry_after": retry},
            headers={"Retry-After": str(retry)},
        )
    raise TooManyRequests(
        "too many failed logins; try again later",
        code="login_locked",
        details={"retry_after": retry},
        headers={"Retry-After": str(retry)},
    )


def login_limiter(state: State) -> LoginLimiter:
    """The application's limiter (made on first use, over the application's Redis client)."""
    limiter: LoginLimiter | None = getattr(state, "login_limiter", None)
    if limiter is None or limiter.redis is not state.redis:
        limiter = LoginLimiter(state.redis, state.settings)
        state.login_limiter = limiter
    return limiter
