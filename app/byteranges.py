"""A file download that resumes: one byte range of it (RFC 9110 §14).

A printer file of a large batch is gigabytes; a printer's download tool on a factory network that
drops the connection at 90% asks again for the rest (``Range: bytes=N-``) rather than for the
whole file. The answer is 206 with that part (``Content-Range``), or the whole file (200) when
the header asks for something this does not serve — several ranges, another unit, a malformed
one — or when ``If-Range`` names another version of the file; 416 ``range_not_satisfiable`` for
a range wholly past its end. Every answer says ``Accept-Ranges: bytes`` and carries a strong
``ETag`` of the file's size and time, which a resumed download sends back in ``If-Range``.

A download may be stopped while it is sent (``still_live``, asked before each piece of
``WATCHED_CHUNK`` bytes: a printer file's batch voided meanwhile, ``app.codes.batches.VoidWatch``):
what it raises cuts the answer off, fewer bytes than its ``Content-Length`` — the client sees a
broken download, never a whole one (a probe: a void answered during the download of a
gigabytes file let the rest of it go to the printer). A HEAD reads nothing of the file.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
from litestar import Request
from litestar.datastructures import ETag
from litestar.response import Stream

from app.errors import RangeNotSatisfiable

CHUNK = 1 << 20
WATCHED_CHUNK = 4 << 20  # the bytes sent between two ``still_live`` checks: one query per 4 MiB
# one range (several: the whole file); positions of up to 18 digits (longer: malformed, never
# an int of thousands of digits — Python refuses those, a 500)
_SPEC = re.compile(r"\s*(\d{0,18})-(\d{0,18})\s*", re.ASCII)


def wanted_range(header: str, size: int) -> tuple[int, int] | None:
    """The one range ``[first, last]`` (inclusive) a ``Range`` header asks of ``size`` bytes;
    None to send the whole file (no bytes unit, several ranges, or a malformed one: a server may
    ignore the header); 416 for a range that starts past the end."""
    unit, _, spec = header.partition("=")
    found = _SPEC.fullmatch(spec)
    if unit.strip().lower() != "bytes" or found is None or found.groups() == ("", ""):
        return None
    first_text, last_text = found.groups()
    if first_text == "":  # the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"the file has {size} bytes",
        details={"size": size},
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
    )


async def _slice(
    path: Path, first: int, last: int, still_live: Callable[[], Awaitable[None]] | None
) -> AsyncIterator[bytes]:
    size = CHUNK if still_live is None else WATCHED_CHUNK
    async with await anyio.open_file(path, "rb") as file:
        await file.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = await file.read(min(size, left))
            if not chunk:  # the file shrank meanwhile: Content-Length cannot be kept
                raise RuntimeError(f"{path} ended before its byte {last}")
            left -= len(chunk)
            if still_live is not None:  # after the piece before was taken: cut off here
                await still_live()
            yield chunk


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


def file_answer(
    request: Request[Any, Any, Any],
    path: Path,
    filename: str,
    still_live: Callable[[], Awaitable[None]] | None = None,
) -> Stream:
    """The file, or the byte range of it the request asks for (see the module docstring),
    ``still_live`` asked before each piece of it."""
    stat = path.stat()
    etag = ETag(value=f"{stat.st_size:x}-{stat.st_mtime_ns:x}")
    header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    span = None
    if header is not None and (if_range is None or if_range.strip() == etag.to_header()):
        span = wanted_range(header, stat.st_size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "ETag": etag.to_header(),
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
    }
    if span is None:
        first, last, status = 0, stat.st_size - 1, 200
    else:
        (first, last), status = span, 206
        headers["Content-Range"] = f"bytes {first}-{last}/{stat.st_size}"
    headers["Content-Length"] = str(last - first + 1)
    body = _nothing() if request.method == "HEAD" else _slice(path, first, last, still_live)
    return Stream(body, status_code=status, media_type="application/octet-stream", headers=headers)
