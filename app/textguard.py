"""Control characters stop at the edge.

PostgreSQL cannot store NUL in ``text`` or ``jsonb``, and the other C0 control characters (and
DEL, and the C1 controls U+0080–U+009F) have no business in a serial, a name or a note: they
break CSV exports, logs and terminals. Nor have the bidirectional embeddings, overrides and
isolates (U+202A–U+202E, U+2066–U+2069): a store or brand name holding U+202E reversed the rest
of every sentence it was put in, an SMS's one-time code included.
Every way text enters — JSON bodies, query strings, path segments, CSV uploads — is checked here,
once, and refused with 400 ``invalid_character``. Tab, line feed and carriage return are allowed
(free-text notes and addresses keep their line breaks).

JSON bodies are checked on their raw bytes before decoding: a raw control byte is already invalid
JSON, so only the escapes ``\\u0000``–``\\u001f`` (less ``\\u0009``, ``\\u000a``, ``\\u000d``),
``\\u007f`` and ``\\b``/``\\f`` can smuggle one in. One regular-expression search, run in C, keeps
the bulk-upload hot path cheap.
"""

from __future__ import annotations

import re
from typing import Any

from app.errors import BadRequest

# What shows as nothing (bodies of a regular expression's character class):
# - SPACES: Unicode whitespace (``\s``: the ideographic and no-break spaces too), the Hangul
#   fillers U+115F, U+1160, U+3164, U+FFA0 and the braille blank U+2800 — each a blank gap;
# - FORMAT: the format characters (Unicode Cf) but the prepended concatenation marks (U+0600…,
#   which show a sign): the zero-width marks U+200B–U+200F, U+2060–U+2064, the BOM, the soft
#   hyphen U+00AD, the Mongolian vowel separator U+180E…;
# - MARKS: what changes the character before it, showing nothing itself: the combining
#   grapheme joiner U+034F, the variation selectors (U+FE00–U+FE0F, U+180B–U+180D, U+180F,
#   U+E0100–U+E01EF), the tags U+E0020–U+E007F (an emoji flag's), the Khmer U+17B4, U+17B5.
# One rule for every name, reason and reference a person reads: one of blanks only showed as
# nothing in every list and report (probes: spaces and zero-width marks, then a soft hyphen, an
# invisible operator, a Hangul filler, a braille blank, a variation selector alone). Used in the
# schemas' patterns (``msgspec.Meta(pattern=VISIBLE)``); a brand's name compares without them
# (migration 0142's ``brand_name_key``, which writes the same sets: tests/test_textguard.py).
# The characters beyond U+FFFF are written as themselves, not as ``\U…`` escapes: the patterns
# are the OpenAPI schema's too, where a regular expression is ECMA-262's.
SPACES = r"\s\u115f\u1160\u2800\u3164\uffa0"
FORMAT = (
    r"\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
)
MARKS = (
    r"\u034f\u17b4\u17b5\u180b-\u180d\u180f\ufe00-\ufe0f"
    "\U000e0020-\U000e007f\U000e0100-\U000e01ef"
)
BLANK = SPACES + FORMAT + MARKS
# a character a reader sees, with the marks that may follow it (an emoji's variation selector:
# "❤\ufe0f" ends a name as "❤" does)
VISIBLE = rf"[^{BLANK}][{MARKS}]*"
_BLANKS = re.compile(f"[{BLANK}]+")


def without_blanks(text: str) -> str:
    """``text`` with every blank (as above) taken out: a number or code copied from a chat
    carries zero-width marks a person never sees (a probe: a pasted code was 400)."""
    return _BLANKS.sub("", text)


# An escape that is not itself escaped: no backslash before it, or an even run of them.
_JSON_CONTROL = re.compile(
    rb"(?<!\\)(?:\\\\)*\\(?:u00(?:0[0-8bcefBCEF]|1[0-9a-fA-F]|7[fF]|[89][0-9a-fA-F])"
    rb"|u20(?:2[a-eA-E]|6[6-9])|[bf])"
)
# the same characters raw, in UTF-8: C1 (C2 80–9F), U+202A–U+202E, U+2066–U+2069
_JSON_RAW = re.compile(rb"\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class InvalidCharacter(BadRequest):
    status, code = 400, "invalid_character"


def _refuse(what: str, char: str, field: str | None = None) -> InvalidCharacter:
    where = f" ({field})" if field else ""
    return InvalidCharacter(
        f"{what}{where} contains a control character (U+{ord(char):04X})",
        details=[{"field": field or "", "message": "control character", "source": what}],
    )


def check_json_body(body: bytes) -> None:
    """Raise 400 ``invalid_character`` when a JSON body smuggles a control character in: as an
    escape, or as a raw DEL (JSON allows a raw U+007F in a string; the other raw controls are
    not JSON at all and fail to decode)."""
    # a byte value, not b"\x7f": for bytes ``in`` tries the operand as an integer first, and a
    # bytes operand costs a TypeError raised and cleared (~2k instructions; an int ~0.25k)
    if 0x7F in body:
        raise _refuse("body", "\x7f")
    if (0xC2 in body or 0xE2 in body) and (raw := _JSON_RAW.search(body)) is not None:
        raise _refuse("body", raw.group().decode())
    if 0x5C in body:  # a backslash: an escape
        match = _JSON_CONTROL.search(body)
        if match is not None:
            escape = match.group().lstrip(b"\\")
            char = {b"b": "\b", b"f": "\f"}.get(escape) or chr(int(escape[1:], 16))
            raise _refuse("body", char)


def check_text(value: str, field: str | None = None, what: str = "query") -> str:
    """Return ``value``, or raise 400 ``invalid_character`` when it holds a control character."""
    match = _TEXT_CONTROL.search(value)
    if match is not None:
        raise _refuse(what, match.group(), field)
    return value


def has_control(value: str) -> bool:
    return _TEXT_CONTROL.search(value) is not None


def without_controls(text: str) -> str:
    """``text`` with every control character (as ``check_text`` refuses them) taken out."""
    return _TEXT_CONTROL.sub("", text) if has_control(text) else text


def storable(text: str | None) -> str | None:
    """A gateway's words (an error, a message id) as PostgreSQL can store them: a NUL or another
    control character, which a gateway may send, becomes a space (a NUL in one rejection's error
    failed the whole SMS batch's record, and the batch was sent again until out of attempts; a
    WeChat answer's, the messages after it). The SMS and WeChat senders store theirs through it."""
    if text is None or not has_control(text):
        return text
    return "".join(c if c.isprintable() else " " for c in text)


def header_text(raw: bytes) -> str:
    """A request header's value as text to store (a User-Agent): UTF-8, as Chinese apps send
    theirs, a byte that is not UTF-8 as U+FFFD, control characters dropped. Read as Latin-1 it
    was stored garbled, C1 controls and all (probe Q)."""
    if raw.isascii():  # the server refused C0 controls and DEL already
        return raw.decode("ascii")
    return _TEXT_CONTROL.sub("", raw.decode("utf-8", "replace"))


def user_agent(scope: Any) -> str | None:
    """A request's User-Agent as ``header_text`` reads it (not as Litestar's headers do, in
    Latin-1: review R3 found the H5 pages storing it garbled still)."""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return header_text(value)
    return None
