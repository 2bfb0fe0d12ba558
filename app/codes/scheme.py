"""The serial scheme's Python face: the Rust core re-exported, plus what only Python knows.

The Rust core (``app._core``) does the cryptography and the bulk loops; this module adds the
checks that need application state (batch sizes live in the database) and small helpers to read
the bulk buffers without a Python object per code.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from collections.abc import Iterator, Sequence
from urllib.parse import unquote

from app._core import (
    MAX_BULK,
    SERIAL_LENGTH,
    VERIFY_FORGED,
    VERIFY_MALFORMED,
    VERIFY_OK,
    VERIFY_RECORD_SIZE,
    ForgedSerial,
    Gs1Error,
    MalformedSerial,
    Scheme,
    SerialError,
    UnknownKeyVersion,
    build_sscc,
    crockford_decode,
    crockford_encode,
    digital_link,
    gs1_check_digit,
    is_valid_gtin,
    is_valid_sscc,
    normalize_gtin,
    parse_digital_link,
    sgtin_urn,
    sscc_link,
    sscc_urn,
)
from app.config import Settings, parse_master_key
from app.errors import SerialNotInBatch

__all__ = [
    "CSET82",
    "CSET82_1_20",
    "MAX_BULK",
    "NO_KEY_VERSION",
    "SERIAL_LENGTH",
    "VERDICT",
    "VERIFY_FORGED",
    "VERIFY_MALFORMED",
    "VERIFY_OK",
    "VERIFY_RECORD_SIZE",
    "ForgedSerial",
    "Gs1Error",
    "MalformedSerial",
    "Scheme",
    "SerialError",
    "SerialNotInBatch",
    "UnknownKeyVersion",
    "build_sscc",
    "check_in_batch",
    "crockford_decode",
    "crockford_encode",
    "digital_link",
    "file_key",
    "gs1_check_digit",
    "is_valid_gtin",
    "is_valid_sscc",
    "iter_verdicts",
    "load_scheme",
    "normalize_gtin",
    "parse_digital_link",
    "parse_master_key",
    "record_size",
    "scheme_from_settings",
    "serial_from_scan",
    "sgtin_urn",
    "sscc_from_scan",
    "sscc_link",
    "sscc_urn",
]

# GS1 CSET 82, the character set of AI 21 (a serial), AI 10 (a lot) and the other text AIs: one
# definition, which the pattern and the set below are both made of.
_CSET82_CLASS = r"!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z"
#: GS1 CSET 82's characters (EPCIS checks its AIs' values against them, each at its own length).
CSET82 = frozenset(c for c in map(chr, range(128)) if re.fullmatch(f"[{_CSET82_CLASS}]", c))
#: 1–20 characters of GS1 CSET 82 (AI 21, AI 10): a B2B request's serial and lot, a lot the brand
#: declares and a lot the packing line records — one rule (a probe: a lot the line took,
#: ``LOT#1``, could never be verified or recalled by LMS).
CSET82_1_20 = rf"^[{_CSET82_CLASS}]{{1,20}}(?!\n)$"

#: Layout of one ``Scheme.verify_buffer`` result: status, batch_no, index, key version.
VERDICT = struct.Struct("<IIII")


def check_in_batch(index: int, batch_size: int) -> None:
    """Raise ``SerialNotInBatch`` unless ``0 <= index < batch_size``.

    The permutation covers all 2^32 indexes of a batch, so a serial can verify cryptographically
    for an index that was never issued; only the batch size, known to the database, rules it out.
    """
    if batch_size < 0:
        raise ValueError("batch_size must not be negative")
    if not 0 <= index < batch_size:
        raise SerialNotInBatch(f"index {index} is outside the batch (size {batch_size})")


#: The key version of a printer file's data key that depends on no key version: derived from the
#: master key alone (``file_key``), so a rotation that retires a version never stops the file
#: from being made again (case exports; allocation files since a probe: one allocated while
#: version 2 was current could not be fetched again once 2 was retired, though its batch's
#: version 1 was still active). Rows recorded before hold the version then current.
NO_KEY_VERSION = 0


def file_key(scheme: Scheme, settings: Settings, purpose: str, version: int) -> bytes:
    """The AES-256 data key of a printer file (``purpose`` names the file), derived from the
    master key, never stored: under key ``version`` (``Scheme.derive``, ``UnknownKeyVersion``
    once it is retired), or, for ``NO_KEY_VERSION``, from the master key alone
    (``Settings.subkey``)."""
    if version == NO_KEY_VERSION:
        return settings.subkey(purpose)
    return scheme.derive(purpose, version)


def load_scheme(
    master_key: bytes,
    versions: Sequence[int],
    current: int,
    pin_length: int = 6,
) -> Scheme:
    """Build the ``Scheme`` for the configured master key and active key versions."""
    return Scheme(master_key, list(versions), current, pin_length)


def scheme_from_settings(settings: Settings) -> Scheme:
    """The ``Scheme`` of the configured master key, active key versions and PIN length: the
    one the app, the CLI, the workers and the tests all build. Raises ``SettingsError`` (with a
    clear message, never the key) when the master key is missing or malformed."""
    return load_scheme(
        settings.master_key_bytes(),
        settings.active_key_versions,
        settings.current_key_version,
        settings.pin_length,
    )


def record_size(scheme: Scheme, with_pins: bool = True, newline: bool = False) -> int:
    """Bytes per record of ``scheme.generate(..., with_pins, newline=newline)``."""
    sep = 1 if newline else 0
    return SERIAL_LENGTH + (sep + scheme.pin_length if with_pins else 0) + sep


def iter_verdicts(results: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(status, batch_no, index, version) per record of a ``verify_buffer`` result."""
    return VERDICT.iter_unpack(results)


_SSCC_TEXT = re.compile(r"^(?:\(00\)|00)?([0-9]{18})$")

# An SSCC EPC URN: company prefix (6-12 digits) . extension digit + serial reference, 17 digits
# in all. Parsed here, not by app.epcis.identifiers: importing that package imports its routes,
# which import this module (a cycle at run time).
# The prefix in lower case: a scan's first 16 characters are lowered and compared, as the pattern
# ignores case (a probe: ``URN:EPC:id:sscc:…``, the README's "urn:epc: in any case", was malformed).
_SSCC_URN = "urn:epc:id:sscc:"
_SSCC_URN_TEXT = re.compile(r"urn:epc:id:sscc:([0-9]{6,12})\.([0-9]{5,11})", re.IGNORECASE)


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def _path(text: str) -> str:
    """The path of a URL (``scheme://host`` cut, and the query and fragment), or the text; never
    raises (``urlsplit`` raised on a bracket in the host — a probe: a 500 on /v1/verify)."""
    if "://" not in text:
        return text
    rest = text.split("://", 1)[1]
    slash = rest.find("/")
    return "" if slash < 0 else rest[slash:].split("?", 1)[0].split("#", 1)[0]


def scanned(text: str) -> str:
    """What a scanner read, as ASCII where it was typed with a Chinese input method (full-width
    characters, zero-width marks, a BOM: probe Q), without surrounding blanks."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    return text.strip()


def serial_from_scan(text: str) -> str:
    """The serial in what a scanner read: a bare serial, a ``…/c/{serial}`` URL or a Digital Link.

    Not validated: ``Scheme.verify`` decides whether it is a serial at all.
    """
    text = scanned(text)
    if "/" not in text:
        return text
    path = _path(text)
    if "%" in path:  # percent-escapes (``…/21/DTG%44…``): decoded as the resolver decodes them
        ais = _escaped_link(path)
        if ais is not None and "21" in ais:
            return ais["21"]
    parts = [p for p in path.split("/") if p]
    start = _gtin_at(parts)
    if start is not None:  # a Digital Link: AI and value in pairs from /01/{gtin} on (a probe: a
        pairs = parts[start:]  # lot of "21" or "C" was read as the serial's key)
        found = dict(zip(pairs[::2], pairs[1::2], strict=False))
        if "21" in found:
            return found["21"]
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "c":  # percent-escapes decoded, as the page's path is (a bad one or
            serial = parts[i + 1]  # a decoded control character: a malformed serial)
            return unquote(serial) if "%" in serial else serial
    return text


def gtin_from_scan(text: str) -> str | None:
    """The GTIN (14 digits) a Digital Link names (``…/01/{gtin}/21/{serial}``), else None: a
    unit's code is its serial, but the product the scan claims must be the unit's."""
    if "/01/" not in text:
        return None
    path = _path(text.strip())
    if "%" in path:
        ais = _escaped_link(path)
        if ais is not None and "01" in ais:
            return ais["01"]
    parts = [p for p in path.split("/") if p]
    start = _gtin_at(parts)
    return None if start is None else parts[start + 1].zfill(14)


def _escaped_link(path: str) -> dict[str, str] | None:
    """The AIs of a scanned Digital Link path holding percent-escapes, read by the resolver's
    ``parse_digital_link`` (each segment decoded after the split, the values checked: a bad
    escape or a decoded control character is no Digital Link); None when it is not a valid one
    (the caller reads the text as it is: a serial with a ``%`` is refused as malformed). A probe:
    ``…/21/DTG%44…``, the resolver's unit, was refused by /v1/verify as malformed."""
    if not path.isascii():  # a URI's path is ASCII (and a lone surrogate cannot reach Rust)
        return None
    try:
        return parse_digital_link(path if path.startswith("/") else f"/{path}")
    except Gs1Error:
        return None


def _gtin_at(parts: list[str]) -> int | None:
    """Where a Digital Link's ``01/{gtin}`` starts among a path's segments: the first ``01``
    followed by 8, 12, 13 or 14 digits (a custom path prefix may hold an ``01`` of its own: a
    regression probe, ``/campaign/01/01/{gtin}/21/{serial}`` answered malformed)."""
    for i, part in enumerate(parts[:-1]):
        value = parts[i + 1]
        if part == "01" and value.isdigit() and len(value) in (8, 12, 13, 14):
            return i
    return None


def _sscc_of_urn(text: str) -> str | None:
    """The SSCC an EPC URN names (``urn:epc:id:sscc:0614141.1123456789`` → extension digit,
    company prefix, serial reference, check digit), or None when it is not a well-formed one."""
    match = _SSCC_URN_TEXT.fullmatch(text)
    if match is None or len(match[1]) + len(match[2]) != 17:
        return None
    data = match[2][0] + match[1] + match[2][1:]
    return f"{data}{gs1_check_digit(data)}"


def sscc_from_scan(text: str) -> str | None:
    """The 18 digits of a case code read as ``SSCC``, ``00SSCC``, ``(00)SSCC``, ``…/00/SSCC`` or
    ``urn:epc:id:sscc:{company}.{ref}`` (an RFID reader's EPC URI, the brand's EPCIS documents'
    name of a case: a probe, refused as a malformed serial).

    None when the text is not shaped like a case code; the check digit is not checked here (a
    URN carries none: it is computed).
    """
    text = scanned(text)  # a probe: full-width digits, a BOM, read as a unit's serial
    if text[:16].lower() == _SSCC_URN:  # one O(1) check for every other scan (packing's hot path)
        return _sscc_of_urn(text)
    if "/00/" in text:
        # the query and the fragment cut (a probe: ``…/00/{sscc}#shelf`` read as a unit's serial,
        # a genuine case recorded as a counterfeit)
        text = text.rsplit("/00/", 1)[1].split("?", 1)[0].split("#", 1)[0].strip("/")
    match = _SSCC_TEXT.match(text.replace(" ", ""))
    return match.group(1) if match else None
