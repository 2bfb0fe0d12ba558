"""Issue 15 attacked from outside (reviewer X): the member, points, gift, redemption and SMS
endpoints against hostile input and guessing, over HTTP through the in-process client."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from app.sms.service import sign
from tests.helpers import assert_error

SECRET = "attack-secret"


async def test_a_callback_signature_with_non_ascii_bytes_is_401_not_500(
    client: Any, app: Any
) -> None:
    """hmac.compare_digest refuses non-ASCII str: a forged header of latin-1 bytes was a 500."""
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, sms_callback_secret=SECRET)
    try:
        body = b'{"reports": [{"message_id": "x", "status": "delivered"}]}'
        stamp = str(int(time.time()))
        good = sign(SECRET, stamp, body)
        for forged in ("\xe9" * 64, good[:-1] + "\xe9"):
            headers = {
                "Content-Type": "application/json",
                "X-Tracecode-Timestamp": stamp,
                "X-Tracecode-Signature": forged.encode("latin-1"),
            }
            assert_error(
                await client.post("/sms/callbacks/http", content=body, headers=headers),
                401,
                "invalid_signature",
            )
        headers = {
            "Content-Type": "application/json",
            "X-Tracecode-Timestamp": "\xb9\xb2".encode("latin-1"),
            "X-Tracecode-Signature": good,
        }
        assert_error(
            await client.post("/sms/callbacks/http", content=body, headers=headers),
            401,
            "invalid_signature",
        )
    finally:
        app.state.settings = settings
