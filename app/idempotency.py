"""Client ids: a request sent again under the same client id must be the same request.

A write that takes a client id keeps, beside it, the fingerprint of the request without it;
a later request under that id is a retry (answered with the first result) when its fingerprint
is the same, and 409 ``client_id_reused`` when not: another scan, sale or campaign that would
otherwise vanish behind the first one's answer.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import msgspec

from app.errors import Conflict

# A client id: 1–64 printable ASCII characters, no space (a look-alike id — a trailing newline,
# a zero-width space — would be another id, and its retry another request). ``(?!\n)``: a
# pattern's ``$`` also matches before a final line feed ("run-7\n" passed an allocation's
# check, then broke the database's after the codes were taken: 422 instead of 400).
ClientId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+(?!\n)$")
]


def fingerprint(data: Any, order: Literal["deterministic"] | None = "deterministic") -> bytes:
    """SHA-256 of a request struct (with a ``client_id`` field) without its client id, the keys
    of its objects (a campaign's ``variables``) in sorted order — a JSON object has none: the
    same campaign with its variables in another order was 409 (a probe) — its fields in their
    declared order (the bytes of a struct with no object field are those before: ``order``
    None, the fingerprint of a campaign kept before, its variables as sent).

    Optional fields added to a struct after its requests were first fingerprinted are named in
    its ``fingerprint_late`` class variable and left out while None: a request recorded before
    the field existed, retried as it was, still has its first fingerprint (such a struct has no
    object field: its fields become one, kept in their order)."""
    plain = msgspec.structs.replace(data, client_id=None)
    late = [f for f in getattr(data, "fingerprint_late", ()) if getattr(data, f) is None]
    if late:
        fields = msgspec.to_builtins(plain)
        for name in late:
            del fields[name]
        return hashlib.sha256(msgspec.json.encode(fields)).digest()
    return hashlib.sha256(msgspec.json.encode(plain, order=order)).digest()


def check(stored: bytes | None, data: Any, what: str) -> None:
    """409 ``client_id_reused`` unless ``data`` is the request recorded with ``stored`` (its
    fingerprint, or one kept before objects' keys were sorted; None for a record kept before
    fingerprints were, taken as a retry)."""
    if stored is None:
        return
    kept = bytes(stored)
    if kept != fingerprint(data) and kept != fingerprint(data, order=None):
        raise reused(what)


def reused(what: str) -> Conflict:
    return Conflict(f"this client id was used for another {what}", code="client_id_reused")
