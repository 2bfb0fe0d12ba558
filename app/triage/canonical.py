"""Canonical JSON of the evidence packs: RFC 8785, the JSON Canonicalization Scheme (JCS).

One document, one byte string, so that a signature over it means one thing and any other
program can rebuild the bytes from the parsed document:

* UTF-8, no byte-order mark, no whitespace between tokens;
* object members sorted by their names compared as UTF-16 code units (for names of the Basic
  Multilingual Plane that is code-point order); duplicate names are refused;
* strings as ECMAScript's ``JSON.stringify`` writes them: ``"`` and ``\\`` escaped, the controls
  U+0000–U+001F as ``\\b \\t \\n \\f \\r`` or ``\\u00xx`` (lower-case hex), everything else as
  itself (no ``\\uXXXX`` for non-ASCII, ``/`` not escaped); a lone surrogate is refused;
* numbers as ECMAScript's ``Number.prototype.toString`` writes an IEEE 754 double (``1e+21``,
  ``0.000001``, ``1e-7``, ``-0`` as ``0``); NaN and the infinities are refused, and so is an
  integer a double cannot hold exactly (beyond ±2^53: the packs write such ids as strings).
* ``true``, ``false``, ``null``.

The offline verifier (``app/triage/verify_pack.py``) carries its own copy of this function, so
that it runs without the rest of Tracecode; ``tests/test_evidence.py`` checks both against the
RFC's examples and against each other.
"""

from __future__ import annotations

import math
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1  # ECMAScript's Number.MAX_SAFE_INTEGER

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


class NotCanonicalisable(ValueError):
    """A value JCS cannot represent exactly (NaN, an unsafe integer, a lone surrogate, a type
    that is no JSON value)."""


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value (dicts, lists, str, int, float, bool, None)."""
    out: list[str] = []
    _write(value, out)
    return "".join(out).encode("utf-8")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise NotCanonicalisable(f"integer {value} is beyond 2^53: write it as a string")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(number(value))
    elif isinstance(value, dict):
        names = list(value)
        if any(not isinstance(name, str) for name in names):
            raise NotCanonicalisable("object member names are strings")
        out.append("{")
        for i, name in enumerate(sorted(names, key=lambda n: n.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(_string(name))
            out.append(":")
            _write(value[name], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise NotCanonicalisable(f"{type(value).__name__} is no JSON value")


def _string(text: str) -> str:
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif code < 0x20:
            parts.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise NotCanonicalisable("a lone surrogate is no Unicode text")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def number(value: float) -> str:
    """ECMAScript's Number.prototype.toString of a double (RFC 8785 section 3.2.2.3): the
    shortest digits that read back as the same double (Python's ``repr`` finds them), laid out by
    the ECMAScript rules."""
    if not math.isfinite(value):
        raise NotCanonicalisable("NaN and the infinities are no JSON numbers")
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    raw = whole + frac
    digits = raw.lstrip("0")
    # n: where the decimal point is, counted from the first significant digit
    n = len(whole) + (int(exp) if exp else 0) - (len(raw) - len(digits))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-")
        text += str(abs(e))
    return sign + text
