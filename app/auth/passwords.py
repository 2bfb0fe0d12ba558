"""Password hashing with argon2id, of the password in Unicode NFKC (NIST SP 800-63B 5.1.1.2):
"Pässwörd" typed on a keyboard that composes the accents and on one that sends them apart is one
password (probe Q: the second was refused, and counted against the login limits)."""

from __future__ import annotations

import contextlib
import functools
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import ValidationFailed

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so both paths cost the same. Made on
    first use: at import it cost every process that imports the API (each CLI command, each
    server and worker) a default-cost hash, ~0.1–0.6 s, before it did anything."""
    return _hasher.hash("no such user: equalise timing")


MIN_LENGTH = 8  # characters of the password as it is compared (``app.auth.schemas.Password``)


def hash_password(password: str) -> str:
    """The hash of a user's password, in NFKC; 400 ``validation_failed`` under ``MIN_LENGTH``
    characters in that form (a probe: "e" and a combining accent, four times, passed the
    schema's eight characters as sent, and the account's password was "éééé")."""
    normal = unicodedata.normalize("NFKC", password)
    if len(normal) < MIN_LENGTH:
        raise ValidationFailed(
            f"a password is at least {MIN_LENGTH} characters (accents composed)",
            details={"field": "password", "min_length": MIN_LENGTH},
        )
    return _hasher.hash(normal)


# A random one-time password (>= 96 bits: the ERP import's initial passwords) cannot be guessed
# whatever its hash costs, so it is hashed with argon2id's cheapest profile — a thousand new users
# in a second, not minutes. The hash names its parameters (``verify_password`` reads them); the
# user's own password, once changed, is hashed with the defaults.
_random_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


_CHEAP = "$argon2id$v=19$m=1024,t=1,p=1$"


def hash_random_password(password: str) -> str:
    """The hash of a machine-generated random password of at least 96 bits (only those)."""
    return _random_hasher.hash(unicodedata.normalize("NFKC", password))


def same(first: str, second: str) -> bool:
    """Whether two passwords are one as hashed (in NFKC)."""
    return unicodedata.normalize("NFKC", first) == unicodedata.normalize("NFKC", second)


def verify_password(password_hash: str | None, password: str) -> bool:
    normal = unicodedata.normalize("NFKC", password)
    if _verified(password_hash, normal):
        return True
    # a hash made before passwords were normalised, of the password as it was typed then
    return normal != password and _verified(password_hash, password)


def _verified(password_hash: str | None, password: str) -> bool:
    try:
        ok = _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if password_hash is not None and password_hash.startswith(_CHEAP):
        # the default cost too: a login's time must not tell an imported account still on its
        # initial password (a probe: ~5 ms against ~300 ms for others and unknown names)
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(_dummy_hash(), password)
    return ok
