"""CSV uploads: the one reader of every CSV import (ERP orders, ERP master data).

An upload is the request body itself (``Content-Type: text/csv``). It is read with a size limit
(``read_body``: 413 ``payload_too_large`` as soon as it passes), decoded in the charset its
``Content-Type`` declares — UTF-8 for a declared UTF-8 or US-ASCII (ASCII is UTF-8), GB18030 for
a declared GB18030, GBK or GB2312; any other is 415 (``declared_encoding``) — or, when it
declares none, as UTF-8 (a BOM is fine) or else GB18030, what Excel writes on Chinese Windows,
unless the file is UTF-8 with a bad byte (``decode``: 400 ``bad_encoding`` naming the line of
the first byte that does not read; Excel's "Unicode text", UTF-16, is named as such), and read
as rows under a header row naming the columns (``read_rows``: 400 ``empty_file``,
``bad_header``, ``malformed_csv``; 413 ``too_many_rows``). Each row keeps the file line it
starts on (the header is line 1), so errors point where a spreadsheet user looks.

Control characters are the caller's call: the orders import refuses the whole file and names its
first bad line (``refuse_control``), the master-data import rejects only the rows holding one.
Exports are written by ``app.tabular`` (the formula guard lives there).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterable, Sequence
from typing import Literal

import msgspec

from app.edge import media_of
from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.textguard import InvalidCharacter, check_text, has_control

MAX_BYTES = 10 * 1024 * 1024
MEDIA_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")
Encoding = Literal["utf-8", "gb18030"]
# the charsets a CSV body may declare: GB18030 reads GBK and GB2312 text too (it extends both)
CHARSETS: dict[str, Encoding] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "utf-8",  # ASCII is UTF-8's subset: read as UTF-8, strictly (never GB18030)
    "ascii": "utf-8",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
}
_BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark
# decoded with "surrogateescape": a byte UTF-8 cannot read, and a character of a well-formed
# sequence of three or four bytes (U+0800 and up: every Chinese character in UTF-8 is one)
_NOT_UTF8 = re.compile(r"[\udc80-\udcff]")
_WIDE = re.compile(r"[\u0800-\ud7ff\ue000-\U0010ffff]")


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


def declared_encoding(content_type: str) -> Encoding | None:
    """The encoding the ``charset`` of a CSV body's ``Content-Type`` declares, ``None`` when it
    declares none (``decode`` then tells UTF-8 from GB18030). Any other charset (Big5, Latin-1,
    UTF-16 …) is 415 ``unsupported_media_type``, as a JSON body in another charset is: it is
    never read as something else (a probe: a Big5 file was stored as GB18030 mojibake)."""
    charset = media_of(content_type)[1]
    if charset is None:
        return None
    encoding = CHARSETS.get(charset)
    if encoding is None:
        raise UnsupportedMediaType(
            "send the CSV file in UTF-8 or GB18030 (Content-Type: text/csv; charset=utf-8, "
            "us-ascii, gb18030, gbk or gb2312), or name no charset",
            details={"content_type": content_type[:200], "charsets": list(CHARSETS)},
        )
    return encoding


def decode(raw: bytes, encoding: Encoding | None = None) -> str:
    """The file's text in the ``encoding`` its ``Content-Type`` declares (``declared_encoding``);
    declared none, UTF-8 (with or without a BOM), else GB18030 — unless it is a UTF-8 file with a
    bad byte (``_utf8_with_bad_bytes``). 400 ``bad_encoding`` naming the line of the first byte
    that does not read (``details.line``); a UTF-16 file is named as such."""
    if encoding == "gb18030":
        return _decoded(raw, "gb18030", "the file is not GB18030 (GBK) text, as its type says")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # its offset in the text after a BOM: the file's is past
        # it (a review: a bad byte on line 2 of a file with a BOM was named on line 1)
        bad_at = exc.start + (len(_BOM) if raw.startswith(_BOM) else 0)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadRequest(
            "the file is UTF-16 (Excel's Unicode text): save it as CSV UTF-8",
            code="bad_encoding",
        )
    if encoding == "utf-8":
        raise _bad_encoding(raw, bad_at, "the file is not UTF-8 text, as its type says")
    if _utf8_with_bad_bytes(raw):
        raise _bad_encoding(
            raw,
            bad_at,
            "the file is UTF-8 but holds a byte of another encoding (text pasted in from "
            "another system?): correct it and save the file as CSV UTF-8",
        )
    return _decoded(raw, "gb18030", "the file is neither UTF-8 nor GB18030 text")


def _utf8_with_bad_bytes(raw: bytes) -> bool:
    """Whether a file UTF-8 cannot read is UTF-8 all the same, with a stray byte or a few: it
    holds more well-formed UTF-8 sequences of three or four bytes (every Chinese character in
    UTF-8 is one) than bytes UTF-8 cannot read. Read as GB18030, which takes almost any byte
    pair, its Chinese text was stored as mojibake (a probe). A GB18030 file seldom forms such a
    sequence: its characters are two bytes, most of them no UTF-8 at all. Counting two-byte
    sequences too, or calling a file UTF-8 for any multi-byte sequence before its first bad
    byte, would refuse real GB18030 files (measured on files of random GB2312 names: nearly one
    in five refused; by this rule none in 5,000, of 1 to 50 rows)."""
    text = raw.decode("utf-8", "surrogateescape")
    bad = len(text) - len(_NOT_UTF8.sub("", text))
    return len(text) - len(_WIDE.sub("", text)) > bad


def _decoded(raw: bytes, codec: str, message: str) -> str:
    """``raw`` in ``codec`` (a BOM dropped), or 400 ``bad_encoding`` at its first bad byte."""
    try:
        return raw.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _bad_encoding(raw, exc.start, message) from None


def _bad_encoding(raw: bytes, at: int, message: str) -> BadRequest:
    """400 ``bad_encoding`` naming the file line of the byte at offset ``at`` (the first is 1)."""
    line = raw.count(b"\n", 0, at) + 1
    return BadRequest(f"line {line}: {message}", code="bad_encoding", details={"line": line})


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
