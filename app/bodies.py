"""JSON request bodies are decoded strictly, straight into the handler's ``data`` type.

Litestar decodes a body to plain values and then converts them to the handler's type with
``msgspec.convert(..., strict=False)`` (its signature model), which lets ``1e3``, ``1000.0`` and
``"1000"`` through as the integer 1000 and ``"true"`` as a boolean — in every field of every body.
JSON has its own numbers and booleans, so a body field takes those only. Query and path
parameters are text by nature and keep Litestar's conversion.

``decode_data`` decodes the body with ``strict=True`` into the ``data`` type (an error names the
field: 400 ``validation_failed``; bad JSON: 400 ``malformed_json``) and the request keeps the
result: Litestar's lax conversion then meets a value of the right type and passes it through.
Decoding straight into Structs is also cheaper than plain values plus a conversion.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

#: A time in a body: with its offset. A time without one is refused (400), never read as UTC: a
#: gift "valid from 2026-12-04T00:00:00" opened at 08:00 in Beijing (probe L).
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]

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
    return msgspec.json.decode(body, type=target, strict=True)
