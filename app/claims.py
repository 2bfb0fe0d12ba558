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
from typing import Annotated, Any, Generic, TypeVar

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app.auth import tokens
from app.codes.scheme import Scheme, serial_from_scan
from app.config import Settings
from app.errors import AppError, TooManyRequests, Unauthorized, Unprocessable
from app.events import log as event_log
from app.rounds import serve_rounds
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

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._waiting: list[Any] = []
        self._round: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[Any] | None = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await AsyncConnection.connect(
                self.pool.conninfo,
                autocommit=True,
                row_factory=dict_row,
                application_name=self.name,
            )
        return self._conn

    async def _on_connection(self, group: list[Any]) -> AsyncConnection[Any]:
        """Serve ``group`` on the connection; once more on a new one when the server closed it.
        The connection it was served on."""
        try:
            conn = await self._connection()
            await self._serve(conn, group)
        except psycopg.OperationalError:
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
    __slots__ = ("done", "id", "jti")

    def __init__(self, claimant_id: int, jti: uuid.UUID) -> None:
        self.id, self.jti = claimant_id, jti
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class Claimants(Rounds, Generic[Who]):
    """Who the claimants are, from their bearer tokens (see the module docstring). A kind sets
    ``token_type`` and ``sql`` — rows by ``ord`` for ``unnest(%(ord)s::int[], %(id)s::bigint[],
    %(jti)s::uuid[])`` — and ``answer``."""

    token_type = ""
    sql = ""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings) -> None:
        super().__init__(pool)
        self._key = settings.jwt_key()  # derived once (HKDF), not per request
        self._tokens: dict[str, tuple[int, uuid.UUID, int]] = {}

    def _read(self, token: str) -> tuple[int, uuid.UUID]:
        known = self._tokens.get(token)
        if known is not None and time.time() < known[2]:
            return known[0], known[1]
        claims = tokens.decode(self._key, token, self.token_type)  # 401 invalid or expired
        read = (int(claims["sub"]), tokens.token_id(claims), int(claims["exp"]))
        if len(self._tokens) >= MAX_TOKENS:
            self._tokens.clear()
        self._tokens[token] = read
        return read[0], read[1]

    async def lookup(self, authorization: str | None) -> Who:
        """The claimant of an ``Authorization: Bearer`` header (401 ``unauthorized``,
        ``invalid_token``, ``token_expired``, or the kind's refusal)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("sign in first", code="unauthorized")
        asking = _Asking(*self._read(token.strip()))
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
    the code and the time."""

    __slots__ = ("at", "brand_id", "claimant", "client_id", "code", "done", "org_id", "serial")

    def __init__(
        self,
        claimant: int,
        brand_id: int,
        org_id: int | None,
        code: int,
        serial: str,
        client_id: str,
        at: datetime,
    ) -> None:
        self.claimant, self.brand_id, self.org_id = claimant, brand_id, org_id
        self.code, self.serial, self.client_id, self.at = code, serial, client_id, at
        self.done: asyncio.Future[tuple[Out, bool]] = asyncio.get_running_loop().create_future()


ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class ClaimIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A claim of either kind: the unit's serial (or the QR content) and PIN, and a client id of
    the claimant's choosing that makes retries safe."""

    serial: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    pin: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4,10}$")]
    client_id: ClientId
    gps: Gps | None = None
    lang: Lang = "zh"


class Claims(Rounds, Generic[Out]):
    """Verifies claims, then credits them in rounds; a kind implements ``credit`` and
    ``explain`` (see the module docstring)."""

    def __init__(self, pool: AsyncConnectionPool, verifier: Verifier, scheme: Scheme) -> None:
        super().__init__(pool)
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
    ) -> tuple[Out, VerifyOut, bool]:
        """Verify, then credit; (the claim, its verification, created). Refusals raise
        ``AppError``s. ``member_id`` is recorded with the verification."""
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
        )
        refuse(answer)
        assert answer.serial is not None
        batch_no, index, _ = self.scheme.verify(serial_from_scan(answer.serial))
        pending: Pending[Out] = Pending(
            claimant,
            brand_id,
            org_id,
            batch_no << 32 | index,
            answer.serial,
            data.client_id,
            datetime.now(UTC),
        )
        self._queue(pending)
        out, created = await pending.done
        return out, answer, created

    async def credit(self, conn: AsyncConnection[Any], group: list[Pending[Out]]) -> dict[int, Out]:
        """Credit a round of verified claims (one per code): the credited ones by ``id()`` of
        their pending claim."""
        raise NotImplementedError

    async def explain(self, conn: AsyncConnection[Any], rest: list[Pending[Out]]) -> None:
        """Answer the claims a round did not credit (set their futures): a replay, or why not."""
        raise NotImplementedError

    async def _round_of(self, group: list[Pending[Out]]) -> None:
        conn = await self._on_connection(group)
        rest = [p for p in group if not p.done.done()]
        if rest:
            await self.explain(conn, rest)

    async def _serve(self, conn: AsyncConnection[Any], group: list[Pending[Out]]) -> None:
        # One claim per code goes to the round; a second claim of the same code in flight is
        # explained after it (a replay of the first, or already claimed).
        first: dict[int, Pending[Out]] = {}
        for p in group:
            first.setdefault(p.code, p)
        credited = await self.credit(conn, list(first.values()))
        for p in group:
            if id(p) in credited and not p.done.done():  # its request may have gone
                p.done.set_result((credited[id(p)], True))


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


async def fetch(conn: AsyncConnection[Any], sql: str, params: dict[str, Any]) -> list[Any]:
    """The rows of one statement: its own transaction on an autocommit connection, else run in
    one."""
    if conn.autocommit:
        return await (await conn.execute(sql, params)).fetchall()
    async with conn.transaction():
        return await (await conn.execute(sql, params)).fetchall()


def answer_all(rest: list[Pending[Out]], rows: list[dict[str, Any]], why: Any) -> None:
    """Set the future of each claim of ``rest`` (rows by ``ord``) to ``why(row, pending)``: the
    replayed claim, or the refusal it raises."""
    for row in rows:
        p = rest[row["ord"]]
        if p.done.done():
            continue
        try:
            p.done.set_result((why(row, p), False))
        except AppError as exc:  # the refusal is the answer
            p.done.set_exception(exc)


async def partitions(conn: AsyncConnection[Any], top: int) -> None:
    """As ``allocate_ids``: the next partition of ``events`` before the ids come near the last
    one's end (checked per process; the first round of a process reads the partitions)."""
    if top > event_log._partition_limit - event_log._HEADROOM:
        async with conn.transaction():
            await event_log.ensure_partitions(conn)  # type: ignore[arg-type]
