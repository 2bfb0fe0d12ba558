"""Ed25519 (RFC 8032) signing keys derived from the master key: one helper for every purpose.

A purpose's 32-byte private seed is ``Settings.subkey(purpose)`` — HKDF-SHA256 of the master key
with the context ``tracecode/<purpose>`` — so no signing key is ever stored (not in the database,
not in a file, not in a log), every process derives the same one, and knowing one purpose's key
tells nothing of the master key or of another purpose's. The purposes, and the key ids they
publish (each format is fixed: packs and anchors handed out name their key by it):

* ``evidence-signing/ed25519/v1`` — evidence packs (``app.triage.signing``); key id ``tcev-`` +
  the first 16 hex digits of SHA-256 of the 32 public key bytes;
* ``event-chain-anchor`` — the event chain's anchors (``app.chain.anchors``); key id the first
  16 hex digits alone (``app.events.chainverify.key_id``).

Only signing lives here: the verifiers (``app/events/chainverify.py``,
``app/triage/verify_pack.py``) stay standalone files an auditor runs without Tracecode.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from app.config import Settings


class Ed25519Key:
    """The key pair of one seed: sign with it, publish its public half."""

    def __init__(self, seed: bytes) -> None:
        from Crypto.PublicKey import ECC

        self._private: Any = ECC.construct(curve="Ed25519", seed=seed)
        public = self._private.public_key()
        self.public_raw: bytes = bytes(public.export_key(format="raw"))
        self.public_pem: str = public.export_key(format="PEM")

    def __repr__(self) -> str:  # never print the private key
        return f"Ed25519Key({self.key_id()})"

    def key_id(self, prefix: str = "") -> str:
        """``prefix`` + the first 16 hex digits of SHA-256 of the 32 public key bytes."""
        return prefix + hashlib.sha256(self.public_raw).hexdigest()[:16]

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (pure Ed25519: no pre-hash, no
        context)."""
        from Crypto.Signature import eddsa

        return bytes(eddsa.new(self._private, "rfc8032").sign(message))


def ed25519_key(settings: Settings, purpose: str) -> Ed25519Key:
    """The installation's Ed25519 key of ``purpose`` (derived once per process and seed)."""
    return key_of_seed(settings.subkey(purpose))


@lru_cache(maxsize=8)
def key_of_seed(seed: bytes) -> Ed25519Key:
    """The key pair of a 32-byte seed, built once per process."""
    return Ed25519Key(seed)
