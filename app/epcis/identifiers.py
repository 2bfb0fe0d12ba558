"""EPCIS identifiers in one canonical form: the constrained GS1 Digital Link URI of CBV 2.0.

The CBV 2.0 event hash (and Tracecode's EPCIS storage after it) compares identifiers in one
form, whatever syntax the document used: EPC URNs (``urn:epc:id:sgtin:…``), EPC class URNs
(``urn:epc:class:lgtin:…``), EPC ID pattern URNs (``urn:epc:idpat:sgtin:….*``) and GS1 Digital
Link URIs on any host all become the *constrained canonical* Digital Link URI
``https://id.gs1.org/{AI}/{key}[/{AI}/{qualifier}]``, as the reference implementation of the
algorithm (RalphTro/epcis-event-hash-generator, ``dl_normaliser.py``) makes it:

- URNs: check digits are computed, each scheme maps to its primary AI (sgtin → 01 + 21,
  sscc → 00, sgln → 414 [+ 254 unless the extension is ``0``], grai → 8003, giai → 8004,
  gsrn → 8018, gsrnp → 8017, gdti → 253, sgcn → 255, cpi → 8010 + 8011, ginc → 401,
  gsin → 402, itip → 8006 + 21, upui → 01 + 235, pgln → 417, lgtin → 01 + 10; the idpat
  forms whose only wildcard is the last field → the key without serial).
- Digital Link: any host and custom path prefix become ``https://id.gs1.org``; the query
  string and fragment go; short names (``gtin``, ``ser``, …) become AIs; a GTIN is padded to
  14 digits; only the finest level is kept (a serial drops the lot, a CPV always goes).
- Values are percent-decoded, checked against their character set and length, and
  re-encoded one way: ``' - . ; = _`` letters and digits as they are, every other character
  as ``%XX`` (upper case), so a URN and a Digital Link of the same EPC meet.

Deviations from the reference, all on inputs it cannot canonicalise: it leaves a Digital Link
with a percent-escape, a fragment, or a CPV + serial longer than 20 characters unconverted,
and never checks check digits; here escapes are decoded, the fragment dropped, and a wrong
check digit, an unknown qualifier, qualifiers out of the Digital Link order or a value
outside its character set is an ``IdentifierError`` (so is any malformed ``urn:epc:id:`` or
``urn:epc:class:`` URN). An EPC Tag URI (``urn:epc:tag:sgtin-96:3.0614141.812345.6789``, any
GS1 scheme of TDS 2.x) and a tag pattern naming one tag become their pure identity's form, the
filter value dropped (the reference keeps them as sent: so does the event hash, ``tags=False``);
an EPC Raw URI (``urn:epc:raw:``), an unknown tag scheme or a malformed tag URI is an
``IdentifierError``. Non-GS1 EPC schemes (gid, usdod, adi, bic, imovn, and their tag URIs),
other idpat shapes, tag patterns of many tags, and every other absolute URI are returned
unchanged.

Speed (it runs on every EPC captured): the plain SGTIN and SSCC forms (URN, or Digital Link
without a custom path prefix) take one precompiled regex and one Rust check digit (about
300,000-500,000 calls/s on one core); every other form takes the general parser behind an
``lru_cache`` (locations and classes repeat from event to event).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from app._core import Gs1Error, gs1_check_digit
from app.codes.scheme import CSET82  # GS1 CSET 82's characters: one definition, with its pattern

__all__ = [
    "CANONICAL_ORIGIN",
    "IdentifierError",
    "canonical",
    "gtin_serial",
    "known_sgtins",
    "sscc",
]

CANONICAL_ORIGIN = "https://id.gs1.org"


class IdentifierError(ValueError):
    """A malformed EPC URN, or a GS1-key-shaped Digital Link URI that is invalid."""


_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CSET39 = frozenset("#-/" + _DIGITS + _LETTERS[:26])
_KEPT = frozenset("'-.;=_" + _DIGITS + _LETTERS)
_PLAIN = re.compile(r"[A-Za-z0-9'\-.;=_]+")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_URN_FIELD = re.compile(r"(?:[A-Za-z0-9!'()*+,\-.:;=_]|%[0-9A-Fa-f]{2})+")
_PATH_SEGMENT = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+")
_NUM = re.compile(r"[0-9]*")
_COMPANY = re.compile(r"[0-9]{6,12}")
_URN = re.compile(r"urn:epc:(id|idpat|class):([a-z]+):(.+)", re.DOTALL)
_HTTP = re.compile(r"https?://[^/?#\s]+(/[^?#\s]*)?(?:\?[^#\s]*)?(?:#\S*)?")
_KEY_SHAPED = re.compile(r"[0-9]{4}")
_CANONICAL_SGTIN = re.compile(r"https://id\.gs1\.org/01/([0-9]{14})/21/([^/]+)")
_CANONICAL_SSCC = re.compile(r"https://id\.gs1\.org/00/([0-9]{18})")


def _fail(uri: str, why: str) -> IdentifierError:
    shown = uri if len(uri) <= 120 else uri[:117] + "..."
    return IdentifierError(f"{why}: {shown!r}")


# --- values -------------------------------------------------------------------------------


def _decode(text: str, charset: frozenset[str], low: int, high: int) -> str | None:
    """``text`` percent-decoded if every character is in ``charset`` and it has low..high."""
    if "%" in text:
        text = _PCT.sub(lambda m: chr(int(m.group(1), 16)), text)
    if not low <= len(text) <= high or not charset.issuperset(text):
        return None
    return text


def _encode(value: str) -> str:
    """The canonical percent-encoding of a decoded value (see the module docstring)."""
    if _PLAIN.fullmatch(value):
        return value
    return "".join(c if c in _KEPT else f"%{ord(c):02X}" for c in value)


def _with_check(data: str) -> str:
    return data + str(gs1_check_digit(data))


def _checked(digits: str, verify: bool = True) -> bool:
    """Whether ``digits`` are ASCII digits ending in their check digit (if ``verify``)."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    return not verify or digits == _with_check(digits[:-1])


# --- EPC URNs -----------------------------------------------------------------------------


class _Bad(Exception):
    """A URN field failed its check; ``canonical`` turns it into an IdentifierError."""


def _fields(body: str, count: int) -> list[str]:
    parts = body.split(".", count - 1)
    if len(parts) != count:
        raise _Bad(f"expected {count} dot-separated fields")
    return parts


def _reference(company: str, ref: str, total: int) -> str:
    """Company prefix + reference, checked as ``total`` digits (6-12 digit prefix)."""
    if not _COMPANY.fullmatch(company) or not _NUM.fullmatch(ref):
        raise _Bad("company prefix and reference must be digits (prefix 6-12)")
    if len(company) + len(ref) != total:
        raise _Bad(f"company prefix + reference must be {total} digits")
    return company + ref


def _indicator_key(company: str, ref: str, total: int) -> str:
    """GTIN-14 or SSCC-18 from prefix.indicator+reference: indicator first, check digit last."""
    _reference(company, ref, total)
    return _with_check(ref[0] + company + ref[1:])


def _value(field: str, high: int, charset: frozenset[str] = CSET82, low: int = 1) -> str:
    """A URN value field (serial, lot, asset reference …), canonically encoded for the DL."""
    if not _URN_FIELD.fullmatch(field):
        raise _Bad("characters not allowed in an EPC URN")
    decoded = _decode(field, charset, low, high)
    if decoded is None:
        raise _Bad(f"value must be {low}-{high} characters of its GS1 character set")
    return _encode(decoded)


def _serial_digits(field: str, high: int) -> str:
    if not field.isascii() or not field.isdigit() or len(field) > high:
        raise _Bad(f"serial must be 1-{high} digits")
    return field


def _sgtin(body: str) -> str:
    company, ref, serial = _fields(body, 3)
    return f"/01/{_indicator_key(company, ref, 13)}/21/{_value(serial, 20)}"


def _sscc(body: str) -> str:
    company, ref = _fields(body, 2)
    return f"/00/{_indicator_key(company, ref, 17)}"


def _sgln(body: str) -> str:
    company, ref, extension = _fields(body, 3)
    gln = _with_check(_reference(company, ref, 12))
    return f"/414/{gln}" if extension == "0" else f"/414/{gln}/254/{_value(extension, 20)}"


def _grai(body: str) -> str:
    company, ref, serial = _fields(body, 3)
    return f"/8003/{_with_check('0' + _reference(company, ref, 12))}{_value(serial, 16)}"


def _giai(body: str) -> str:
    company, ref = _fields(body, 2)
    _reference(company, "", len(company))
    return f"/8004/{company}{_value(ref, 30 - len(company))}"


def _ginc(body: str) -> str:
    company, ref = _fields(body, 2)
    _reference(company, "", len(company))
    return f"/401/{company}{_value(ref, 30 - len(company))}"


def _gsrn(body: str) -> str:
    company, ref = _fields(body, 2)
    return f"/8018/{_with_check(_reference(company, ref, 17))}"


def _gsrnp(body: str) -> str:
    company, ref = _fields(body, 2)
    return f"/8017/{_with_check(_reference(company, ref, 17))}"


def _gsin(body: str) -> str:
    company, ref = _fields(body, 2)
    return f"/402/{_with_check(_reference(company, ref, 16))}"


def _pgln(body: str) -> str:
    company, ref = _fields(body, 2)
    return f"/417/{_with_check(_reference(company, ref, 12))}"


def _gdti(body: str) -> str:
    company, ref, serial = _fields(body, 3)
    return f"/253/{_with_check(_reference(company, ref, 12))}{_value(serial, 17)}"


def _sgcn(body: str) -> str:
    company, ref, serial = _fields(body, 3)
    return f"/255/{_with_check(_reference(company, ref, 12))}{_serial_digits(serial, 12)}"


def _cpi(body: str) -> str:
    company, ref, serial = _fields(body, 3)
    _reference(company, "", len(company))
    part = _value(company + ref, 30, CSET39, len(company) + 1)
    return f"/8010/{part}/8011/{_serial_digits(serial, 12)}"


def _itip(body: str) -> str:
    company, ref, piece, total, serial = _fields(body, 5)
    return f"{_itip_key(company, ref, piece, total)}/21/{_value(serial, 20)}"


def _itip_key(company: str, ref: str, piece: str, total: str) -> str:
    pieces = piece + total
    if not (len(piece) == len(total) == 2 and pieces.isascii() and pieces.isdigit()):
        raise _Bad("piece and total must be 2 digits each")
    return f"/8006/{_indicator_key(company, ref, 13)}{pieces}"


def _upui(body: str) -> str:
    company, ref, tpx = _fields(body, 3)
    return f"/01/{_indicator_key(company, ref, 13)}/235/{_value(tpx, 28)}"


def _lgtin(body: str) -> str:
    company, ref, lot = _fields(body, 3)
    return f"/01/{_indicator_key(company, ref, 13)}/10/{_value(lot, 20)}"


_ID_SCHEMES: dict[str, Callable[[str], str]] = {
    "sgtin": _sgtin,
    "sscc": _sscc,
    "sgln": _sgln,
    "grai": _grai,
    "giai": _giai,
    "gsrn": _gsrn,
    "gsrnp": _gsrnp,
    "gdti": _gdti,
    "sgcn": _sgcn,
    "cpi": _cpi,
    "ginc": _ginc,
    "gsin": _gsin,
    "itip": _itip,
    "upui": _upui,
    "pgln": _pgln,
}
_OTHER_ID_SCHEMES = frozenset({"gid", "usdod", "adi", "bic", "imovn"})


def _idpat(scheme: str, body: str) -> str | None:
    """The DL of an idpat URN whose only wildcard is its last field; None for other shapes."""
    fields = body.split(".")
    if fields[-1] != "*" or "*" in body[:-1]:
        return None
    head = fields[:-1]
    if scheme in ("sgtin", "upui") and len(head) == 2:
        return f"/01/{_indicator_key(head[0], head[1], 13)}"
    if scheme == "itip" and len(head) == 4:
        return _itip_key(*head)
    if scheme == "grai" and len(head) == 2:
        return f"/8003/{_with_check('0' + _reference(head[0], head[1], 12))}"
    if scheme in ("gdti", "sgcn") and len(head) == 2:
        ai = "253" if scheme == "gdti" else "255"
        return f"/{ai}/{_with_check(_reference(head[0], head[1], 12))}"
    if scheme == "cpi" and len(head) == 2:
        _reference(head[0], "", len(head[0]))
        return f"/8010/{_value(head[0] + head[1], 30, CSET39, len(head[0]) + 1)}"
    return None


# EPC Tag URI schemes (TDS 2.x §12: ``urn:epc:tag:{scheme}:{filter}.{the pure identity's
# fields}``, e.g. ``urn:epc:tag:sgtin-96:3.0614141.812345.6789``) -> the pure identity scheme.
# The filter value (0-7) tells RFID readers what kind of object carries the tag; the rest is the
# EPC itself, so a tag URI names what its pure identity URN names (a probe: a brand's unit
# named by its tag URI was kept as a foreign identifier, its sale stored past every rule).
_TAG_SCHEMES: dict[str, str] = {
    "sgtin-96": "sgtin",
    "sgtin-198": "sgtin",
    "sscc-96": "sscc",
    "sgln-96": "sgln",
    "sgln-195": "sgln",
    "grai-96": "grai",
    "grai-170": "grai",
    "giai-96": "giai",
    "giai-202": "giai",
    "gsrn-96": "gsrn",
    "gsrnp-96": "gsrnp",
    "gdti-96": "gdti",
    "gdti-113": "gdti",
    "gdti-174": "gdti",
    "sgcn-96": "sgcn",
    "cpi-96": "cpi",
    "cpi-var": "cpi",
    "itip-110": "itip",
    "itip-212": "itip",
}
_OTHER_TAG_SCHEMES = frozenset({"gid-96", "usdod-96", "adi-var"})  # non-GS1: kept as sent
_TAG = re.compile(r"urn:epc:(tag|pat):([a-z0-9+-]+):(.+)", re.DOTALL)
_FILTER = re.compile(r"[0-7]")
_PATTERN_FILTER = re.compile(r"[0-7]|\*|\[[0-7]-[0-7]\]")


def _from_tag(uri: str) -> str:
    """The canonical form of an EPC Tag URI, or of a tag pattern naming one tag (no ``*`` or
    range past its filter): its pure identity's, the filter value dropped. A pattern of many
    tags and a non-GS1 scheme's URI are kept as sent; an EPC Raw URI (``urn:epc:raw:``, the
    tag's bits) is refused: name the object by its EPC URN or Digital Link."""
    if uri.startswith("urn:epc:raw:"):
        raise _fail(uri, "an EPC raw URI (a tag's bits): name the object by its EPC URN")
    match = _TAG.fullmatch(uri)
    if match is None:
        raise _fail(uri, "malformed EPC tag URI")
    kind, scheme, body = match.groups()
    if scheme in _OTHER_TAG_SCHEMES:
        return uri
    pure = _TAG_SCHEMES.get(scheme)
    if pure is None:
        raise _fail(uri, f"unknown EPC tag scheme {scheme!r}")
    filter_value, _, fields = body.partition(".")
    if kind == "pat":
        if "*" in fields or "[" in fields:
            return uri
        valid = _PATTERN_FILTER.fullmatch(filter_value)
    else:
        valid = _FILTER.fullmatch(filter_value)
    if not valid or not fields:
        raise _fail(uri, "malformed EPC tag URI (a filter value 0-7, then the EPC's fields)")
    try:
        return CANONICAL_ORIGIN + _ID_SCHEMES[pure](fields)
    except (_Bad, Gs1Error) as error:
        raise _fail(uri, f"malformed EPC tag URI ({error})") from None


def _from_urn(uri: str, tags: bool = True) -> str:
    """The canonical form of a ``urn:epc:`` URN (see the module docstring); with ``tags``
    False, tag, pattern and raw URIs are kept as sent, as the event-hash reference keeps them."""
    match = _URN.fullmatch(uri)
    if match is None:
        if uri.startswith(("urn:epc:pat:", "urn:epc:tag:", "urn:epc:raw:")):
            return _from_tag(uri) if tags else uri
        raise _fail(uri, "not an EPC URN")
    kind, scheme, body = match.groups()
    try:
        if kind == "id":
            convert = _ID_SCHEMES.get(scheme)
            if convert is None:
                if scheme in _OTHER_ID_SCHEMES:
                    return uri
                raise _Bad(f"unknown EPC scheme {scheme!r}")
            return CANONICAL_ORIGIN + convert(body)
        if kind == "class":
            if scheme != "lgtin":
                raise _Bad(f"unknown EPC class scheme {scheme!r}")
            return CANONICAL_ORIGIN + _lgtin(body)
        path = _idpat(scheme, body)
        return uri if path is None else CANONICAL_ORIGIN + path
    except (_Bad, Gs1Error) as error:
        raise _fail(uri, f"malformed EPC URN ({error})") from None


# --- GS1 Digital Link ---------------------------------------------------------------------

_SHORT_NAMES = {
    "gtin": "01",
    "itip": "8006",
    "cpid": "8010",
    "gln": "414",
    "party": "417",
    "gsrnp": "8017",
    "gsrn": "8018",
    "gcn": "255",
    "sscc": "00",
    "gdti": "253",
    "ginc": "401",
    "gsin": "402",
    "grai": "8003",
    "giai": "8004",
    "cpv": "22",
    "lot": "10",
    "ser": "21",
    "glnx": "254",
}


_KeyCheck = Callable[[str, bool], str | None]


def _dl_digits(length: int) -> _KeyCheck:
    def check(value: str, verify: bool) -> str | None:
        return value if len(value) == length and _checked(value, verify) else None

    return check


def _dl_gtin(value: str, verify: bool) -> str | None:
    if len(value) not in (8, 12, 13, 14) or not _checked(value, verify):
        return None
    return value.zfill(14)


def _dl_itip(value: str, verify: bool) -> str | None:
    ok = len(value) == 18 and _checked(value, False) and _checked(value[:14], verify)
    return value if ok else None


def _dl_digits_then(key: int, charset: frozenset[str], high: int) -> _KeyCheck:
    """A check-digit key of ``key`` digits followed by 0..high characters (GDTI, GCN, GRAI)."""

    def check(value: str, verify: bool) -> str | None:
        rest = _decode(value[key:], charset, 0, high)
        if rest is None or len(value) < key or not _checked(value[:key], verify):
            return None
        return value[:key] + _encode(rest)

    return check


_dl_grai_key = _dl_digits_then(14, CSET82, 16)


def _dl_grai(value: str, verify: bool) -> str | None:
    return _dl_grai_key(value, verify) if value[:1] == "0" else None


def _dl_text(charset: frozenset[str], high: int) -> _KeyCheck:
    def check(value: str, _verify: bool) -> str | None:
        decoded = _decode(value, charset, 4, high)
        return None if decoded is None else _encode(decoded)

    return check


_DIGIT_SET = frozenset(_DIGITS)

# primary AI: (key check returning the canonical key text or None, qualifiers in DL order)
_DL_KEYS: dict[str, tuple[_KeyCheck, tuple[str, ...]]] = {
    "01": (_dl_gtin, ("22", "10", "21", "235")),
    "8006": (_dl_itip, ("22", "10", "21")),
    "00": (_dl_digits(18), ()),
    "414": (_dl_digits(13), ("254",)),
    "417": (_dl_digits(13), ()),
    "402": (_dl_digits(17), ()),
    "8017": (_dl_digits(18), ()),
    "8018": (_dl_digits(18), ("8019",)),
    "253": (_dl_digits_then(13, CSET82, 17), ()),
    "255": (_dl_digits_then(13, _DIGIT_SET, 12), ()),
    "8003": (_dl_grai, ()),
    "8004": (_dl_text(CSET82, 30), ()),
    "401": (_dl_text(CSET82, 30), ()),
    "8010": (_dl_text(CSET39, 30), ("8011",)),
}
# qualifier AI: (character set, maximum length)
_DL_QUALIFIERS: dict[str, tuple[frozenset[str], int]] = {
    "22": (CSET82, 20),
    "10": (CSET82, 20),
    "21": (CSET82, 20),
    "235": (CSET82, 28),
    "254": (CSET82, 20),
    "8011": (_DIGIT_SET, 12),
    "8019": (_DIGIT_SET, 10),
}
# the finest level kept per primary key: the first qualifier present of these, else none
_DL_KEEP: dict[str, tuple[str, ...]] = {
    "01": ("21", "235", "10"),
    "8006": ("21", "10"),
    "414": ("254",),
    "8010": ("8011",),
    "8018": ("8019",),
}


def _primary(segments: list[str]) -> int:
    """Index of the segment holding the primary key's AI, or -1 if the path is not key-shaped."""
    for i in range(len(segments) - 1):
        ai = _SHORT_NAMES.get(segments[i], segments[i])
        if ai in _DL_KEYS and _KEY_SHAPED.match(segments[i + 1]):
            return i
    return -1


def _qualifiers(key_ai: str, pairs: list[str]) -> dict[str, str]:
    """Decoded qualifier values after the key, checked for AI, order, character set, length."""
    allowed = _DL_KEYS[key_ai][1]
    found: dict[str, str] = {}
    position = -1
    for i in range(0, len(pairs), 2):
        ai = _SHORT_NAMES.get(pairs[i], pairs[i])
        if ai not in allowed or allowed.index(ai) <= position:
            raise _Bad(f"qualifier {pairs[i]!r} not allowed here after /{key_ai}/")
        position = allowed.index(ai)
        charset, high = _DL_QUALIFIERS[ai]
        value = (
            _decode(pairs[i + 1], charset, 1, high)
            if _PATH_SEGMENT.fullmatch(pairs[i + 1])
            else None
        )
        if value is None:
            raise _Bad(f"bad value for AI {ai}")
        found[ai] = value
    return found


def _from_digital_link(uri: str, path: str, verify: bool) -> str:
    """The canonical form of an http(s) URI: its constrained DL if its path is key-shaped."""
    segments = path.split("/")[1:]
    if segments and not segments[-1]:
        segments.pop()
    start = _primary(segments)
    if start < 0:
        return uri
    key_ai = _SHORT_NAMES.get(segments[start], segments[start])
    rest = segments[start + 2 :]
    try:
        if len(rest) % 2:
            raise _Bad("the path after the key is not AI/value pairs")
        raw_key = segments[start + 1]
        key = _DL_KEYS[key_ai][0](raw_key, verify) if _PATH_SEGMENT.fullmatch(raw_key) else None
        if key is None:
            raise _Bad(f"invalid key for AI {key_ai} (digits, length or check digit)")
        found = _qualifiers(key_ai, rest)
    except _Bad as error:
        raise _fail(uri, f"invalid GS1 Digital Link ({error})") from None
    canonical_uri = f"{CANONICAL_ORIGIN}/{key_ai}/{key}"
    for ai in _DL_KEEP.get(key_ai, ()):
        if ai in found:
            return f"{canonical_uri}/{ai}/{_encode(found[ai])}"
    return canonical_uri


# --- public -------------------------------------------------------------------------------


_FAST_SGTIN_URN = re.compile(
    r"urn:epc:id:sgtin:([0-9]{6,12})\.([0-9]{1,7})\.([A-Za-z0-9'\-.;=_]{1,20})"
)
_FAST_SSCC_URN = re.compile(r"urn:epc:id:sscc:([0-9]{6,12})\.([0-9]{5,11})")
_FAST_DL = re.compile(
    r"https?://[^/?#\s]+/(?:01/([0-9]{14})/21/([A-Za-z0-9'\-.;=_]{1,20})|00/([0-9]{18}))/?"
    r"(?:\?[^#\s]*)?"
)


# SGTIN URN heads ("urn:epc:id:sgtin:{company}.{ref}") seen -> the Digital Link up to the serial
# ("https://id.gs1.org/01/{gtin}/21/"): the units of one product share it, so most EPCs take a
# dict lookup and a serial check instead of the regex and the check digit.
_SGTIN_HEADS: dict[str, str] = {}
_SGTIN_SERIAL = re.compile(r"[A-Za-z0-9'\-;=_]{1,20}")  # a serial without a dot
_SGTIN_URN = "urn:epc:id:sgtin:"


def _fast(uri: str, verify: bool) -> str | None:
    """The canonical SGTIN or SSCC of the plain, common forms in one regex each; else None."""
    if uri.startswith(_SGTIN_URN):
        head, _, serial = uri.rpartition(".")
        link = _SGTIN_HEADS.get(head)
        # a known head ends in digits, so its split is the regex's, whose serial may not
        # hold a dot here
        if link is not None and _SGTIN_SERIAL.fullmatch(serial):
            return link + serial
    if match := _FAST_SGTIN_URN.fullmatch(uri):
        company, ref, serial = match.groups()
        if len(company) + len(ref) == 13:
            data = ref[0] + company + ref[1:]
            link = f"{CANONICAL_ORIGIN}/01/{data}{gs1_check_digit(data)}/21/"
            if len(_SGTIN_HEADS) < 4096:
                _SGTIN_HEADS[f"{_SGTIN_URN}{company}.{ref}"] = link
            return link + serial
    elif match := _FAST_SSCC_URN.fullmatch(uri):
        company, ref = match.groups()
        if len(company) + len(ref) == 17:
            data = ref[0] + company + ref[1:]
            return f"{CANONICAL_ORIGIN}/00/{data}{gs1_check_digit(data)}"
    elif match := _FAST_DL.fullmatch(uri):
        gtin, serial, sscc_ = match.groups()
        if gtin is not None and _checked(gtin, verify):
            return f"{CANONICAL_ORIGIN}/01/{gtin}/21/{serial}"
        if sscc_ is not None and _checked(sscc_, verify):
            return f"{CANONICAL_ORIGIN}/00/{sscc_}"
    return None


def known_sgtins(uris: Sequence[object]) -> list[str] | None:
    """The canonical forms of a list of SGTIN URNs whose heads ``canonical`` has converted
    before (the units of the products seen so far: an EPC list is mostly that), in one pass;
    None as soon as one is anything else, for the caller to take them one by one."""
    heads = _SGTIN_HEADS
    serial_ok = _SGTIN_SERIAL.fullmatch
    found = []
    for uri in uris:
        if type(uri) is not str or not uri.startswith(_SGTIN_URN):
            return None
        head, _, serial = uri.rpartition(".")
        link = heads.get(head)
        if link is None or not serial_ok(serial):
            return None
        found.append(link + serial)
    return found


_URN_HEAD = re.compile(r"urn:epc:", re.IGNORECASE)
_HTTP_HEAD = re.compile(r"https?://[^/?#]*", re.IGNORECASE)


def _folded(uri: str) -> str:
    """``uri`` with the parts that are case-insensitive in lower case: a URN's ``urn:`` and its
    namespace ``epc:`` (RFC 8141; the rest of an EPC URN is case-sensitive, so ``ID:SGTIN`` is
    then refused as malformed), an HTTP URI's scheme and host (RFC 3986). Probe Q:
    ``URN:EPC:…`` and ``HTTPS://…`` were stored as foreign URIs, so events naming the brand's
    units in those spellings escaped the line's rules and were never applied."""
    head = _URN_HEAD.match(uri) or _HTTP_HEAD.match(uri)
    if head is None:
        return uri
    return head.group().lower() + uri[head.end() :]


def event_key(event_id: str) -> str:
    """The stored form of an eventID: a ``urn:uuid:`` one in lower case (a UUID and the URN's
    prefix are case-insensitive: a document sent again with its UUIDs in capitals repeats the
    same events, probe Q), any other as sent."""
    return event_id.lower() if event_id[:9].lower() == "urn:uuid:" else event_id


def canonical(uri: str, check_digits: bool = True, fold: bool = True, tags: bool = True) -> str:
    """The canonical form of an EPCIS identifier (see the module docstring).

    EPC URNs and GS1-key-shaped Digital Link URIs become ``https://id.gs1.org/…``; any other
    URI is returned unchanged but for the case of its case-insensitive parts (``_folded``).
    Raises ``IdentifierError`` for a malformed ``urn:epc:`` URN or an invalid GS1-key-shaped
    Digital Link URI. ``check_digits=False`` accepts a Digital Link whose key has a wrong check
    digit, and ``fold=False`` reads ``urn:epc:`` and ``http(s)://`` in lower case only, as the
    event-hash reference does (a URN's check digit is always computed, never read), and
    ``tags=False`` keeps EPC tag, pattern and raw URIs as sent, as that reference does too.
    """
    fast = _fast(uri, check_digits)
    if fast is not None:
        return fast
    return _slow(_folded(uri) if fold else uri, check_digits, tags)


@lru_cache(maxsize=8192)
def _slow(uri: str, check_digits: bool, tags: bool = True) -> str:
    """``canonical`` of every other form; cached, for the locations and classes that repeat."""
    if uri.startswith("urn:epc:"):
        return _from_urn(uri, tags)
    if uri.startswith(("https://", "http://")):
        match = _HTTP.fullmatch(uri)
        if match is not None and match.group(1):
            return _from_digital_link(uri, match.group(1), check_digits)
    return uri


def place_key(uri: str | None) -> str | None:
    """The stored and compared form of a readPoint or bizLocation id: canonical when it is a
    GS1 key (``urn:epc:id:sgln:0614141.00777.0`` and ``https://id.gs1.org/414/0614141007776``
    are one place — a probe: EQ_readPoint in the other spelling found nothing), else as sent."""
    if uri is None:
        return None
    try:
        return canonical(uri)
    except IdentifierError:
        return uri


# What follows a class pattern's canonical form in each identifier of the class: the serial's
# qualifier, or nothing where the serial is appended to the key (GRAI, GDTI, SGCN).
_PATTERN_TAILS = {
    "sgtin": "/21/",
    "itip": "/21/",
    "upui": "/235/",
    "cpi": "/8011/",
    "grai": "",
    "gdti": "",
    "sgcn": "",
}


def class_prefix(pattern: str) -> str:
    """The canonical prefix of every identifier of an EPC class pattern:
    ``urn:epc:idpat:sgtin:0614141.107346.*`` → ``https://id.gs1.org/01/10614141073467/21/``.
    Raises ``IdentifierError`` for a malformed pattern and for the shapes not served: a
    wildcard before the last field (``urn:epc:idpat:sgtin:0614141.*.*``), and schemes whose
    keys have no class (SSCC, SGLN, …) — a probe: they answered no events instead of an
    error."""
    match = _URN.fullmatch(_folded(pattern))
    if match is None or match.group(1) != "idpat":
        raise _fail(pattern, "not an EPC class pattern (urn:epc:idpat:…)")
    path = canonical(pattern)
    tail = _PATTERN_TAILS.get(match.group(2))
    if tail is None or not path.startswith(CANONICAL_ORIGIN):
        raise _fail(
            pattern,
            "only the patterns of one item or asset type, every serial (the last field *), "
            f"of {', '.join(sorted(_PATTERN_TAILS))}",
        )
    return path + tail


def gtin_serial(canonical_uri: str) -> tuple[str, str] | None:
    """(GTIN-14, decoded serial) of an SGTIN's canonical Digital Link URI, else None."""
    match = _CANONICAL_SGTIN.fullmatch(canonical_uri)
    if match is None:
        return None
    serial = match.group(2)
    if "%" in serial:
        serial = _PCT.sub(lambda m: chr(int(m.group(1), 16)), serial)
    return match.group(1), serial


def sscc(canonical_uri: str) -> str | None:
    """The 18-digit SSCC of a canonical SSCC Digital Link URI, else None."""
    match = _CANONICAL_SSCC.fullmatch(canonical_uri)
    return None if match is None else match.group(1)
