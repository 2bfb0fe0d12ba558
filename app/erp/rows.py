"""Reading a master-data import: a CSV file or a JSON body into typed rows, each with its errors.

Both formats end in the same row Structs (``app.erp.schemas``) through one conversion, so a
value is judged alike wherever it comes from: CSV cells are text (``"30.25"`` becomes a number,
``"true"`` a boolean, an empty cell ``null``), JSON values keep their JSON types. Before the
conversion every text value is checked for control characters (400-like ``invalid_character``,
for that row only); after it, the text columns a spreadsheet would show are checked for a formula
start (``= + - @``, their full-width forms, also after leading blanks: ``formula_lead`` of
``app.tabular``, the exports' one rule; ``formula_value``): such a cell is refused rather than
stored and exported, and the product number for Excel's scientific notation ("6.90123E+12",
``invalid_value``): a number of 12 digits or more Excel saved as it showed it, its digits lost.
A value of a column with a pattern (codes, usernames, phones …) may not end with a line feed
either (``invalid_value``): every pattern ends with ``(?!\n)$`` (tests/test_patterns.py).

A row that fails any check is rejected with its errors (row, CSV line, column, stable code,
message) and the others go on; only a file that cannot be read at all — bad encoding, bad header,
malformed CSV, too big — is refused whole (``app.csvread``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from app._core import Gs1Error, normalize_gtin
from app.csvread import Encoding, decode, excel_scientific, read_rows
from app.edge import MAX_JSON_DEPTH, TooDeep, json_depth_ok
from app.erp.schemas import Entity, MasterDataError, MasterDataIn, MasterDataResult
from app.errors import BadRequest, PayloadTooLarge, invalid_body
from app.tabular import formula_lead
from app.textguard import has_control

Format = Literal["csv", "json"]
_LIST_SPLIT = re.compile(r"[\s,;|]+")
_AT = re.compile(r" - at `\$\.?([A-Za-z_]*)")
_NAMED = re.compile(r"field `([^`]*)`")
# the code columns a spreadsheet shows as numbers, in scientific notation past 11 digits (an
# EAN as product number): such a value is refused (``excel_scientific``), never stored
_NUMBER_CODES = ("product_no",)


@dataclass(frozen=True)
class Spec:
    """What one entity's rows are: their Struct, the columns a spreadsheet shows as text (the
    formula guard), the columns CSV lists as separated names, the columns unique in a file."""

    entity: Entity
    row_type: type[msgspec.Struct]
    text_columns: frozenset[str]
    list_columns: frozenset[str] = frozenset()
    unique: tuple[str, ...] = ("erp_code",)
    caseless: frozenset[str] = frozenset()  # unique columns whose case does not tell apart
    composed: frozenset[str] = frozenset()  # unique columns the row type keeps in NFC
    gtins: frozenset[str] = frozenset()  # unique columns kept as GTIN-14 (``normalize_gtin``)
    max_rows: int = 50_000
    takes_passwords: bool = False  # a password column is refused as such, not as unknown

    @property
    def columns(self) -> tuple[str, ...]:
        return self.row_type.__struct_fields__

    @functools.cached_property
    def nullable(self) -> frozenset[str]:
        """The columns an empty CSV cell clears (their type takes ``null``)."""
        info = msgspec.inspect.type_info(self.row_type)
        assert isinstance(info, msgspec.inspect.StructType)
        return frozenset(
            f.name
            for f in info.fields
            if isinstance(f.type, msgspec.inspect.UnionType) and f.type.includes_none
        )

    def same(self, column: str, value: str) -> str:
        """A unique column's value in the form rows are told apart by: the one its row type
        keeps and its unique index compares — in NFC (``composed``: a product number typed
        decomposed is the same number), then in lower case (``caseless``: a username), a GTIN
        as GTIN-14 (``gtins``: an EAN-13 and its GTIN-14 are one; one that is no GTIN as read,
        its row refused ``invalid_gtin`` anyway)."""
        if column in self.gtins:
            try:
                return normalize_gtin(value)
            except (Gs1Error, ValueError):
                return value
        if column in self.composed and not unicodedata.is_normalized("NFC", value):
            value = unicodedata.normalize("NFC", value)
        return value.lower() if column in self.caseless else value


@dataclass(slots=True)
class Item:
    """One row on its way through an import: its place, its data (``None`` once rejected or
    when unreadable), the values of its unique columns as read (``keys``: kept when the row is
    rejected), its errors and what became of it."""

    row: int
    line: int | None
    erp_code: str | None
    data: Any = None
    keys: dict[str, str] = field(default_factory=dict)
    errors: list[MasterDataError] = field(default_factory=list)
    result: Literal["created", "updated", "unchanged"] | None = None
    id: int | None = None
    changed: list[str] = field(default_factory=list)
    initial_password: str | None = None

    def fail(self, column: str | None, code: str, message: str) -> None:
        """Reject the row (it is not applied) with one more error."""
        self.errors.append(
            MasterDataError(
                row=self.row,
                line=self.line,
                erp_code=self.erp_code,
                column=column,
                code=code,
                message=message,
            )
        )
        self.data = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def outcome(self) -> MasterDataResult:
        return MasterDataResult(
            row=self.row,
            erp_code=self.erp_code,
            result=self.result if self.ok and self.result else "rejected",
            id=self.id if self.ok else None,
            changed=self.changed if self.ok else [],
            initial_password=self.initial_password if self.ok else None,
        )


def read_items(raw: bytes, fmt: Format, spec: Spec, encoding: Encoding | None = None) -> list[Item]:
    """Every row of the body as an ``Item``; rows sharing a unique value are all rejected.
    ``encoding``: the one a CSV body declares (``app.csvread.decode``)."""
    items = _from_csv(raw, spec, encoding) if fmt == "csv" else _from_json(raw, spec)
    for column in spec.unique:
        _reject_repeats(items, column, spec)
    return items


def _from_csv(raw: bytes, spec: Spec, encoding: Encoding | None) -> list[Item]:
    text = decode(raw, encoding)
    try:
        _, records = read_rows(text, spec.columns, (("erp_code",),), spec.max_rows)
    except BadRequest as exc:
        if (
            spec.takes_passwords
            and exc.code == "bad_header"
            and "password" in exc.details["unknown"]
        ):
            raise _no_passwords() from None
        raise
    items = []
    for n, record in enumerate(records, start=1):
        item = Item(n, record.line, record.values.get("erp_code") or None)
        _keep_keys(item, record.values, spec)
        if record.extra:
            item.fail(None, "extra_values", "more values than header columns")
        if record.short:  # a probe: its missing cells, read as empty, cleared their fields
            item.fail(None, "missing_values", _SHORT)
        values: dict[str, Any] = {}
        for column, value in record.values.items():
            if has_control(value):
                _control(item, column)
            elif column in spec.list_columns:
                names = [v for v in _LIST_SPLIT.split(value) if v.strip()]
                if names or column in spec.nullable:  # a probe: a blank cell took every role
                    values[column] = names
            elif value or column in spec.nullable:  # an empty cell clears, or says nothing
                values[column] = value or None
        if item.ok:
            _convert(item, values, spec, strict=False)
        items.append(item)
    return items


_SHORT = (
    "fewer values than header columns (a row cut short?): leave a cell empty to clear its "
    "field, or leave the column out"
)


def _no_passwords() -> BadRequest:
    return BadRequest(
        "passwords are never imported: new users get a one-time initial password",
        code="password_not_imported",
    )


# Python's float() takes a number past a float's range (1e400) as infinity, where the decoder's
# own refuses the whole file: the row's conversion then refuses it (``bad_coordinates`` past the
# bounds, ``invalid_value`` where a text or an integer goes) and the file's other rows are
# imported.
_WIDE = msgspec.json.Decoder(MasterDataIn, strict=True, float_hook=float)


class _Seen:
    """An item counted (``_counted``): one object stands for them all."""


_SEEN = _Seen()


class _Items(msgspec.Struct):
    items: list[_Seen]


# counts a body's items without keeping them: each is decoded and dropped at once (the hook),
# the list holds one shared object (8 bytes an item; as ``msgspec.Raw``, 56)
_COUNTER = msgspec.json.Decoder(_Items, dec_hook=lambda _type, _obj: _SEEN)


def _too_many(max_rows: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"more than {max_rows:,} rows; split the file",
        code="too_many_rows",
        details={"max_rows": max_rows},
    )


def _counted(raw: bytes, max_rows: int) -> None:
    """413 ``too_many_rows`` for a body of more than ``max_rows`` items, before they are decoded
    whole (a probe: 10 MB of ``{}`` made 3.5 million dicts, ~260 MB, before the count). Every
    item is an object, so a body of at most ``max_rows`` + 1 braces holds no more; else the
    items are counted. Any other problem is left to the decoding proper."""
    if raw.count(b"{") <= max_rows + 1:
        return
    try:
        count = len(_COUNTER.decode(raw).items)
    except msgspec.MsgspecError:
        return
    if count > max_rows:
        raise _too_many(max_rows)


def _from_json(raw: bytes, spec: Spec) -> list[Item]:
    if not json_depth_ok(raw):
        raise TooDeep(
            f"the JSON document is nested more than {MAX_JSON_DEPTH} levels deep",
            details={"max_depth": MAX_JSON_DEPTH},
        )
    _counted(raw, spec.max_rows)
    try:
        body = msgspec.json.decode(raw, type=MasterDataIn, strict=True)
    except msgspec.MsgspecError as exc:
        try:  # a number past a float's range is its row's error, not the file's (probe)
            body = _WIDE.decode(raw)
        except msgspec.MsgspecError:
            raise invalid_body(exc) from None
    if len(body.items) > spec.max_rows:
        raise _too_many(spec.max_rows)
    items = []
    for n, values in enumerate(body.items, start=1):
        code = values.get("erp_code")
        item = Item(n, None, code if isinstance(code, str) and not has_control(code) else None)
        _keep_keys(item, values, spec)
        if spec.takes_passwords and "password" in values:
            item.fail("password", "password_not_imported", _no_passwords().message)
        for column, value in values.items():
            texts = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and has_control(v) for v in texts) or has_control(column):
                _control(item, column if not has_control(column) else None)
        if item.ok:
            _convert(item, values, spec, strict=True)
        items.append(item)
    return items


def _keep_keys(item: Item, values: dict[str, Any], spec: Spec) -> None:
    """Keep the row's values of the unique columns as read, for ``_reject_repeats``."""
    for column in spec.unique:
        value = values.get(column)
        if isinstance(value, str) and value:
            item.keys[column] = value


def _control(item: Item, column: str | None) -> None:
    item.fail(
        column,
        "invalid_character",
        f"{column or 'a key'}: a control character (NUL and the like) has no place here",
    )


def _convert(item: Item, values: dict[str, Any], spec: Spec, *, strict: bool) -> None:
    """The row's Struct, or its one conversion error; then the formula guard and the check of
    the codes Excel may have shown in scientific notation."""
    try:
        data = msgspec.convert(values, spec.row_type, strict=strict)
    except msgspec.ValidationError as exc:
        column, code, message = explain(str(exc), values)
        item.fail(column, code, message)
        return
    for column in spec.text_columns:
        value = getattr(data, column, None)
        lead = formula_lead(value) if isinstance(value, str) else None
        if lead is not None:
            message = f"{column} starts with {lead!r}: a spreadsheet would run it as a formula"
            item.fail(column, "formula_value", message)
    for column in _NUMBER_CODES:
        value = getattr(data, column, None)
        mangled = excel_scientific(column, value) if isinstance(value, str) else None
        if mangled is not None:
            item.fail(column, "invalid_value", mangled)
    if item.ok:
        item.data = data


def explain(message: str, values: dict[str, Any]) -> tuple[str | None, str, str]:
    """(column, code, message) of a msgspec validation error of a row."""
    at = _AT.search(message)
    named = _NAMED.search(message)
    column = at.group(1) if at and at.group(1) else (named.group(1) if named else None)
    text = message.split(" - at `")[0]
    if "unknown field" in message:
        return column, "unknown_column", f"no column {column!r}"
    if "missing required field" in message or (column and values.get(column) is None):
        return column, "missing_value", f"{column} is required"
    if column in ("latitude", "longitude"):
        limit = 90 if column == "latitude" else 180
        return column, "bad_coordinates", f"{column}: degrees from -{limit} to {limit} ({text})"
    return column, "invalid_value", f"{column}: {text}"


def _reject_repeats(items: Sequence[Item], column: str, spec: Spec) -> None:
    """Rows that share a value of a unique column are all rejected: which one is meant cannot be
    told. Compared as read, a rejected row's too (a probe: a row sharing its code with a bad row
    was applied as if it were the only one), in the form the row type keeps and the unique index
    compares (``Spec.same``: a probe: a product number composed and the same decomposed, on two
    rows, made the first row's product and refused the second ``duplicate_product_no``)."""
    rows: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        value = item.keys.get(column)
        if value is not None:
            rows[spec.same(column, value)].append(item)
    for value, same in rows.items():
        if len(same) > 1:
            message = _repeated(column, value, same)  # one message for all (a probe: each
            for item in same:  # listed every row: 8,000 rows of one code made 47 MB of answer)
                item.fail(column, "duplicate_in_file", message)


_ROWS_NAMED = 5  # the rows a duplicate_in_file message names; the others are counted


def _repeated(column: str, value: str, same: Sequence[Item]) -> str:
    """``duplicate_in_file``'s message: the value (cut at 64 characters), the first rows and
    how many others share it."""
    shown = repr(value if len(value) <= 64 else value[:64] + "…")
    numbers = ", ".join(str(i.row) for i in same[:_ROWS_NAMED])
    more = len(same) - _ROWS_NAMED
    others = f" and {more:,} more rows" if more > 0 else ""
    return f"{column} {shown} is on rows {numbers}{others} of this file"
