"""Sealed tokens: small values handed to a caller and taken back (a paging cursor), sealed so the
caller reads nothing of them and cannot forge, alter or carry one elsewhere. One helper for every
such token: the ERP export's cursor (``app.erp.export``) and the EPCIS query's
``nextPageToken`` (``app.epcis.query``).

A token is base64url (unpadded) of a format byte, a fresh 12-byte nonce, the value sealed with
AES-256-GCM under ``Settings.subkey(purpose)`` (its own key per purpose, derived from the master
key) and the 16-byte tag. The associated data is what the token is bound to (a brand's id, as
decimal ASCII): the token opens for it alone. The format byte is not sealed: it says how the
value is laid out, and a token of another format or purpose does not open.
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


def _cipher(settings: Settings, purpose: str, bound: str, nonce: bytes) -> Any:
    cipher = AES.new(settings.subkey(purpose), AES.MODE_GCM, nonce=nonce)
    cipher.update(bound.encode())
    return cipher


def seal(settings: Settings, purpose: str, bound: str, version: bytes, value: bytes) -> str:
    """``value`` sealed under ``purpose``'s key, bound to ``bound``, behind the format byte
    ``version``: URL-safe text (``[A-Za-z0-9_-]``), ``OVERHEAD`` bytes more than the value."""
    nonce = secrets.token_bytes(NONCE)
    sealed, tag = _cipher(settings, purpose, bound, nonce).encrypt_and_digest(value)
    return base64.urlsafe_b64encode(version + nonce + sealed + tag).decode().rstrip("=")


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
    cipher = _cipher(settings, purpose, bound, raw[1 : 1 + NONCE])
    try:
        return bytes(cipher.decrypt_and_verify(raw[1 + NONCE : -TAG], raw[-TAG:]))
    except ValueError:
        return None
