"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
# Verified against when the user does not exist, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("no such user: equalise timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


# A random one-time password (>= 96 bits: the ERP import's initial passwords) cannot be guessed
# whatever its hash costs, so it is hashed with argon2id's cheapest profile — a thousand new users
# in a second, not minutes. The hash names its parameters (``verify_password`` reads them); the
# user's own password, once changed, is hashed with the defaults.
_random_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def hash_random_password(password: str) -> str:
    """The hash of a machine-generated random password of at least 96 bits (only those)."""
    return _random_hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
