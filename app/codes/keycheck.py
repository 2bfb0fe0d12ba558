"""Which master key the database's codes were made under, checked before anything serves.

Every printed code's tag, every PIN, every printer file's key and every sealed secret depends on
the master key (README "Security"). A host restarted with another key — a secret store serving a
new value, another environment's env file, a worker host given the ``var/master.key`` that
``tracecode run`` made there — started without a word, and every code on the shelves answered
``not_genuine`` to consumers (a probe). The database now keeps a check value of its key
(migration 0101, one row): HMAC-SHA256 of a fixed label under the key's subkey
``master-key-check`` (``Settings.subkey``, HKDF), which tells nothing of the key or of any other
subkey. The first process to serve a database records its own; every process that serves
compares before it does — the API (its lifespan, and granian's factory for a one-line exit),
each worker process as it boots, ``tracecode run`` and the CLI commands that make codes or
exports (``app.cli._direct``) — and stops with a ``SettingsError`` naming the variables, never
the key. A database migrated to 0101 takes the key of the first process that starts on it.
"""

from __future__ import annotations

import hashlib
import hmac

import psycopg

from app.config import PREFIX, Settings, SettingsError

_LABEL = b"tracecode: the master key of this database"
_RECORD = "INSERT INTO master_key_check (value) VALUES (%s) ON CONFLICT (one) DO NOTHING"


def check_value(settings: Settings) -> bytes:
    """The check value of the configured master key: what the database keeps."""
    return hmac.digest(settings.subkey("master-key-check"), _LABEL, hashlib.sha256)


def check(url: str, settings: Settings) -> None:
    """Record the configured key's check value in the database at ``url`` if it holds none,
    else compare: ``SettingsError`` for another key. On a connection of its own (autocommit:
    a concurrent first start waits for the other's row, then reads it)."""
    mine = check_value(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_RECORD, (mine,))
        row = conn.execute("SELECT value FROM master_key_check").fetchone()
    if row is None or not hmac.compare_digest(bytes(row[0]), mine):
        raise SettingsError(
            f"the master key ({PREFIX}MASTER_KEY or {PREFIX}MASTER_KEY_FILE) is not the one "
            "this database's codes were made under: under it every printed code would answer "
            "forged, and PINs and printer files would not match. Start with the database's key "
            "(another environment's key, a new value from the secret store, a var/master.key "
            "made by `tracecode run` on this host?)"
        )
