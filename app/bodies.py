"""JSON request bodies are decoded strictly, straight into the handler's ``data`` type.

Litestar decodes a body to plain values and then converts them to the handler's type with
``msgspec.convert(..., strict=False)`` (its signature model), which lets ``1e3``, ``1000.0`` and
``"1000"`` through as the integer 1000 and ``"true"`` as a boolean — in every field of every body.
JSON has its own numbers and booleans, so a body field takes those only. Query and path
parameters are text by nature and keep Litestar's conversion, but for date-times (``QueryTime``).

``decode_data`` decodes the body with ``strict=True`` into the ``data`` type (an error names the
field: 400 ``validation_failed``; bad JSON: 400 ``malformed_json``) and the request keeps the
result: Litestar's lax conversion then meets a value of the right type and passes it through.
Decoding straight into Structs is also cheaper than plain values plus a conversion.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import msgspec
from litestar._openapi.schema_generation.schema import TYPE_MAP

#: Characters of one scanned text, in every body that takes a scan: a document's, a sale's and a
#: return's codes, an inspection's code, a claim's serial. A unit's whole QR content (a URL with
#: parameters, a Digital Link with a lot) as the staff app sends it, up to its own limit
#: (console/src/mobile/scan/parse.ts ``MAX_CODE``): a label the inspection read was refused by a
#: document, a sale or a return at 256 (a probe). ``read_codes`` names a long one by its serial.
SCAN_MAX = 512


class _AnyDatetime(type):
    def __instancecheck__(cls, value: object) -> bool:
        return isinstance(value, datetime)


class QueryTime(datetime, metaclass=_AnyDatetime):
    """A date-time query parameter (``?from=``, ``?to=``): ISO 8601 text (RFC 3339), with its
    offset or without (a Beijing wall-clock time, ``app.localtime.aware``). Litestar converts
    query values laxly (msgspec ``strict=False``), which reads a number as Unix seconds: staff
    filtering ``from=20261201`` got a 200 list from 1970-08-23 (a probe). Anything else is a
    400 ``validation_failed``.

    The handler receives a plain ``datetime`` (this class is only the parameter's type, every
    datetime is an instance of it): Litestar's signature model decodes a type msgspec does not
    know with the type's ``_decoder``, and its OpenAPI schema is a datetime's (the console's
    typed client is generated from it)."""

    @staticmethod
    def _decoder(_: Any, value: Any) -> datetime:
        try:
            return msgspec.convert(value, datetime)  # strictly: RFC 3339 text only
        except msgspec.ValidationError:
            raise ValueError(
                "expected an ISO 8601 date-time, such as 2026-12-01T00:00:00+08:00"
            ) from None


#: The times a body may name: from year 1 in UTC, where the database keeps them, to the last
#: moment of 9999-12-31 in Beijing, where pages, files and SMS show them (a probe: a promotion
#: ending 9999-12-31T23:59:59Z, year 10000 in Beijing, made the members' page a 500).
FIRST_TIME = datetime(1, 1, 1, tzinfo=UTC)
LAST_TIME = datetime.max.replace(tzinfo=timezone(timedelta(hours=8)))
_ZERO = timedelta(0)
#: The widest UTC offset a time may carry: EPCIS's (xsd, -14:00 to +14:00, the world's zones).
#: RFC 3339 (msgspec, Python) takes up to ±23:59, PostgreSQL's input ±15:59: a probe's scan at
#: +23:59, bound in a text array, made a whole upload 400 with PostgreSQL's "time zone
#: displacement out of range"; one at +14:30 was served as an EPCIS event our own capture refuses.
MAX_OFFSET = timedelta(hours=14)
#: A time with its offset, not bounded here: a scan's, which its service bounds tighter (its
#: offset too) and answers per scan (``app.packing.scans``: ``bad_time``, the rest of the upload
#: applied), of thousands in a body (no hook per value).
OffsetTime = Annotated[datetime, msgspec.Meta(tz=True)]


class AwareTime(datetime, metaclass=_AnyDatetime):
    """A time in a body: with its offset. A time without one is refused (400), never read as
    UTC: a gift "valid from 2026-12-04T00:00:00" opened at 08:00 in Beijing (probe L). So is
    one outside ``FIRST_TIME``..``LAST_TIME`` (400 ``validation_failed`` naming the field), as
    msgspec refuses a year 0 or 10000 as written, and one whose offset is beyond ``MAX_OFFSET``
    (±14:00; RFC 3339 writes up to ±23:59, which PostgreSQL and EPCIS refuse).

    As ``QueryTime``, only the field's type: a body decodes it with ``decode_data``'s hook (or
    Litestar with ``_decoder``) into a plain ``datetime``; its OpenAPI schema is a datetime's."""

    @staticmethod
    def _decoder(_: Any, value: Any) -> datetime:
        return aware_time(value)


def aware_time(value: Any) -> datetime:
    """``value`` (RFC 3339 text) as an ``AwareTime``; ValueError unless it is one."""
    try:
        moment = msgspec.convert(value, OffsetTime)
    except msgspec.ValidationError as error:  # a hook's own is passed on without its field
        raise ValueError(str(error)) from None
    if not FIRST_TIME <= moment <= LAST_TIME:
        raise ValueError(
            "expected a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999+08:00"
        )
    if abs(moment.utcoffset() or _ZERO) > MAX_OFFSET:
        raise ValueError("expected a UTC offset from -14:00 to +14:00")
    return moment


def _dec_hook(kind: Any, value: Any) -> Any:
    if kind is AwareTime:
        return aware_time(value)
    raise TypeError(f"Expected `{getattr(kind, '__name__', kind)}`")


# Litestar 2 documents a type by exact match in this map; the lists' tests check the schema.
TYPE_MAP[QueryTime] = TYPE_MAP[datetime]
TYPE_MAP[AwareTime] = TYPE_MAP[datetime]

_NO_TYPE = object()
_types: dict[int, Any] = {}  # route handler id -> the type of its ``data`` (or _NO_TYPE)


def data_type(route_handler: Any) -> Any:
    """The annotation of the handler's ``data`` parameter, or ``_NO_TYPE`` without one."""
    key = id(route_handler)
    found = _types.get(key)
    if found is None:
        field = route_handler.parsed_fn_signature.parameters.get("data")
        found = _NO_TYPE if field is None or field.annotation is Any else field.annotation
        _types[key] = found
    return found


def decode_data(route_handler: Any, body: bytes) -> Any:
    """The body as the handler's ``data`` type, decoded strictly (plain values without one)."""
    target = data_type(route_handler)
    if target is _NO_TYPE:
        return msgspec.json.decode(body)
    return msgspec.json.decode(body, type=target, strict=True, dec_hook=_dec_hook)
