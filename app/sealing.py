"""Sealing with AES-256-GCM under ``Settings.subkey(purpose)`` (its own key per purpose, derived
from the master key): the one way every sealed value is made — secrets stored sealed (a
webhook's signing secret, a WeChat app secret, a redemption code), the H5 pages' cookies and
tickets, and paging tokens (the ERP export's cursor, ``app.erp.export``; the EPCIS query's
``nextPageToken``, ``app.epcis.query``).

``encrypt`` gives a fresh 12-byte nonce, the ciphertext and the 16-byte tag; ``decrypt`` takes
them back (``ValueError`` when they are not what ``encrypt`` made under that purpose, binding and
master key). The binding is the associated data: what a value is bound to (a brand's id as
decimal ASCII for a token; nothing for the others), which must be given again to open it.

A token (``seal``, ``unseal``) is base64url (unpadded) of a format byte and ``encrypt``'s bytes.
The format byte is not sealed: it says how the value is laid out, and a token of another format
or purpose does not open.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from Crypto.Cipher import AES

from app.config import Settings

NONCE, TAG = 12, 16
OVERHEAD = 1 + NONCE + TAG  # bytes a sealed token adds to its value


def _cipher(settings: Settings, purpose: str, bound: bytes, nonce: bytes) -> Any:
    cipher = AES.new(settings.subkey(purpose), AES.MODE_GCM, nonce=nonce)
    cipher.update(bound)
    return cipher


def encrypt(settings: Settings, purpose: str, value: bytes, bound: bytes = b"") -> bytes:
    """``value`` sealed under ``purpose``'s key, bound to ``bound``: nonce + ciphertext + tag."""
    nonce = secrets.token_bytes(NONCE)
    sealed, tag = _cipher(settings, purpose, bound, nonce).encrypt_and_digest(value)
    return nonce + sealed + tag


def decrypt(settings: Settings, purpose: str, blob: bytes, bound: bytes = b"") -> bytes:
    """The value ``encrypt`` sealed in ``blob``; ``ValueError`` when it is not one (cut,
    altered, sealed for another purpose, binding or master key)."""
    if len(blob) < NONCE + TAG:
        raise ValueError("too short to be sealed")
    cipher = _cipher(settings, purpose, bound, blob[:NONCE])
    return bytes(cipher.decrypt_and_verify(blob[NONCE:-TAG], blob[-TAG:]))


def seal(settings: Settings, purpose: str, bound: str, version: bytes, value: bytes) -> str:
    """``value`` sealed under ``purpose``'s key, bound to ``bound``, behind the format byte
    ``version``: URL-safe text (``[A-Za-z0-9_-]``), ``OVERHEAD`` bytes more than the value."""
    blob = version + encrypt(settings, purpose, value, bound.encode())
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def token_bytes(text: str) -> bytes:
    """The bytes of a token's text (base64url, padded or not; ``+``/``/`` read as ``-``/``_``);
    empty when it is no base64 at all."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return b""


def unseal(
    settings: Settings, purpose: str, bound: str, version: bytes, raw: bytes
) -> bytes | None:
    """The value ``seal`` sealed in ``raw`` (``token_bytes`` of a token); None when it is not
    one (another format byte, cut, altered, sealed for another purpose, binding or master
    key)."""
    if len(raw) < OVERHEAD or raw[:1] != version:
        return None
    try:
        return decrypt(settings, purpose, raw[1:], bound.encode())
    except ValueError:
        return None
