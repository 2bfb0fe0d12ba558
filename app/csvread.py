"""CSV uploads: the one reader of every CSV import (ERP orders, ERP master data).

An upload is the request body itself (``Content-Type: text/csv``). It is read with a size limit
(``read_body``: 413 ``payload_too_large`` as soon as it passes), decoded in the charset its
``Content-Type`` declares — UTF-8 for a declared UTF-8 or US-ASCII (ASCII is UTF-8), GB18030 for
a declared GB18030, GBK or GB2312; any other is 415 (``declared_encoding``) — or, when it
declares none, as UTF-8 (a BOM is fine) or else GB18030, what Excel writes on Chinese Windows,
unless the file is UTF-8 with a bad byte (``decode``: 400 ``bad_encoding`` naming the line of
the first byte that does not read; Excel's "Unicode text", UTF-16, is named as such), and read
as rows under a header row naming the columns (``read_rows``: 400 ``empty_file``,
``bad_header`` — also past ``MAX_COLUMNS`` header cells —, ``malformed_csv`` — also a line of
more than ``MAX_LINE_COMMAS`` commas —; 413 ``too_many_rows``). The work is linear in the file:
a header is checked once (a probe: ``names.count`` per column held the event loop 15 s for a
header of 40,000 columns), a row reads its named columns only. Each row keeps the file line it
starts on (the first line is 1; CR, CRLF and LF each end a line, as the CSV reader counts), so
errors point where a spreadsheet user looks. Blank lines above the header (a sheet starting at
A2) are skipped, and so are the columns Excel leaves without a name when no row fills them.

A file declaring no charset and holding no BOM that both UTF-8 and GB18030 read, and whose
UTF-8 text holds no character of three bytes or more (U+0800 and up: every Chinese character),
may be either (``_told_from_gbk``): the GBK bytes of Chinese text are at times well-formed
two-byte UTF-8 ("一品山庄" is the UTF-8 of "һƷɽׯ", "卢伟" of "¬ΰ"). It is UTF-8 when it holds a
no-break space or a C1 control (U+0080–U+00A0: GBK's bytes for them are rare characters), else
GB18030 when its non-ASCII characters are all letters (U+00C0–U+07FF: Latin, Greek, Cyrillic,
Arabic) — the users are Chinese offices, whose Excel writes its UTF-8 CSV with a BOM —, else
(a Latin-1 symbol, U+00A1–U+00BF: "°", "±", "¬" — what GBK's 卢 鲁 陆 路 露 鹿 … are) 400
``bad_encoding``, naming the line: which one is meant cannot be told (a probe: "卢伟" was stored
as "¬ΰ"), so the file is to be saved as "CSV UTF-8" or sent with its charset. The trade-off: a
BOM-less UTF-8 file whose only non-ASCII text is Latin letters ("Café") is read as GB18030
("Caf茅"); send it with a BOM or ``charset=utf-8``.

Codes a spreadsheet shows as numbers (order and product numbers of 12 digits or more) are saved
by Excel as it shows them, in scientific notation ("2.02611E+11"): ``excel_scientific`` names
such a value for the imports to refuse, where two numbers would otherwise become one.

Control characters are the caller's call: the orders import refuses the whole file and names its
first bad line (``refuse_control``), the master-data import rejects only the rows holding one.
Exports are written by ``app.tabular`` (the formula guard lives there).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter
from collections.abc import AsyncIterable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import msgspec

from app.edge import media_of
from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.textguard import InvalidCharacter, check_text, has_control

if TYPE_CHECKING:
    from _csv import Reader  # csv.reader's type (typeshed names it)

MAX_BYTES = 10 * 1024 * 1024
# the header cells a file may have, named or left empty: the widest import has 17 columns (a
# probe: 40,000 held the event loop for seconds, an empty cell was checked again on every row)
MAX_COLUMNS = 200
# the commas one line may hold, quoted ones too: a row far wider than any header is refused as
# the reader reaches it (a probe: one row of 10 million commas cost ~215 MB as a list of cells)
MAX_LINE_COMMAS = 2000
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
# a no-break space or a C1 control: a UTF-8 file's (GBK's C2 80–C2 A0 are rare characters)
_SPACE_OR_C1 = re.compile(r"[\u0080-\u00a0]")
# a Latin-1 symbol (° ± · ¬ …): a UTF-8 file's, or the GBK bytes of 卢 鲁 陆 路 露 鹿 …
_SYMBOL = re.compile(r"[\u00a1-\u00bf]")
# a line end as the CSV reader counts them (``io.StringIO(newline="")``): CR, CRLF or LF
_LINE_END = re.compile(r"\r\n?|\n")
_RAW_LINE_END = re.compile(rb"\r\n?|\n")
# a number as Excel shows one of 12 digits or more and saves it in a CSV file: "2.02611E+11"
_EXCEL_SCIENTIFIC = re.compile(r"[0-9](?:\.[0-9]+)?[Ee][+-][0-9]+")


class Record(msgspec.Struct, frozen=True, gc=False):
    """One row: the file line it starts on, each header column's value (stripped, "" when
    absent), whether it has more non-empty values than the header has columns, and whether it
    has fewer values than the header names columns (``short``: a row cut short, its missing
    cells read as "")."""

    line: int
    values: dict[str, str]
    extra: bool
    short: bool = False  # fewer values than the header has columns up to its last named one


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
    declared none, UTF-8 (with or without a BOM; without one, GB18030 when the UTF-8 text may be
    GBK, 400 when it cannot be told: ``_told_from_gbk``), else GB18030 — unless it is a UTF-8
    file with a bad byte (``_utf8_with_bad_bytes``). 400 ``bad_encoding`` naming the line of the
    first byte that does not read (``details.line``); a UTF-16 file is named as such."""
    if encoding == "gb18030":
        return _decoded(raw, "gb18030", "the file is not GB18030 (GBK) text, as its type says")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # its offset in the text after a BOM: the file's is past
        # it (a review: a bad byte on line 2 of a file with a BOM was named on line 1)
        bad_at = exc.start + (len(_BOM) if raw.startswith(_BOM) else 0)
    else:
        if encoding is None and not raw.startswith(_BOM):
            return _told_from_gbk(raw, text)
        return text
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


def _told_from_gbk(raw: bytes, text: str) -> str:
    """The text of a file UTF-8 reads as ``text`` (no BOM, no charset declared), told from GBK.
    It is UTF-8 when it holds a character of three bytes or more (U+0800 and up), a no-break
    space or a C1 control, or when GB18030 does not read it; else GB18030 when its non-ASCII
    characters are all two-byte letters (U+00C0–U+07FF): Chinese text in GBK is at times such
    bytes ("一品山庄" is the UTF-8 of "һƷɽׯ") and was stored as that mojibake (a probe); Excel's
    UTF-8 CSV has a BOM, and a BOM-less UTF-8 file of Latin accents only is read as GB18030
    too: the trade-off. Else — a Latin-1 symbol, which the GBK bytes of 卢 鲁 陆 路 露 鹿 … are
    ("卢伟" is the UTF-8 of "¬ΰ", stored so: a probe) as much as a UTF-8 file's "°" — 400
    ``bad_encoding`` naming the symbol's line: which one is meant cannot be told."""
    if text.isascii() or _WIDE.search(text) or _SPACE_OR_C1.search(text):
        return text
    try:
        gbk = raw.decode("gb18030")
    except UnicodeDecodeError:
        return text
    symbol = _SYMBOL.search(text)
    if symbol is None:
        return gbk
    line = len(_LINE_END.findall(text, 0, symbol.start())) + 1
    raise BadRequest(
        f"line {line}: the file reads both as UTF-8 ({symbol.group()!r}) and as GBK, and which "
        "one it is cannot be told: save it as CSV UTF-8, or send it with its charset "
        "(Content-Type: text/csv; charset=gbk, or charset=utf-8)",
        code="bad_encoding",
        details={"line": line},
    )


def _utf8_with_bad_bytes(raw: bytes) -> bool:
    """Whether a file UTF-8 cannot read is UTF-8 all the same, with a stray byte or a few: it
    holds more well-formed UTF-8 sequences of three or four bytes (every Chinese character in
    UTF-8 is one) than bytes UTF-8 cannot read. Read as GB18030, which takes almost any byte
    pair, its Chinese text was stored as mojibake (a probe). A GB18030 file seldom forms such a
    sequence: its characters are two bytes, most of them no UTF-8 at all. Counting two-byte
    sequences too, or calling a file UTF-8 for any multi-byte sequence before its first bad
    byte, would refuse real GB18030 files (measured on files of random GB2312 names: nearly one
    in five refused; by this rule none in 5,000, of 1 to 50 rows). Latin-1 symbols were counted
    too for a while, and GBK's 路 (C2 B7, "·") made "李芳路" such a file (a probe)."""
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
    line = len(_RAW_LINE_END.findall(raw, 0, at)) + 1  # a probe: a lone CR was not counted
    return BadRequest(f"line {line}: {message}", code="bad_encoding", details={"line": line})


def refuse_control(text: str) -> None:
    """400 ``invalid_character`` naming the first file line that holds a control character
    (tab and line breaks pass); nothing when there is none. Lines end as the CSV reader ends
    them (a probe: a file of lone CRs named line 1 for any line)."""
    if not has_control(text):
        return
    for number, line in enumerate(_LINE_END.split(text), start=1):
        if has_control(line):
            try:
                check_text(line, field=f"line {number}", what="file")
            except InvalidCharacter as exc:
                exc.details = [{**exc.details[0], "line": number}]
                raise


def excel_scientific(column: str, value: str) -> str | None:
    """A row error's message when the code ``value`` of ``column`` is a number as Excel shows it
    in scientific notation ("2.02611E+11"), ``None`` otherwise. Excel saves a CSV as it shows
    the sheet: a number of 12 digits or more keeps 6 (a probe: two order numbers so became one
    order, a product was numbered "6.90123E+12"). The imports refuse such a code, per row."""
    if _EXCEL_SCIENTIFIC.fullmatch(value) is None:
        return None
    return (
        f"{column} {value!r}: Excel turned the number into scientific notation and lost its "
        "digits; format the column as text (Format Cells > Text), correct it and save again"
    )


def _check_header(
    names: list[str], columns: Sequence[str], required: Sequence[Sequence[str]]
) -> None:
    """400 ``bad_header``: a column not in ``columns``, a required one missing (each entry of
    ``required`` lists alternatives: one of them will do; the first is named), or one twice."""
    counted = Counter(names)  # a probe: ``names.count`` per name was O(columns²)
    unknown = [n for n in names if n not in columns]
    missing = [either[0] for either in required if not any(n in counted for n in either)]
    doubled = sorted(n for n, times in counted.items() if times > 1)
    if unknown or missing or doubled:
        raise _bad_header("bad header row", columns, unknown, missing, doubled)


def _bad_header(
    message: str,
    columns: Sequence[str],
    unknown: list[str],
    missing: list[str] | None = None,
    doubled: list[str] | None = None,
    line: int | None = None,
) -> BadRequest:
    """400 ``bad_header`` listing the unknown, missing and repeated columns (and ``line``, the
    file line of a value under a header cell left empty)."""
    details = {
        "unknown": unknown,
        "missing": missing or [],
        "repeated": doubled or [],
        "columns": list(columns),
    }
    return BadRequest(
        message, code="bad_header", details=details if line is None else {**details, "line": line}
    )


class _TooWide(Exception):
    """A line of more than ``MAX_LINE_COMMAS`` commas (``_lines``), the file line named."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _lines(text: str) -> Iterator[str]:
    """The file's lines for the CSV reader (CR, CRLF and LF each end one), refusing a line of
    more than ``MAX_LINE_COMMAS`` commas before the reader makes it a list of cells (counted
    line by line only in a file holding more)."""
    lines = io.StringIO(text, newline="")
    if text.count(",") <= MAX_LINE_COMMAS:
        return lines
    return _counted_lines(lines)


def _counted_lines(lines: io.StringIO) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if line.count(",") > MAX_LINE_COMMAS:
            raise _TooWide(number)
        yield line


def _too_wide_header(columns: Sequence[str]) -> BadRequest:
    message = f"the header row has more than {MAX_COLUMNS} columns (the empty ones counted)"
    error = _bad_header(message, columns, [])
    error.details["max_columns"] = MAX_COLUMNS
    return error


def _header(reader: Reader, columns: Sequence[str]) -> list[str]:
    """The header row (lower case, stripped): the first line holding a value (a sheet may start
    at A2: the blank lines above it are skipped — a probe: they made the file ``empty_file``).
    400 ``empty_file`` when there is none, ``malformed_csv`` naming its line, ``bad_header``
    past ``MAX_COLUMNS`` cells."""
    while True:
        line = reader.line_num + 1
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise BadRequest(
                f"line {line}: {exc}", code="malformed_csv", details={"line": line}
            ) from None
        except _TooWide:
            raise _too_wide_header(columns) from None
        if header is None:
            raise BadRequest("the file is empty: a header row is needed", code="empty_file")
        if len(header) > MAX_COLUMNS:
            raise _too_wide_header(columns)
        if any(h.strip() for h in header):
            return [h.strip().lower() for h in header]


def read_rows(
    text: str,
    columns: Sequence[str],
    required: Sequence[Sequence[str]],
    max_rows: int,
) -> tuple[list[str], list[Record]]:
    """The header's column names (lower case) and the non-empty rows below it.

    Column names are matched without case or surrounding spaces; blank rows are skipped, and so
    are columns without a name (Excel writes ``erp_code,name,,``) while no row has a value in
    one (a value there is 400 ``bad_header`` naming its line). 400 on a bad header (also one of
    more than ``MAX_COLUMNS`` cells) or malformed CSV (an unclosed quote, a line of more than
    ``MAX_LINE_COMMAS`` commas: the line is named), 413 past ``max_rows``. A row reads its
    named columns and the cells past the header only (a probe: every row walked the whole
    header, twice).
    """
    reader = csv.reader(_lines(text), strict=True)
    header = _header(reader, columns)
    named = [(i, n) for i, n in enumerate(header) if n]
    names = [n for _, n in named]
    unnamed = [i for i, n in enumerate(header) if not n]
    _check_header(names, columns, required)
    width, reach = len(header), named[-1][0] + 1  # reach: the cells up to the last named one
    rows: list[Record] = []
    last = reader.line_num
    try:
        for record in reader:
            line, last = last + 1, reader.line_num
            if not record or all(not v.strip() for v in record):
                continue
            size = len(record)
            if any(record[i].strip() for i in unnamed if i < size):
                message = f"line {line}: a value in a column whose header cell is empty"
                raise _bad_header(message, columns, [""], line=line)
            if len(rows) >= max_rows:
                raise PayloadTooLarge(
                    f"more than {max_rows:,} rows; split the file",
                    code="too_many_rows",
                    details={"max_rows": max_rows},
                )
            values = {n: (record[i].strip() if i < size else "") for i, n in named}
            extra = size > width and any(v.strip() for v in itertools.islice(record, width, None))
            rows.append(Record(line, values, extra, size < reach))
    except csv.Error as exc:
        line = reader.line_num
        raise BadRequest(
            f"line {line}: {exc}", code="malformed_csv", details={"line": line}
        ) from None
    except _TooWide as exc:
        message = f"line {exc.line}: more than {MAX_LINE_COMMAS:,} values on one line"
        details = {"line": exc.line, "max_values": MAX_LINE_COMMAS}
        raise BadRequest(message, code="malformed_csv", details=details) from None
    return names, rows
