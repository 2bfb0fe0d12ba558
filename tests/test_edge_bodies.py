"""The plain ASGI handlers read their bodies themselves (``app.edge.read_post_body``, issue 21):
a body sent in several messages is read whole, a body whose ``Content-Length`` is in after the
first message is not waited on again (granian says ``more_body`` true for a whole small body),
and a body over the limit is 413 without the rest being read. Driven through the app's ASGI
callable, messages as granian hands them over, on the real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import msgspec

BODY = b'{"serial": "NOT-A-SERIAL", "lang": "en"}'  # malformed: answered without a code


async def _post(app: Any, chunks: list[bytes], length: int | None) -> tuple[int, Any, int]:
    """POST /v1/verify with the body in ``chunks``; (status, the answer's headers and JSON,
    how many times the handler called receive)."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/verify",
        "raw_path": b"/v1/verify",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", "40000"),
        "server": ("127.0.0.1", "8000"),
        "state": {},
    }
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    received, sent = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    answer = {k.decode(): v.decode() for k, v in start["headers"]}, msgspec.json.decode(body)
    return start["status"], answer, received


async def test_a_body_in_several_messages_is_read_whole(
    client: Any, app: Any
) -> None:  # client: the app started
    chunks = [BODY[:7], BODY[7:20], BODY[20:]]
    for length in (None, len(BODY)):  # chunked, or with its length
        status, (_, answer), received = await _post(app, chunks, length)
        assert status == 200 and answer["reason"] == "malformed", answer
        assert received == 4  # three parts and the end


async def test_a_body_whose_length_is_in_is_not_waited_on(
    client: Any, app: Any
) -> None:  # client: the app started
    status, (_, answer), received = await _post(app, [BODY], len(BODY))
    assert status == 200 and answer["reason"] == "malformed", answer
    assert received == 1  # the end-of-body message is never asked for
    # without a Content-Length (chunked): read to the end-of-body message as before
    status, (_, answer), received = await _post(app, [BODY], None)
    assert (status, received) == (200, 2)


async def test_a_body_over_the_limit_is_413_without_the_rest(
    client: Any, app: Any
) -> None:  # client: the app started
    part = b" " * 10_000
    status, (headers, answer), received = await _post(app, [part] * 4, 40_000)
    assert status == 413 and answer["error"]["code"] == "payload_too_large"
    assert headers["connection"] == "close"
    assert received == 2  # 20,000 bytes are past 16 KB: the other two parts stay unread
    status, (_, answer), received = await _post(app, [part * 2], 20_000)
    assert (status, received) == (413, 1)
