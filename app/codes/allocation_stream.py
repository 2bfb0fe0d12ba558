"""The codes of an allocation as a stream: plain ``SERIAL,PIN`` lines or an encrypted file.

The lines are made by the Rust core a step at a time (``Scheme.generate`` with ``newline``: one
call per step of ``STEP`` codes, without the GIL, on every core), the next step made while the
previous one is sent, so memory stays bounded whatever the allocation's size. The encrypted form
is the printer files' TCPF1 format (``app.codes.printfile.Writer``, AES-256-GCM chunks, the key
wrapped for the recipient): ``tracecode export decrypt`` and ``printfile.decrypt`` open it.

Before each piece goes out its batches are asked again (``still_live``: a ``VoidWatch``, one
short query on a pooled connection, run while the Rust core makes the next step): a batch voided
while the stream is under way cuts it off there (``VoidedMidStream``), and nothing of it is sent
after the void answered. One query per step of ``STEP`` codes (3.5 MB) costs the stream nothing
measurable (bench/RESULTS.md, "serial allocation streamed").
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from app.codes import printfile
from app.codes.allocation_records import Allocated, Take
from app.codes.scheme import Scheme

STEP = 1 << 17  # codes per Rust call: 3.5 MB of lines with PINs

Check = Callable[[], Awaitable[None]]  # raises when the stream must stop (``VoidWatch``)


def _steps(takes: list[Take]) -> Iterator[tuple[int, int, int, int]]:
    for take in takes:
        for start in range(take.start, take.end, STEP):
            yield take.batch_no, start, min(start + STEP, take.end), take.version


async def lines(
    scheme: Scheme, takes: list[Take], pins: bool, still_live: Check
) -> AsyncIterator[bytes]:
    """``SERIAL,PIN\\n`` (or ``SERIAL\\n``) per code of the ranges, in order; ``still_live``
    asked before each piece (after the one before it was taken), while the next is made."""
    loop = asyncio.get_running_loop()

    def make(step: tuple[int, int, int, int]) -> bytes:
        batch_no, start, end, version = step
        return scheme.generate(batch_no, start, end, pins, version, None, True)

    pending: asyncio.Future[bytes] | None = None
    for step in _steps(takes):
        made = loop.run_in_executor(None, make, step)
        if pending is not None:
            await still_live()
            yield await pending
        pending = made
    if pending is not None:
        await still_live()
        yield await pending


def file_header(allocated: Allocated) -> dict[str, Any]:
    """The encrypted file's metadata (authenticated with every chunk)."""
    out = allocated.out
    return {
        "allocation_id": out.id,
        "recipient_org_id": out.recipient_org_id,
        "ranges": [[r.batch_no, r.first_index, r.last_index] for r in out.ranges],
        "columns": ["serial", "pin"] if out.with_pins else ["serial"],
    }


async def encrypted(
    scheme: Scheme, allocated: Allocated, still_live: Check
) -> AsyncIterator[bytes]:
    """The same lines sealed into a TCPF1 file for the allocation's recipient (``still_live``
    asked before each piece, as ``lines`` does)."""
    assert allocated.wrap is not None and allocated.data_key is not None
    buffer = io.BytesIO()
    writer = printfile.Writer(
        buffer,
        file_header(allocated),
        allocated.wrap,
        allocated.data_key,
        nonce_prefix=allocated.nonce_prefix,  # no two files of the allocation share it
    )

    def drain() -> bytes:
        data = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return data

    yield drain()
    async for piece in lines(scheme, allocated.takes, allocated.out.with_pins, still_live):
        await asyncio.to_thread(writer.write, piece)
        yield drain()
    writer.close()
    await still_live()  # its last chunk holds codes too
    yield drain()
