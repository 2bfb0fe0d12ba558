"""Claims by scan + PIN, once per code: the one mechanism of members' points (M2) and store
clerks' sales rebates (R1).

A claim is first a verification: ``Verifier.verify`` answers it, so void, forged, wrong PIN and
locked answer exactly as ``/v1/verify`` does and share its lockout and rate limit; ``refuse``
turns a refusal into the claim's error. A unit whose PIN is right (genuine, or suspicious: the
reward is bound to the code, not to the answer) is then queued to a ``Claims`` object, which
coalesces the claims in flight into rounds (``app.rounds``) served on an autocommit connection of
its own, never a pooled one. A round sends one claim per code to ``credit`` — the kind's SQL,
where a unique key on the code makes a code rewarded once, ever, whatever the number of claimants,
requests or processes racing for it — and the claims it did not credit to ``explain``: the same
client id again (a replay, answered as the first time), or why not (already claimed, another
brand's code, …). ``app.members.points.Claimer`` and ``app.rebates.claims.Claimer`` are the two
kinds: each is its ``credit`` and ``explain``.

Who claims is looked up the same way for both (``Claimants``): the bearer token checked in
process (a token checked once is remembered by its text until it expires — its signature and
claims cannot change), then the claimant looked up in PostgreSQL for every claim, coalesced into
one query per round; the kind's ``answer`` turns the row into the claimant or a refusal.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, NamedTuple, TypeVar, cast

import msgspec
import psycopg
from litestar.openapi.spec import OpenAPI
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app.auth import tokens
from app.bodies import SCAN_MAX
from app.codes.scheme import Scheme, SerialError, serial_from_scan
from app.config import Settings
from app.db import Conn, round_connection
from app.edge import check_json, read_post_body
from app.errors import AppError, TooManyRequests, Unauthorized, Unprocessable, invalid_body
from app.events import log as event_log
from app.rounds import serve_rounds
from app.textguard import header_text
from app.verify import messages
from app.verify.schemas import Gps, Lang, VerifyIn, VerifyOut
from app.verify.service import Verifier

MAX_ROUND = 500  # claims credited (or claimants looked up) by one round at most
CLAIMABLE = ("genuine", "suspicious")  # verification results whose PIN was right
MAX_TOKENS = 100_000  # tokens remembered as checked (per process)

Who = TypeVar("Who")
Out = TypeVar("Out")


class Rounds:
    """Coalesces the work asked for meanwhile into rounds, served one at a time on an autocommit
    connection of its own (one round trip per statement, no pool), never a pooled one: many
    requests in flight never wait for the pool."""

    name = "tracecode"

    def __init__(self, pool: AsyncConnectionPool[Conn], settings: Settings) -> None:
        self.pool, self.settings = pool, settings
        self._waiting: list[Any] = []
        self._round: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[Any] | None = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # the pool's conninfo: a string (db.create_pool's), never a callable
            conninfo = cast(str, self.pool.conninfo)
            self._conn = await round_connection(conninfo, self.settings, self.name, dict_row)
        return self._conn

    async def _on_connection(self, group: list[Any]) -> AsyncConnection[Any]:
        """Serve ``group`` on the connection; once more on a new one when the server closed it.
        The connection it was served on."""
        try:
            conn = await self._connection()
            await self._serve(conn, group)
        except psycopg.OperationalError as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled):  # the round's time is up
                raise
            await self.close()
            conn = await self._connection()
            await self._serve(conn, group)
        return conn

    def _queue(self, pending: Any) -> None:
        self._waiting.append(pending)
        if self._round is None:
            self._round = asyncio.get_running_loop().create_task(self._rounds())

    async def _rounds(self) -> None:
        try:
            await serve_rounds(self._waiting, MAX_ROUND, self._round_of)
        finally:
            self._round = None

    async def _round_of(self, group: list[Any]) -> None:
        await self._on_connection(group)

    async def _serve(self, conn: AsyncConnection[Any], group: list[Any]) -> None:
        raise NotImplementedError


class _Asking:
    __slots__ = ("done", "iat", "id", "jti", "sid")

    def __init__(self, claimant_id: int, jti: uuid.UUID, sid: uuid.UUID | None, iat: int) -> None:
        self.id, self.jti, self.sid, self.iat = claimant_id, jti, sid, iat
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class Claimants(Rounds, Generic[Who]):
    """Who the claimants are, from their bearer tokens (see the module docstring). A kind sets
    ``token_type`` and ``sql`` — rows by ``ord`` for ``unnest(%(ord)s::int[], %(id)s::bigint[],
    %(jti)s::uuid[])``, and the tokens' sessions and issue times in ``%(sid)s::uuid[]`` and
    ``%(iat)s::bigint[]`` where the kind's tokens have them — and ``answer``."""

    token_type = ""
    sql = ""

    def __init__(self, pool: AsyncConnectionPool[Conn], settings: Settings) -> None:
        super().__init__(pool, settings)
        self._key = settings.jwt_key()  # derived once (HKDF), not per request
        self._tokens: dict[str, tuple[int, uuid.UUID, uuid.UUID | None, int, int]] = {}

    def _read(self, token: str) -> _Asking:
        known = self._tokens.get(token)
        if known is None or time.time() >= known[4]:
            claims = tokens.decode(self._key, token, self.token_type)  # 401 invalid or expired
            known = (
                int(claims["sub"]),
                tokens.token_id(claims),
                tokens.session_id(claims),
                claims["iat"],
                claims["exp"],
            )
            if len(self._tokens) >= MAX_TOKENS:
                self._tokens.clear()
            self._tokens[token] = known
        return _Asking(*known[:4])

    async def lookup(self, authorization: str | None) -> Who:
        """The claimant of an ``Authorization: Bearer`` header (401 ``unauthorized``,
        ``invalid_token``, ``token_expired``, or the kind's refusal)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("sign in first", code="unauthorized")
        asking = self._read(token.strip())
        self._queue(asking)
        return await asking.done  # type: ignore[no-any-return]

    def answer(self, claimant_id: int, row: dict[str, Any] | None) -> Who:
        """The claimant of a looked-up row (None: no such claimant), or raise its refusal."""
        raise NotImplementedError

    async def _serve(self, conn: AsyncConnection[Any], group: list[_Asking]) -> None:
        params = {
            "ord": list(range(len(group))),
            "id": [a.id for a in group],
            "jti": [a.jti for a in group],
            "sid": [a.sid for a in group],
            "iat": [a.iat for a in group],
        }
        found = {row["ord"]: row for row in await (await conn.execute(self.sql, params)).fetchall()}
        for i, a in enumerate(group):
            if a.done.done():
                continue
            try:
                a.done.set_result(self.answer(a.id, found.get(i)))
            except AppError as exc:
                a.done.set_exception(exc)


class Pending(Generic[Out]):
    """A verified claim waiting for its round: who claims (a member, or a clerk and the store),
    the code, the time and the claim's language (its refusals' messages)."""

    __slots__ = (
        "answer",
        "at",
        "brand_id",
        "claimant",
        "client_id",
        "code",
        "done",
        "lang",
        "org_id",
        "serial",
    )

    def __init__(
        self,
        claimant: int,
        brand_id: int,
        org_id: int | None,
        code: int,
        serial: str,
        client_id: str,
        at: datetime,
        lang: Lang = "zh",
    ) -> None:
        self.claimant, self.brand_id, self.org_id = claimant, brand_id, org_id
        self.code, self.serial, self.client_id, self.at = code, serial, client_id, at
        self.lang = lang
        self.answer: VerifyOut | None = None  # the claim's verification (a draw records it)
        self.done: asyncio.Future[tuple[Out, bool]] = asyncio.get_running_loop().create_future()


ClientId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+(?!\n)$")
]


class ClaimIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A claim of either kind: the unit's serial (or the QR content) and PIN, and a client id of
    the claimant's choosing that makes retries safe."""

    serial: Annotated[str, msgspec.Meta(min_length=1, max_length=SCAN_MAX)]
    pin: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4,10}(?!\n)$")]
    client_id: ClientId
    gps: Gps | None = None
    lang: Lang = "zh"


class Claims(Rounds, Generic[Out]):
    """Verifies claims, then credits them in rounds; a kind implements ``credit`` and
    ``explain`` (see the module docstring)."""

    def __init__(self, pool: AsyncConnectionPool[Conn], verifier: Verifier, scheme: Scheme) -> None:
        super().__init__(pool, verifier.settings)
        self.verifier, self.scheme = verifier, scheme

    async def claim(
        self,
        data: ClaimIn,
        claimant: int,
        brand_id: int,
        org_id: int | None,
        ip: str | None,
        user_agent: str | None,
        member_id: int | None = None,
        checked: str = "",
    ) -> tuple[Out, VerifyOut, bool]:
        """Verify, then credit; (the claim, its verification, created). Refusals raise
        ``AppError``s. ``member_id`` is recorded with the verification of a code of the
        claimant's brand (``brand_id``), not with another brand's. ``checked``: the retry key of
        a verification that checked this code for the claimant already (the H5 answer page's,
        whose ticket this claim is), so that the claim's own is not counted again."""
        code = self.code_of(data.serial)
        if member_id is not None and code is not None:
            member_id = await self._member_recorded(code >> 32, brand_id, member_id)
        answer = await self.verifier.verify(
            VerifyIn(
                serial=data.serial,
                pin=data.pin,
                client_id=data.client_id,
                gps=data.gps,
                lang=data.lang,
            ),
            ip,
            user_agent,
            member_id=member_id,
            # a claim sent again is not a new check of the code: the claimant's own (a probe:
            # another claimant's claim of the code under the same client id went uncounted)
            retry=checked or f"{self.name}:{claimant}:{data.client_id}",
        )
        refuse(answer)
        assert answer.serial is not None and code is not None
        pending: Pending[Out] = Pending(
            claimant,
            brand_id,
            org_id,
            code,
            answer.serial,
            data.client_id,
            datetime.now(UTC),
            data.lang,
        )
        pending.answer = answer
        self._queue(pending)
        out, created = await pending.done
        return out, answer, created

    def code_of(self, serial: str) -> int | None:
        """The code (batch number << 32 | index) of a claim's serial or scanned QR content; None
        when the scheme refuses it (the verification then refuses the claim, as /v1/verify
        does)."""
        try:
            batch_no, index, _ = self.scheme.verify(serial_from_scan(serial))
        except SerialError:
            return None
        return batch_no << 32 | index

    async def _member_recorded(self, batch_no: int, brand_id: int, member_id: int) -> int | None:
        """The member recorded with the verification of a code of batch ``batch_no``: None for
        another brand's code (a probe: a member's refused claim of another brand's unit was
        recorded under the member, so the member's brand read that brand's serial and product in
        the member's scans, and that brand read the other brand's member id on its own
        verification). A batch nobody issued has no brand and its record none to leak."""
        batch = await self.verifier.batch(batch_no)  # cached: the verification reads it too
        return member_id if batch is None or batch.brand_id == brand_id else None

    async def credit(self, conn: AsyncConnection[Any], group: list[Pending[Out]]) -> dict[int, Out]:
        """Credit a round of verified claims (one per code): the credited ones by ``id()`` of
        their pending claim."""
        raise NotImplementedError

    async def explain(self, conn: AsyncConnection[Any], rest: list[Pending[Out]]) -> None:
        """Answer the claims a round did not credit (set their futures): a replay, or why not."""
        raise NotImplementedError

    async def _round_of(self, group: list[Pending[Out]]) -> None:
        conn = await self._on_connection(group)
        first = _first_claims(group)
        rest: list[Pending[Out]] = []
        again: list[Pending[Out]] = []
        for p in group:
            if p.done.done():
                continue
            # A code whose first claim the round did not credit (its claimant frozen meanwhile,
            # another brand's code, a client id used for another code) is still to be won: its
            # other claims go to the next round, not explained as a conflict (a probe: the
            # valid second claimant got 409 claim_conflict and nobody won the code). Every
            # round settles the first claim of each code, so a code's claims run out.
            leader = first[p.code]
            if leader is not p and (not leader.done.done() or leader.done.cancelled()):
                again.append(p)
            else:
                rest.append(p)
        if rest:
            await self.explain(conn, rest)
        self._waiting[:0] = again  # served next, before the claims that came meanwhile

    async def _serve(self, conn: AsyncConnection[Any], group: list[Pending[Out]]) -> None:
        # One claim per code goes to the round; a second claim of the same code in flight is
        # explained after it (a replay of the first, or already claimed), or goes to the next
        # round when the first was not credited (``_round_of``).
        first = _first_claims(group)
        claims = list(first.values())
        try:
            credited = await self.credit(conn, claims)
        except psycopg.errors.QueryCanceled as exc:
            # The round waited its time out for a lock. Where other work holds units of the
            # round (a long transaction on them), the claims of those units fail (503
            # query_timeout, as the whole round did) and the others are credited without them
            held = await held_units(conn, list(first)) if len(claims) > 1 else set()
            free = [p for p in claims if p.code not in held]
            if not held or not free:
                raise
            for p in group:
                if p.code in held and not p.done.done():
                    p.done.set_exception(exc)
            credited = await self.credit(conn, free)
        for p in group:
            if id(p) in credited and not p.done.done():  # its request may have gone
                p.done.set_result((credited[id(p)], True))


def _first_claims(group: list[Pending[Out]]) -> dict[int, Pending[Out]]:
    """The first claim of each code in ``group``, by code: the one a round credits."""
    first: dict[int, Pending[Out]] = {}
    for p in group:
        first.setdefault(p.code, p)
    return first


def refuse(answer: VerifyOut) -> None:
    """The verification's refusal as the claim's error (same result, reason and message)."""
    if answer.result in CLAIMABLE:
        return
    details = msgspec.to_builtins(answer)
    if answer.result == "locked":
        retry = str(answer.retry_after or 1)
        raise TooManyRequests(
            answer.message, code="locked", details=details, headers={"Retry-After": retry}
        )
    code = answer.result if answer.result in ("wrong_pin", "not_genuine") else "not_genuine"
    raise Unprocessable(answer.message, code=code, details=details)


def void_answer(serial: str, lang: Lang) -> VerifyOut:
    """The verification's answer for a code of a void batch, as ``/v1/verify`` gives it in the
    claim's language: a round's refusal of a batch voided since the claim's verification (a
    probe: it was always in Chinese, an English claim's too)."""
    return VerifyOut(
        result="not_genuine", reason="void", message=messages.text("void", lang), serial=serial
    )


async def fetch(conn: AsyncConnection[Any], sql: str, params: dict[str, Any]) -> list[Any]:
    """The rows of one statement (none for a statement that returns none): its own transaction
    on an autocommit connection, else run in one."""
    if conn.autocommit:
        cursor = await conn.execute(sql, params)
    else:
        async with conn.transaction():
            cursor = await conn.execute(sql, params)
    return await cursor.fetchall() if cursor.description else []


def judge(
    rest: list[Pending[Out]], rows: list[dict[str, Any]], why: Any
) -> list[tuple[Pending[Out], dict[str, Any], Any]]:
    """(pending claim, its row, outcome) for each claim of ``rest`` (rows by ``ord``): the
    outcome of ``why(row, pending)`` — the replayed claim and False (not created), or the refusal
    (an ``AppError``) it raised."""
    outcomes: list[tuple[Pending[Out], dict[str, Any], Any]] = []
    for row in rows:
        p = rest[row["ord"]]
        try:
            outcome: Any = (why(row, p), False)
        except AppError as exc:  # the refusal is the answer
            outcome = exc
        outcomes.append((p, row, outcome))
    return outcomes


def settle(outcomes: list[tuple[Pending[Out], dict[str, Any], Any]]) -> None:
    """Answer the claims ``judge`` judged (a request that has gone is skipped)."""
    for p, _, outcome in outcomes:
        if p.done.done():
            continue
        if isinstance(outcome, AppError):
            p.done.set_exception(outcome)
        else:
            p.done.set_result(outcome)


# The codes of a round whose unit another transaction holds: a row lock this statement cannot
# take at once (its own locks end with it: a statement of an autocommit connection).
_HELD = """
WITH free AS (SELECT code FROM unit_state WHERE code = ANY(%(codes)s) FOR UPDATE SKIP LOCKED)
SELECT code FROM unit_state WHERE code = ANY(%(codes)s)
EXCEPT SELECT code FROM free
"""


async def held_units(conn: AsyncConnection[Any], codes: list[int]) -> set[int]:
    """The units among ``codes`` that other transactions hold locked now."""
    return {row["code"] for row in await fetch(conn, _HELD, {"codes": codes})}


async def partitions(conn: AsyncConnection[Any], top: int) -> None:
    """As ``allocate_ids``: the next partition of ``events`` before the ids come near the last
    one's end (checked per process; the first round of a process reads the partitions)."""
    if top > event_log._partition_limit - event_log._HEADROOM:
        async with conn.transaction():
            await event_log.ensure_partitions(conn)  # type: ignore[arg-type]


# -- the claim routes (plain ASGI handlers, as POST /v1/verify) --------------------------------

MAX_BODY = 16 * 1024  # a claim is a few hundred bytes
_JSON = (b"content-type", b"application/json")
_CLAIM_IN = msgspec.json.Decoder(ClaimIn)
_encode = msgspec.json.Encoder().encode


class ClaimRequest(NamedTuple):
    authorization: str | None
    user_agent: str | None
    ip: str | None
    body: bytes


async def read_claim(scope: Any, receive: Any) -> ClaimRequest:
    """The parts of a claim request a claim route needs (405 for another method than POST, 413
    past 16 KB). A plain ASGI handler: Litestar still routes it, runs the middleware and turns
    errors into JSON, but a claim skips the per-request signature, dependency and response
    machinery; the claimant is looked up by the claimer with the other claims in flight."""
    body = await read_post_body(scope, receive, MAX_BODY, "a claim")
    authorization = user_agent = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"user-agent":
            user_agent = header_text(value)
    client = scope.get("client")
    return ClaimRequest(authorization, user_agent, client[0] if client else None, body)


def decode_claim(body: bytes) -> ClaimIn:
    """The claim of a body (400 ``invalid_character`` for a control character, ``too_deep``,
    or the decoder's error)."""
    check_json(body)
    try:
        return _CLAIM_IN.decode(body)
    except msgspec.MsgspecError as exc:
        raise invalid_body(exc) from None


async def answer_claim(send: Any, out: msgspec.Struct, created: bool) -> None:
    """201 with the new claim, or 200 with the claim a replay repeats."""
    payload = _encode(out)
    await send(
        {
            "type": "http.response.start",
            "status": 201 if created else 200,
            "headers": [_JSON, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def document_claim_route(
    openapi: OpenAPI, path: str, tag: str, operation_id: str, description: str, out: type
) -> None:
    """Add a claim route, an ASGI handler Litestar does not document, to the schema
    (``app.apidocs.document_errors`` then makes each error listed here the ``Error`` schema)."""
    refs, components = msgspec.json.schema_components(
        (ClaimIn, out), ref_template="#/components/schemas/{name}"
    )
    schemas: dict[str, Any] = openapi.components.schemas  # type: ignore[assignment]
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    error = {"description": 'error: {"error": {"code", "message", "details"}}'}
    answer = {"content": {"application/json": {"schema": refs[1]}}}
    paths: dict[str, Any] = openapi.paths if openapi.paths is not None else {}
    paths[path] = {
        "post": {
            "tags": [tag],
            "summary": "Claim",
            "operationId": operation_id,
            "description": description,
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": refs[0]}},
            },
            "responses": {
                "201": {"description": "credited", **answer},
                "200": {"description": "the same client_id again: the first claim", **answer},
                **{
                    status: error
                    for status in ("400", "401", "403", "409", "413", "422", "429", "503")
                },
            },
        }
    }
    openapi.paths = paths
