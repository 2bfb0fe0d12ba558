"""CSV uploads: the one reader of every CSV import (ERP orders, ERP master data).

An upload is the request body itself (``Content-Type: text/csv``). It is read with a size limit
(``read_body``: 413 ``payload_too_large`` as soon as it passes), decoded as UTF-8 — a BOM is
fine — or else GB18030, what Excel writes on Chinese Windows (``decode``: 400 ``bad_encoding``;
Excel's "Unicode text", UTF-16, is named as such), and read as rows under a header row naming the
columns (``read_rows``: 400 ``empty_file``, ``bad_header``, ``malformed_csv``; 413
``too_many_rows``). Each row keeps the file line it starts on (the header is line 1), so errors
point where a spreadsheet user looks.

Control characters are the caller's call: the orders import refuses the whole file and names its
first bad line (``refuse_control``), the master-data import rejects only the rows holding one.
Exports are written by ``app.tabular`` (the formula guard lives there).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, Sequence

import msgspec

from app.errors import BadRequest, PayloadTooLarge
from app.textguard import InvalidCharacter, check_text, has_control

MAX_BYTES = 10 * 1024 * 1024
MEDIA_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")


class Record(msgspec.Struct, frozen=True, gc=False):
    """One row: the file line it starts on, each header column's value (stripped, "" when
    absent), and whether it has more non-empty values than the header has columns."""

    line: int
    values: dict[str, str]
    extra: bool


async def read_body(chunks: AsyncIterable[bytes], limit: int = MAX_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the file is larger than {limit // (1024 * 1024)} MB; split it",
                details={"max_bytes": limit},
            )
        parts.append(chunk)
    return b"".join(parts)


def decode(raw: bytes) -> str:
    """UTF-8 (with or without a BOM), else GB18030; 400 ``bad_encoding`` for anything else."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadRequest(
            "the file is UTF-16 (Excel's Unicode text): save it as CSV UTF-8",
            code="bad_encoding",
        )
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise BadRequest(
            "the file is neither UTF-8 nor GB18030 text", code="bad_encoding"
        ) from None


def refuse_control(text: str) -> None:
    """400 ``invalid_character`` naming the first file line that holds a control character
    (tab and line breaks pass); nothing when there is none."""
    if not has_control(text):
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if has_control(line):
            try:
                check_text(line, field=f"line {number}", what="file")
            except InvalidCharacter as exc:
                exc.details = [{**exc.details[0], "line": number}]
                raise


def _check_header(
    names: list[str], columns: Sequence[str], required: Sequence[Sequence[str]]
) -> None:
    """400 ``bad_header``: a column not in ``columns``, a required one missing (each entry of
    ``required`` lists alternatives: one of them will do; the first is named), or one twice."""
    unknown = [n for n in names if n not in columns]
    missing = [either[0] for either in required if not any(n in names for n in either)]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or doubled:
        raise BadRequest(
            "bad header row",
            code="bad_header",
            details={
                "unknown": unknown,
                "missing": missing,
                "repeated": doubled,
                "columns": list(columns),
            },
        )


def read_rows(
    text: str,
    columns: Sequence[str],
    required: Sequence[Sequence[str]],
    max_rows: int,
) -> tuple[list[str], list[Record]]:
    """The header's column names (lower case) and the non-empty rows below it.

    Column names are matched without case or surrounding spaces; blank rows are skipped. 400 on
    a bad header or malformed CSV (an unclosed quote: the line is named), 413 past ``max_rows``.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BadRequest(f"line 1: {exc}", code="malformed_csv", details={"line": 1}) from None
    if not header or not any(h.strip() for h in header):
        raise BadRequest("the file is empty: a header row is needed", code="empty_file")
    names = [h.strip().lower() for h in header]
    _check_header(names, columns, required)
    rows: list[Record] = []
    last = reader.line_num
    try:
        for record in reader:
            line, last = last + 1, reader.line_num
            if not record or all(not v.strip() for v in record):
                continue
            if len(rows) >= max_rows:
                raise PayloadTooLarge(
                    f"more than {max_rows:,} rows; split the file",
                    code="too_many_rows",
                    details={"max_rows": max_rows},
                )
            values = {
                n: (record[i].strip() if i < len(record) else "") for i, n in enumerate(names)
            }
            extra = len(record) > len(names) and any(v.strip() for v in record[len(names) :])
            rows.append(Record(line, values, extra))
    except csv.Error as exc:
        line = reader.line_num
        raise BadRequest(
            f"line {line}: {exc}", code="malformed_csv", details={"line": line}
        ) from None
    return names, rows
