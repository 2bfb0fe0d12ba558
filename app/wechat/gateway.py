"""The WeChat adapter: WeChat's own HTTP protocol, and nothing of Tracecode's rules.

Three calls, against ``TRACECODE_WECHAT_API_URL`` (``https://api.weixin.qq.com``):

* **access token** — ``POST /cgi-bin/stable_token`` ``{"grant_type": "client_credential",
  "appid", "secret", "force_refresh"}`` → ``{"access_token", "expires_in"}``. The token is the
  app's, shared by every process: it is cached in Redis (``{ns}:wechat:token:{appid}:{proof}``,
  ``proof`` an HMAC of the secret under a key of its own, ``Settings.subkey``: never the secret)
  until ``TOKEN_MARGIN`` seconds before it expires (half its life when that is short), and
  fetched by one caller at a time — a Redis lock per app and secret (``SET NX PX``); the others
  wait for the token it stores. Only a caller holding the secret the token was fetched with
  finds it: under the app id alone, a brand that saved another's (public) app id with a
  made-up secret sent as that brand with the token its sends had cached (a probe). A template
  send answered 40001 / 42001 / 40014 (the token invalid, expired or malformed) asks for a
  fresh one: ``force_refresh: true``, only while the cache still holds the token that failed
  (a sender that comes second finds the new one cached and uses it — ``force_refresh`` is
  limited per day by WeChat, and it invalidates the token the others hold).
* **OAuth code** — ``GET /sns/oauth2/access_token?appid&secret&code&grant_type=
  authorization_code`` → ``{"openid", "unionid"?, …}`` (``oauth_identity``).
* **template message** — ``POST /cgi-bin/message/template/send?access_token=…`` ``{"touser",
  "template_id", "url", "data": {key: {"value"}}}`` → ``{"errcode": 0, "msgid"}``.

WeChat answers its errors as HTTP 200 with ``{"errcode", "errmsg"}``; any other status, an
answer that is not JSON, an ``errcode`` that is no 32-bit integer (none of WeChat's, and not
storable), a time-out (``TRACECODE_WECHAT_TIMEOUT`` per call) or a broken connection is a
passing fault. ``send_template`` never raises: it answers an ``Outcome`` — ``sent`` (msgid),
``failed`` (for good: the user did not follow the account or refused its messages, a bad
openid, a template WeChat does not know, data it refuses) or ``retry`` (busy, rate-limited,
the network, a token that could not be had — Redis, where it is cached, failing too). The app
secret goes to WeChat only: never logged, never part of an error (``_scrub``); URLs carrying it
or a token are never logged either (httpx's own request log is kept at warnings,
``app.logs.quiet_libraries``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets as _secrets
import time
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import msgspec
from redis.exceptions import RedisClusterException, RedisError

from app.config import Settings

TOKEN_ERRORS = frozenset({40001, 42001, 40014})  # invalid, expired, malformed access token
# for good: not following the account (43004), refused its messages (43101), an openid not of
# this app (40003), a template it does not know (40037), data it refuses (47003), a URL it
# refuses (40165, 41028-41030: bad form id/page), the app's API unauthorised (48001)
PERMANENT_ERRORS = frozenset({43004, 43101, 40003, 40037, 47003, 40165, 48001})
BUSY_ERRORS = frozenset({-1, 45009, 45011, 45047})  # busy, rate limits: tried again later
TOKEN_MARGIN = 300  # seconds before its expiry a cached token is fetched anew
MAX_ANSWER = 64 * 1024  # bytes of an answer read at most
ERRCODES = range(-(2**31), 2**31)  # errcodes taken as an answer: an integer column stores them
# Redis failing (the token's cache and lock): no token, the send tried again later (a cluster's
# own errors included)
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["sent", "failed", "retry"]
    msgid: str | None = None
    errcode: int | None = None
    error: str | None = None


class Identity(msgspec.Struct, frozen=True):
    openid: str
    unionid: str | None = None


class WechatUnavailable(Exception):
    """WeChat could not be asked or did not answer (network, time-out, not JSON): try later."""


class WechatRefused(Exception):
    """WeChat answered with an ``errcode``."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class TemplateMessage(msgspec.Struct, frozen=True, kw_only=True):
    touser: str
    template_id: str
    url: str | None
    data: dict[str, str]


def _scrub(text: str, *hidden: str | None) -> str:
    """``text`` without the secrets it might echo (WeChat's errmsg quotes a request's parts)."""
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    return text.replace("\n", " ")[:300]


class WechatGateway:
    """WeChat's API for one process (see the module's docstring)."""

    def __init__(self, settings: Settings, redis: Any, client: httpx.AsyncClient | None = None):
        self.api = settings.wechat_api_url.rstrip("/")
        self.timeout = settings.wechat_timeout
        self.redis = redis
        self.namespace = settings.redis_namespace
        self._proof_key = settings.subkey("wechat-token-cache")
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(settings.wechat_timeout))

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the wire ------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, *, params: dict[str, str], body: Any = None, hide: tuple = ()
    ) -> dict[str, Any]:
        """WeChat's JSON answer to one call; ``WechatRefused`` for a non-zero ``errcode``,
        ``WechatUnavailable`` for everything that is no answer."""
        url = f"{self.api}{path}?{urlencode(params)}" if params else f"{self.api}{path}"
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.request(method, url, content=content, headers=headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise WechatUnavailable(f"WeChat unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise WechatUnavailable(f"WeChat answered HTTP {response.status_code}")
        try:
            answer = msgspec.json.decode(response.content[:MAX_ANSWER])
        except msgspec.DecodeError:
            raise WechatUnavailable("WeChat's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WechatUnavailable("WeChat's answer is not a JSON object")
        errcode = answer.get("errcode", 0)
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            raise WechatUnavailable("WeChat's errcode is not a number")
        if errcode not in ERRCODES:  # no errcode of WeChat's: not stored (an integer column)
            raise WechatUnavailable("WeChat's errcode is out of range")
        if errcode != 0:
            raise WechatRefused(errcode, _scrub(str(answer.get("errmsg", "")), *hide))
        return answer

    # -- OAuth ---------------------------------------------------------------------------------

    async def oauth_identity(self, app_id: str, secret: str, code: str) -> Identity:
        """The openid (and unionid, if WeChat gives it) of an OAuth ``code``."""
        params = {
            "appid": app_id,
            "secret": secret,
            "code": code,
            "grant_type": "authorization_code",
        }
        answer = await self._call(
            "GET", "/sns/oauth2/access_token", params=params, hide=(secret, code)
        )
        openid, unionid = answer.get("openid"), answer.get("unionid")
        if not isinstance(openid, str) or not 1 <= len(openid) <= 128:
            raise WechatUnavailable("WeChat's answer has no openid")
        return Identity(openid, unionid if isinstance(unionid, str) and unionid else None)

    # -- access tokens -------------------------------------------------------------------------

    def _key(self, app_id: str, secret: str, what: str) -> str:
        """The Redis key of the app's ``what`` fetched with ``secret``: named by the app id and
        a proof of the secret (an HMAC, 16 bytes in hex), which tells nothing of it."""
        proof = hmac.new(self._proof_key, secret.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.namespace}:wechat:{what}:{app_id}:{proof}"

    async def access_token(self, app_id: str, secret: str, failed: str | None = None) -> str:
        """The app's access token: the cached one, or one fetched under the app's lock — both
        of this secret's. ``failed``: a token WeChat just refused — a fresh one is forced unless
        the cache holds another already."""
        key, lock = self._key(app_id, secret, "token"), self._key(app_id, secret, "token-lock")
        deadline = time.monotonic() + 2 * self.timeout + 1
        mine = _secrets.token_hex(8)
        while True:
            cached = await self.redis.get(key)
            cached = cached.decode() if isinstance(cached, bytes) else cached
            if cached and cached != failed:
                return str(cached)
            if await self.redis.set(lock, mine, nx=True, px=int((self.timeout + 1) * 1000)):
                try:
                    return await self._fetch(app_id, secret, key, force=failed is not None)
                finally:
                    held = await self.redis.get(lock)
                    if (held.decode() if isinstance(held, bytes) else held) == mine:
                        await self.redis.delete(lock)
            if time.monotonic() > deadline:
                raise WechatUnavailable("another process is fetching the access token")
            await asyncio.sleep(0.05)

    async def _fetch(self, app_id: str, secret: str, key: str, *, force: bool) -> str:
        body = {
            "grant_type": "client_credential",
            "appid": app_id,
            "secret": secret,
            "force_refresh": force,
        }
        answer = await self._call(
            "POST", "/cgi-bin/stable_token", params={}, body=body, hide=(secret,)
        )
        token, expires = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires, int) or expires < 2:
            raise WechatUnavailable("WeChat's token answer lacks access_token or expires_in")
        keep = expires - TOKEN_MARGIN if expires > 2 * TOKEN_MARGIN else expires // 2
        await self.redis.set(key, token, ex=max(1, keep))
        return token

    # -- template messages ---------------------------------------------------------------------

    async def send_template(self, app_id: str, secret: str, message: TemplateMessage) -> Outcome:
        """Send one template message: the token fetched or cached, refreshed once when WeChat
        says it is no longer good."""
        failed: str | None = None
        for _ in range(2):
            try:
                token = await self.access_token(app_id, secret, failed)
            except WechatRefused as exc:
                return Outcome(status="retry", errcode=exc.errcode, error=f"access token: {exc}")
            except WechatUnavailable as exc:
                return Outcome(status="retry", error=f"access token: {exc}")
            except REDIS_ERRORS as exc:
                return Outcome(status="retry", error=f"access token: Redis: {type(exc).__name__}")
            body: dict[str, Any] = {
                "touser": message.touser,
                "template_id": message.template_id,
                "data": {k: {"value": v} for k, v in message.data.items()},
            }
            if message.url:
                body["url"] = message.url
            try:
                answer = await self._call(
                    "POST",
                    "/cgi-bin/message/template/send",
                    params={"access_token": token},
                    body=body,
                    hide=(secret, token),
                )
            except WechatUnavailable as exc:
                return Outcome(status="retry", error=str(exc))
            except WechatRefused as exc:
                if exc.errcode in TOKEN_ERRORS and failed is None:
                    failed = token  # once: a fresh token, then the message again
                    continue
                status: Literal["failed", "retry"] = (
                    "failed" if exc.errcode in PERMANENT_ERRORS else "retry"
                )
                return Outcome(status=status, errcode=exc.errcode, error=str(exc))
            msgid = answer.get("msgid")
            return Outcome(status="sent", msgid=str(msgid) if msgid is not None else None)
        return Outcome(status="retry", error="the access token was refused twice")
