"""Code batches as other domains see them: size, state, product — one row per batch."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from psycopg_pool import AsyncConnectionPool

from app.codes.scheme import VERIFY_OK, Scheme, UnknownKeyVersion
from app.db import Conn
from app.errors import AnswerCutOff


class BatchRef(msgspec.Struct, frozen=True):
    batch_no: int
    brand_id: int
    printer_id: int
    product_id: int | None
    size: int
    state: str  # issued | exported | active | void
    key_version: int


def code_id(batch_no: int, index: int) -> int:
    """The 64-bit id of a unit code: batch_no << 32 | index (the PRP's plaintext)."""
    return (batch_no << 32) | index


def split_code_id(code: int) -> tuple[int, int]:
    return code >> 32, code & 0xFFFFFFFF


def codes_of(scheme: Scheme, serials: list[str]) -> list[int | None]:
    """The code ids of canonical serials as events name them (a replacement's ``details
    .replaces``), None for one that is not a serial of the scheme; no query, one core call."""
    verdicts = scheme.verify_many(serials) if serials else []
    return [code_id(batch, index) if ok == VERIFY_OK else None for ok, batch, index, _ in verdicts]


def made_under(batch: BatchRef, version: int) -> bool:
    """Whether a serial ``Scheme.verify`` found under key ``version`` can be one of ``batch``'s:
    a batch's codes are made under its own key version (``key_version``) only. The core accepts
    a tag under any active version, so after a rotation a serial made under an older version
    for a batch issued under the new one (what a key retired for new codes, or a leaked one,
    makes) verifies; it was never printed, and every reader answers it as a forged serial (a
    probe: it verified as the genuine unit, and defeated the rotation). One comparison: the
    verification's hot path asks it of its cached batch."""
    return version == batch.key_version


async def load_batches(conn: Conn, batch_nos: Iterable[int]) -> dict[int, BatchRef]:
    """The batches of these numbers that exist, in one query."""
    wanted = sorted(set(batch_nos))
    if not wanted:
        return {}
    rows = await (
        await conn.execute(
            "SELECT batch_no, brand_id, printer_id, product_id, size, state, key_version "
            "FROM code_batches WHERE batch_no = ANY(%s)",
            (wanted,),
        )
    ).fetchall()
    return {r["batch_no"]: BatchRef(**r) for r in rows}


async def serials_of(conn: Conn, scheme: Scheme, codes: Iterable[int]) -> dict[int, str]:
    """The printed serials of unit code ids (the batch row says which key version made them).
    A code without its batch, or of a key version this deployment no longer holds, is left out
    (callers name it by its code id): a retired version answered a case's trace, its unpacking
    or an EPCIS query 422 ``not_genuine`` (probe)."""
    codes = list(codes)
    batches = await load_batches(conn, (code >> 32 for code in codes))
    serials: dict[int, str] = {}
    for code in codes:
        batch = batches.get(code >> 32)
        if batch is None:
            continue
        try:
            serials[code] = scheme.serial(code >> 32, code & 0xFFFFFFFF, batch.key_version)
        except UnknownKeyVersion:
            continue
    return serials


class VoidedMidStream(AnswerCutOff):
    """A batch of a stream under way was voided: the answer is cut off (``VoidWatch``)."""


class VoidWatch:
    """Whether the batches of a stream under way are still live, asked between its pieces: an
    allocation's codes (``app.codes.allocation_stream``), a printer file's download
    (``app.byteranges.file_answer``). Each call is one short query on a connection of the
    pool, given back at once — a stream of minutes holds none meanwhile —, and raises
    ``VoidedMidStream`` once one of the batches is void; the answer, already started, is then
    cut off (no last chunk, or fewer bytes than its ``Content-Length``): its client sees an
    incomplete answer, never a whole one. Checked once, when the request started, a void
    answered 200 during the stream let the rest of a void batch's codes and PINs go out (a
    probe). Unit batches by number (``units``), or a case batch by id (``case_batch_id``)."""

    __slots__ = ("_params", "_pool", "_sql")

    def __init__(
        self,
        pool: AsyncConnectionPool,
        units: Iterable[int] = (),
        case_batch_id: int | None = None,
    ) -> None:
        self._pool = pool
        if case_batch_id is not None:
            self._sql = "SELECT id FROM case_batches WHERE id = %s AND state = 'void'"
            self._params: tuple[object, ...] = (case_batch_id,)
        else:
            self._sql = (
                "SELECT batch_no FROM code_batches WHERE batch_no = ANY(%s) AND state = 'void' "
                "LIMIT 1"
            )
            self._params = (sorted(set(units)),)

    async def __call__(self) -> None:
        async with self._pool.connection() as conn:
            void = await (await conn.execute(self._sql, self._params)).fetchone()
        if void is not None:
            raise VoidedMidStream(
                "a batch of this stream was voided while it was sent: its labels are to be "
                "destroyed, and the answer is cut off"
            )
