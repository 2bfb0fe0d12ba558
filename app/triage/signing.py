"""The evidence packs' signing key: Ed25519 (RFC 8032), derived from the master key.

The 32-byte private seed is ``Settings.subkey("evidence-signing/ed25519/v1")`` — HKDF-SHA256 of
the master key, derived by ``app.signing`` as every Ed25519 key of the house is — so the key is
never stored (not in the database, not in a file, not in a log) and every API process derives
the same one. Knowing it tells nothing of the master key or of any
other purpose's key. Its public half is published at ``GET /.well-known/tracecode-evidence-key``;
its key id is ``tcev-`` + the first 16 hex digits of SHA-256 of the 32 public key bytes, so a
verifier recognises a pack of another key (another installation, a changed master key) at once.

``sign`` signs the RFC 8785 bytes of a document without its ``signature`` member and returns
the document with it; ``app/triage/verify_pack.py`` (standalone) checks it.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

from app.config import Settings
from app.signing import Ed25519Key, ed25519_key, key_of_seed
from app.triage.canonical import canonical

PURPOSE = "evidence-signing/ed25519/v1"
FORMAT = "tracecode-evidence-pack/1"
ALG = "Ed25519"
KEY_ID_PREFIX = "tcev-"  # published with every pack: never change it


class EvidenceKey:
    """The key pair of one master key: sign with it, publish its public half."""

    def __init__(self, key: bytes | Ed25519Key) -> None:
        self._key = key if isinstance(key, Ed25519Key) else key_of_seed(key)
        self.public_raw: bytes = self._key.public_raw
        self.public_pem: str = self._key.public_pem
        self.key_id = self._key.key_id(KEY_ID_PREFIX)

    def __repr__(self) -> str:  # never print the private key
        return f"EvidenceKey({self.key_id})"

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` (holding ``key_id`` = this key's) with its ``signature`` member."""
        unsigned = {k: v for k, v in document.items() if k != "signature"}
        value = self._key.sign(canonical(unsigned))
        signature = {"alg": ALG, "key_id": self.key_id, "value": b64url(value)}
        return {**unsigned, "signature": signature}

    def published(self) -> dict[str, Any]:
        """What ``GET /.well-known/tracecode-evidence-key`` answers."""
        x = b64url(self.public_raw)
        return {
            "key_id": self.key_id,
            "algorithm": ALG,
            "format": FORMAT,
            "canonicalization": "RFC 8785 (JCS)",
            "public_key_pem": self.public_pem,
            "public_key": x,
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.key_id, "use": "sig",
                    "alg": "EdDSA"},
        }  # fmt: skip


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def evidence_key(settings: Settings) -> EvidenceKey:
    """The installation's evidence key (derived once per process and master key)."""
    return _evidence(ed25519_key(settings, PURPOSE))


@lru_cache(maxsize=4)
def _evidence(key: Ed25519Key) -> EvidenceKey:
    return EvidenceKey(key)
