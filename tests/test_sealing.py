"""One way to seal (``app.sealing``): what ``encrypt`` seals opens under its purpose and binding
only, and values sealed before the module existed — a webhook's or WeChat's stored secret, a
redemption code, an H5 cookie or ticket: AES-256-GCM, a 12-byte nonce, no associated data —
still open (a stored secret that no longer opened would stop every delivery)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from Crypto.Cipher import AES

from app import sealing


def test_a_sealed_value_opens_under_its_purpose_and_binding_only(settings: Any) -> None:
    blob = sealing.encrypt(settings, "webhook-secret", b"whsec_x", b"7")
    assert sealing.decrypt(settings, "webhook-secret", blob, b"7") == b"whsec_x"
    assert len(blob) == sealing.NONCE + len(b"whsec_x") + sealing.TAG
    assert blob != sealing.encrypt(settings, "webhook-secret", b"whsec_x", b"7")  # fresh nonce
    altered = blob[:-1] + bytes([blob[-1] ^ 1])
    for purpose, data, bound in (
        ("redemption-code-seal", blob, b"7"),  # another purpose
        ("webhook-secret", blob, b"8"),  # another binding
        ("webhook-secret", blob, b""),
        ("webhook-secret", altered, b"7"),
        ("webhook-secret", blob[:27], b"7"),  # shorter than a nonce and a tag
    ):
        with pytest.raises(ValueError):
            sealing.decrypt(settings, purpose, data, bound)


@pytest.mark.parametrize("purpose", ["webhook-secret", "redemption-code-seal", "h5-clerk-claim"])
def test_a_value_sealed_before_the_shared_helper_still_opens(settings: Any, purpose: str) -> None:
    nonce = secrets.token_bytes(12)
    cipher = AES.new(settings.subkey(purpose), AES.MODE_GCM, nonce=nonce)
    sealed, tag = cipher.encrypt_and_digest(b'["8901", 3]')
    assert sealing.decrypt(settings, purpose, nonce + sealed + tag) == b'["8901", 3]'


def test_the_stored_secrets_and_pages_seal_through_it(settings: Any) -> None:
    from app.members import redemptions
    from app.web import clerk_pages, session
    from app.webhooks import signing

    assert signing.unseal(settings, signing.seal(settings, "whsec_y")) == "whsec_y"
    assert redemptions.unseal(settings, redemptions.seal(settings, "R-1")) == "R-1"
    assert session.unseal(settings, "h5", session.seal(settings, "h5", [1, "a"])) == [1, "a"]
    assert session.unseal(settings, "other", session.seal(settings, "h5", [1])) is None
    ticket = clerk_pages.open_ticket(settings, clerk_pages.issue_ticket(settings, "S1", 5))
    assert ticket is not None and (ticket.serial, ticket.user_id) == ("S1", 5)
    assert clerk_pages.open_ticket(settings, session.seal(settings, "h5-clerk-claim", 3)) is None
    with pytest.raises(ValueError):
        signing.unseal(settings, signing.seal(settings, "whsec_y"), "wechat-app-secret")
