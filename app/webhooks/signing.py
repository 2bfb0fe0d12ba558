"""Webhook signatures, as the Standard Webhooks specification defines them.

Every request carries three headers:

* ``webhook-id``: the message id (``msg_…``), the same for every attempt and every replay of
  one event to one endpoint — the receiver's idempotency key;
* ``webhook-timestamp``: the attempt's time, in whole seconds since the Unix epoch;
* ``webhook-signature``: ``v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, where
  ``key`` is the base64-decoded part of the secret after ``whsec_``. While a rotated-out secret
  is still in its overlap window, its signature follows the new one, separated by a space
  (``v1,<new> v1,<old>``; several rotated out, each until its own end: newest first); a
  receiver accepts the request when any one of them verifies.

Secrets are ``whsec_`` + base64 of 24 random bytes. They are stored sealed (AES-256-GCM under a
key derived from the master key, ``Settings.subkey("webhook-secret")``), shown once when made
(creation, rotation), and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from app import sealing
from app.config import Settings

PREFIX = "whsec_"
_SEAL = "webhook-secret"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64 part, decoded)."""
    return base64.b64decode(secret.removeprefix(PREFIX), validate=True)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key_of(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def seal(settings: Settings, secret: str, purpose: str = _SEAL) -> bytes:
    """The secret encrypted for storage (nonce + ciphertext + tag, ``app.sealing.encrypt``):
    a webhook's by default; another domain's stored secret (a brand's WeChat app secret,
    ``app.wechat.account``) under its own purpose."""
    return sealing.encrypt(settings, purpose, secret.encode())


def unseal(settings: Settings, blob: bytes, purpose: str = _SEAL) -> str:
    """The stored secret (``ValueError`` when the blob was not sealed with this master key and
    ``purpose``)."""
    return sealing.decrypt(settings, purpose, blob).decode()
