#!/usr/bin/env python3
"""Verify a Tracecode evidence pack offline: the pack file and the brand platform's public key,
nothing else — no network, no database, no Tracecode installation.

    python3 verify_pack.py evidence-alert-42.json tracecode-evidence-key.pem

Exit status 0 and ``VALID …`` when the pack is intact and signed by that key; 1 and
``INVALID: <why>`` otherwise (a pack file that is no UTF-8 JSON too); 2 and one line on stderr
for a usage error — a file that cannot be read (a missing one) or a key file that holds no
Ed25519 public key in the forms of step 3 (a DER key, an RSA key; a PEM saved with a UTF-8 BOM
is read): the command was given the wrong key file, which says nothing of the pack. What it
prints of a pack (or of a file name) has its non-printing characters escaped as ``repr`` escapes
them (``\\r``, ``\\x1b``): a forged pack's text cannot redraw the terminal's line as ``VALID``. This
file depends on the Python standard library only (3.9 or later); with pycryptodome installed it
checks the signature with it, else (or with ``--pure``) with the RFC 8032 section 6 reference
algorithm written out below.

The algorithm, for reimplementing it elsewhere (OpenSSL, PyNaCl, libsodium, Go, Java):

1. The pack is a JSON object, UTF-8, exactly as RFC 8785 (JCS) writes it: read the file's bytes,
   parse them (refusing duplicate member names), write the parsed value again with JCS, and
   require the result to equal the file byte for byte. Any other spelling of the same document
   (reordered members, added whitespace, ``1.0`` for ``1``, a ``\\u00e9`` escape) is refused:
   one document has one accepted byte string. A file nested too deep to parse (thousands of
   arrays) is refused too.
2. Take the member ``signature`` out: exactly ``{"alg": "Ed25519", "key_id": …, "value": …}``
   (no other member: it is not signed, so text added there would ride along with a valid pack).
   ``alg`` must be ``Ed25519``; ``key_id`` must equal the document's own ``key_id`` member.
3. The public key: 32 bytes (RFC 8032), given as a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo:
   the 12 bytes ``30 2a 30 05 06 03 2b 65 70 03 21 00`` then the key) or as base64url (its 43
   characters spelled canonically, as ``value`` in step 4). Its key id is ``tcev-`` + the first
   16 hex digits of SHA-256(the 32 key bytes); it must equal ``key_id`` (a pack signed by another
   key is refused before any signature check).
4. The signed message is the JCS bytes of the document without its ``signature`` member
   (``format``, ``key_id`` and everything else stay in). ``value`` is the 64-byte Ed25519
   signature (pure Ed25519, RFC 8032, no pre-hash, no context) in base64url without padding,
   spelled canonically: exactly 86 characters of ``A-Z a-z 0-9 - _``, the ones the bytes encode to
   (no ``=``, no ``+`` or ``/``, no other character, unused low bits zero) — another spelling of
   the same 64 bytes is another file, and is refused.
   With OpenSSL 3: write the message to msg.bin and the decoded signature to sig.bin, then
   ``openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in msg.bin -sigfile sig.bin``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sys
from typing import Any

FORMAT = "tracecode-evidence-pack/1"
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # SubjectPublicKeyInfo of an Ed25519 key


class Invalid(Exception):
    """The pack is not intact, not canonical, or not signed by the key."""


# --- RFC 8785 (JCS), as app/triage/canonical.py writes it ---------------------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def jcs(value: Any) -> bytes:
    """The RFC 8785 canonical bytes of a parsed JSON value."""
    out: list[str] = []
    _jcs(value, out)
    return "".join(out).encode("utf-8")


def _jcs(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append({None: "null", True: "true", False: "false"}[value])
    elif isinstance(value, str):
        out.append(_jcs_string(value))
    elif isinstance(value, int):
        if abs(value) > 2**53 - 1 and not _whole_double(value):
            raise Invalid("an integer beyond 2^53 is not canonical")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_jcs_number(value))
    elif isinstance(value, dict):
        members = sorted(value, key=lambda name: name.encode("utf-16-be"))
        out.append("{")
        for i, name in enumerate(members):
            out.append(("," if i else "") + _jcs_string(name) + ":")
            _jcs(value[name], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _jcs(item, out)
        out.append("]")
    else:
        raise Invalid(f"{type(value).__name__} is no JSON value")


def _whole_double(value: int) -> bool:
    """Whether digits beyond 2^53 are how RFC 8785 writes a double (``1e16`` is written
    ``10000000000000000``; the signer writes such a float so)."""
    try:
        return _jcs_number(float(value)) == str(value)
    except (OverflowError, Invalid):
        return False


def _jcs_string(text: str) -> str:
    parts = ['"']
    for char in text:
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif ord(char) < 0x20:
            parts.append(f"\\u{ord(char):04x}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise Invalid("a lone surrogate is not canonical")
        else:
            parts.append(char)
    return "".join(parts) + '"'


def _jcs_number(value: float) -> str:
    if not math.isfinite(value):
        raise Invalid("NaN and the infinities are no JSON numbers")
    if value == 0:
        return "0"
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    raw = whole + frac
    digits = raw.lstrip("0")
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
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + f"e{'+' if n > 0 else '-'}"
        text += str(abs(n - 1))
    return ("-" if value < 0 else "") + text


# --- Ed25519 verification, RFC 8032 section 6 (the reference code) -------------------------------

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_Q = 2**252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    e1 = (a[1] - a[0]) * (b[1] - b[0]) % _P
    e2 = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c = 2 * a[3] * b[3] * _D % _P
    d = 2 * a[2] * b[2] % _P
    e, f, g, h = e2 - e1, d - c, d + c, e2 + e1
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, point: tuple[int, ...]) -> tuple[int, ...]:
    result: tuple[int, ...] = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            result = _add(result, point)
        point = _add(point, point)
        s >>= 1
    return result


def _equal(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _decompress(data: bytes) -> tuple[int, ...] | None:
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
assert _GX is not None
_G = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify_pure(public: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 section 6's ``verify``: plain integers, no dependency (slow, ~50 ms; fine here)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _Q
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


def ed25519_verify(public: bytes, message: bytes, signature: bytes, pure: bool = False) -> bool:
    """With pycryptodome when it is installed (and not ``pure``), else the reference algorithm."""
    if not pure:
        try:
            from Crypto.PublicKey import ECC
            from Crypto.Signature import eddsa
        except ImportError:
            pure = True
    if pure:
        return ed25519_verify_pure(public, message, signature)
    try:
        key = ECC.import_key(SPKI_PREFIX + public)
        eddsa.new(key, "rfc8032").verify(message, signature)
    except ValueError:
        return False
    return True


# --- the pack -------------------------------------------------------------------------------------


def public_key_bytes(text: str) -> bytes:
    """The 32 key bytes of a PEM ``PUBLIC KEY`` (Ed25519 SubjectPublicKeyInfo) or a base64url
    string of them."""
    text = text.strip()
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        lines = (line for line in text.splitlines() if not line.startswith("-----"))
        body = "".join("".join(lines).split())  # blanks in a line (a copied key) are no base64
        try:
            der = base64.b64decode(body, validate=True)
        except ValueError:  # binascii.Error: not base64
            raise Invalid("the PEM is not base64") from None
        if len(der) != 44 or not der.startswith(SPKI_PREFIX):
            raise Invalid("the PEM is not an Ed25519 public key")
        return der[12:]
    return _b64url(text, 32)


def key_id(public: bytes) -> str:
    return "tcev-" + hashlib.sha256(public).hexdigest()[:16]


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url(text: str, size: int) -> bytes:
    """The ``size`` bytes of their one canonical base64url spelling (unpadded, URL alphabet, the
    unused low bits zero): any other spelling of them is refused."""
    if not _B64URL.fullmatch(text):
        raise Invalid("not base64url (unpadded, A-Z a-z 0-9 - _)")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise Invalid("not base64url") from None
    if len(raw) != size or base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise Invalid(f"not the canonical base64url of {size} bytes")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise Invalid("a member name appears twice in one object")
    return dict(pairs)


def _parse(pack: bytes) -> dict[str, Any]:
    """The canonical JSON object of the file's bytes (``Invalid`` for anything else)."""
    try:
        document = json.loads(pack.decode("utf-8"), object_pairs_hook=_no_duplicates)
        canonical = isinstance(document, dict) and jcs(document) == pack
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, Invalid):
            raise
        raise Invalid(f"not UTF-8 JSON: {exc}") from None
    except RecursionError:  # a hostile file of nested arrays: an answer, not a traceback
        raise Invalid("nested too deep to be an evidence pack") from None
    if not isinstance(document, dict):
        raise Invalid("not a JSON object")
    if not canonical:
        raise Invalid("not in canonical form (RFC 8785): the file was re-encoded or altered")
    return document


def verify(pack: bytes, public_key: str, pure: bool = False) -> dict[str, Any]:
    """The verified document (without its signature), or ``Invalid`` saying why not."""
    document = _parse(pack)
    if document.get("format") != FORMAT:
        raise Invalid(f"not a {FORMAT} document")
    signature = document.pop("signature", None)
    if not isinstance(signature, dict) or signature.get("alg") != "Ed25519":
        raise Invalid("no Ed25519 signature")
    if set(signature) != {"alg", "key_id", "value"}:
        raise Invalid("the signature is not exactly {alg, key_id, value}")
    if signature.get("key_id") != document.get("key_id"):
        raise Invalid("the signature names another key than the document")
    public = public_key_bytes(public_key)
    if key_id(public) != document.get("key_id"):
        raise Invalid(f"signed by key {document.get('key_id')}, not by {key_id(public)}")
    value = signature["value"]
    if not isinstance(value, str):
        raise Invalid("the signature value is not a string")
    raw = _b64url(value, 64)
    if not ed25519_verify(public, jcs(document), raw, pure):
        raise Invalid("the signature does not match the document")
    return document


def shown(value: Any) -> str:
    """``value`` as the command prints it: text as it is, other values as ``repr`` writes them,
    and every character that does not print (control characters, ANSI escapes, line breaks,
    bidirectional overrides) escaped as ``repr`` escapes it (``\\r``, ``\\x1b``, ``\\u202e``). A
    pack's fields are the pack maker's text: a forged ``key_id`` of ``"\\r\\x1b[2KVALID: …"``
    printed raw in its ``INVALID`` line redrew the terminal's line as ``VALID`` (a probe)."""
    text = value if isinstance(value, str) else repr(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str]) -> int:
    """The command: exit 0 and ``VALID …``; 1 and ``INVALID: <why>`` for a pack that does not
    verify under the key; 2 and a line on stderr for a usage error (a file that cannot be read:
    missing, a folder, no permission; a key file that holds no Ed25519 public key: a DER key, an
    RSA key, the pack given twice — a review: an intact pack was INVALID for its key file)."""
    args = [a for a in argv if a != "--pure"]
    if len(args) != 2:
        sys.stderr.write("usage: verify_pack.py [--pure] PACK.json PUBLIC_KEY.pem\n")
        return 2
    files: list[bytes] = []
    for path in args:
        try:
            with open(path, "rb") as file:
                files.append(file.read())
        except OSError as exc:  # the command is wrong, not the pack
            why = shown(exc.strerror or str(exc))
            sys.stderr.write(f"verify_pack.py: cannot read {shown(path)}: {why}\n")
            return 2
    try:  # a BOM (a PEM saved by Notepad as UTF-8) is no part of the key
        key = files[1].decode("utf-8-sig")
        public_key_bytes(key)
    except (UnicodeDecodeError, Invalid) as exc:  # the wrong key file, not a pack that failed
        why = "no text (a DER key?)" if isinstance(exc, UnicodeDecodeError) else str(exc)
        sys.stderr.write(
            f"verify_pack.py: {shown(args[1])} is no Ed25519 public key: {shown(why)}: give "
            "the PEM or base64url key\n"
        )
        return 2
    try:
        document = verify(files[0], key, pure="--pure" in argv)
    except Invalid as exc:
        print(f"INVALID: {shown(str(exc))}")
        return 1
    subject = document.get("subject", {})
    print(
        f"VALID: pack {shown(document.get('pack_id'))} of {shown(subject)}, generated "
        f"{shown(document.get('generated_at'))}, signed by {shown(document['key_id'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
