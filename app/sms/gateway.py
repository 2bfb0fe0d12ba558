"""Gateway adapters: how a rendered message leaves Tracecode.

``Gateway.send(messages)`` takes a list of messages and answers one ``Result`` per message, in
order: ``accepted`` (with the provider's message id), ``rejected`` (the gateway refused this
message for good: a bad number, a template it does not know — the row is failed and
dead-lettered) or ``retry`` (the gateway is down, slow, overloaded or answered something we
cannot read — the row is tried again later). An adapter never raises for a gateway fault.

Every message carries ``key``, the outbox row's idempotency key, the same on every attempt of
the row: a gateway that deduplicates on it delivers a re-sent attempt once (README "SMS").

* ``HttpGateway`` posts JSON to ``TRACECODE_SMS_GATEWAY_URL``: ``{"messages": [{"key", "phone",
  "sign", "template_id", "params", "text"}]}`` with HTTP Basic credentials and an
  ``Idempotency-Key`` header (the key of a single message; for a batch, each message's key is in
  the body), up to ``SMS_GATEWAY_BATCH`` messages per request; it expects
  ``{"results": [{"key", "status": "accepted"|"rejected", "message_id", "error"}]}``. 5xx, 408,
  429, 401/403 (credentials being rotated), a timeout (``SMS_GATEWAY_TIMEOUT`` bounds each
  request as a whole, connecting to the last byte of the answer, from the moment it has one of
  the ``SMS_CONCURRENCY`` slots) or a broken connection mean "retry"; a 400/422 for a batch is
  split in halves to find the message at fault. ``send`` bounds the whole call too: one
  time-out per wave of ``SMS_CONCURRENCY`` batches and one per level of a split (a request not
  answered by then is a "retry"), so that a sender's claim of one wave ends inside its lease
  (``Settings.sms_claim_seconds``).
* ``DevGateway`` (development) accepts everything: the log gets the masked phone and the text
  with its code masked; ``var/sms/messages.jsonl`` gets the whole message, to read codes from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import httpx
import msgspec

from app.config import Settings
from app.members.mask import mask_phone

log = logging.getLogger("tracecode.sms")

RETRY_STATUSES = frozenset({401, 403, 404, 408, 409, 425, 429})


class OutMessage(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # the row's idempotency key
    phone: str
    sign: str
    template_id: str
    params: dict[str, str]
    text: str  # signature + rendered body (+ opt-out line)
    masked_text: str  # the text with secrets masked: what logs may show


class Result(msgspec.Struct, frozen=True):
    status: Literal["accepted", "rejected", "retry"]
    message_id: str | None = None
    error: str | None = None


class Gateway(Protocol):
    name: str

    async def send(self, messages: Sequence[OutMessage]) -> list[Result]: ...

    async def aclose(self) -> None: ...


class _Wire(msgspec.Struct, frozen=True):
    key: str
    phone: str
    sign: str
    template_id: str
    params: dict[str, str]
    text: str


class _Answer(msgspec.Struct, frozen=True):
    key: str
    status: str
    message_id: str | None = None
    error: str | None = None


class _Answers(msgspec.Struct, frozen=True):
    results: list[_Answer]


class HttpGateway:
    """The HTTP adapter (see the module's docstring for the protocol)."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        secret: str | None = None,
        timeout: float = 5.0,
        batch: int = 50,
        concurrency: int = 8,
    ) -> None:
        self.url = url
        self.batch = batch
        self.concurrency = concurrency
        self.timeout = timeout  # seconds per request, the whole of it (see ``_post``)
        auth = httpx.BasicAuth(key, secret or "") if key else None
        self._client = httpx.AsyncClient(
            auth=auth,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._encode = msgspec.json.Encoder()
        self._decode = msgspec.json.Decoder(_Answers)

    async def send(self, messages: Sequence[OutMessage]) -> list[Result]:
        """One ``Result`` per message, in order. Each request waits for a slot, the halves of a
        refused batch too: the whole call is bounded by one time-out per wave of batches and
        per level of a split, what ``Settings.sms_claim_seconds`` counts for the sender's claim
        of one wave (whatever the slots' queue, a claim then ends inside its lease)."""
        chunks = [messages[i : i + self.batch] for i in range(0, len(messages), self.batch)]
        if not chunks:
            return []
        waves = -(-len(chunks) // self.concurrency)
        levels = (len(chunks[0]) - 1).bit_length()  # halvings down to one message
        deadline = asyncio.get_running_loop().time() + self.timeout * (waves + levels)
        answers = await asyncio.gather(*(self._post(chunk, deadline) for chunk in chunks))
        return [result for answer in answers for result in answer]

    async def _post(self, messages: Sequence[OutMessage], deadline: float) -> list[Result]:
        wire = [_Wire(m.key, m.phone, m.sign, m.template_id, m.params, m.text) for m in messages]
        headers = {"Content-Type": "application/json"}
        if len(messages) == 1:
            headers["Idempotency-Key"] = messages[0].key
        content = self._encode.encode({"messages": wire})
        try:  # httpx bounds each connect and read; a gateway trickling its answer a byte at a
            # time would hold the send (and the sweeper) for ever: the request as a whole is
            # bounded too, from the moment it has a slot (a probe), and by the call's deadline
            async with (
                asyncio.timeout_at(deadline),
                self._slots,
                asyncio.timeout(self.timeout),
                self._client.stream("POST", self.url, content=content, headers=headers) as response,
            ):
                body = await _read_capped(response)
        except (httpx.TimeoutException, TimeoutError):
            return [Result("retry", error="gateway timeout")] * len(messages)
        except httpx.HTTPError as exc:
            return [Result("retry", error=f"gateway unreachable: {type(exc).__name__}")] * len(
                messages
            )
        status = response.status_code
        if body is None:
            error = f"gateway answered {status} with more than {MAX_ANSWER} bytes"
            return [Result("retry", error=error)] * len(messages)
        if status in (400, 422):
            if len(messages) > 1:  # find the message at fault: halves, down to one
                middle = len(messages) // 2
                first, second = await asyncio.gather(
                    self._post(messages[:middle], deadline),
                    self._post(messages[middle:], deadline),
                )
                return first + second
            snippet = _scrubbed(body[:2000].decode(errors="replace"), messages[0])[:200]
            return [Result("rejected", error=f"gateway answered {status}: {snippet}")]
        if status >= 500 or status in RETRY_STATUSES or not 200 <= status < 300:
            return [Result("retry", error=f"gateway answered {status}")] * len(messages)
        try:
            answers = {a.key: a for a in self._decode.decode(body).results}
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [Result("retry", error=f"unreadable gateway answer: {exc}")] * len(messages)
        return [_result(answers.get(m.key), m) for m in messages]

    async def aclose(self) -> None:
        await self._client.aclose()


def _result(answer: _Answer | None, m: OutMessage) -> Result:
    if answer is None:
        return Result("retry", error="the gateway's answer left the message out")
    if answer.status == "accepted":  # without an id too: it is sent (a probe: sent again,
        # until out of attempts, then failed); only its delivery report cannot be matched
        return Result("accepted", message_id=answer.message_id[:200] if answer.message_id else None)
    if answer.status == "rejected":
        return Result("rejected", error=_scrubbed(answer.error or "rejected", m)[:500])
    return Result("retry", error=f"unexpected status {answer.status!r}"[:500])


MAX_ANSWER = 1024 * 1024  # a gateway's answer to one request: more is refused, never held


async def _read_capped(response: httpx.Response) -> bytes | None:
    """The answer's body, or None past ``MAX_ANSWER`` (probe K: an 800 MB answer took the
    worker, which sends the webhooks too, to 2.8 GB, once per retry)."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _scrubbed(text: str, m: OutMessage) -> str:
    """A gateway's words about a message, without what the message carries: its variables (a
    one-time code, a redemption code) and the whole phone. Some gateways echo the request in
    their errors, and the error is stored, dead-lettered and shown (probe N)."""
    for value in m.params.values():
        if len(value) >= 3:
            text = text.replace(value, "***")
    return text.replace(m.phone, mask_phone(m.phone)).replace("\n", " ")


class DevGateway:
    """The development adapter: accepts every message, logs it masked, appends it to a file."""

    name = "dev"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "messages.jsonl"

    async def send(self, messages: Sequence[OutMessage]) -> list[Result]:
        lines = []
        for m in messages:
            log.info("sms to %s: %s", mask_phone(m.phone), m.masked_text, extra={"sms_key": m.key})
            record = {"at": time.time(), "key": m.key, "phone": m.phone, "text": m.text}
            lines.append(msgspec.json.encode(record) + b"\n")
        await asyncio.to_thread(self._append, b"".join(lines))
        return [Result("accepted", message_id=f"dev-{m.key}") for m in messages]

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            out.write(data)

    async def aclose(self) -> None:
        return None


def gateway_from_settings(settings: Settings) -> Gateway:
    """The adapter the settings name."""
    if settings.sms_gateway == "http":
        assert settings.sms_gateway_url  # Settings refuses http without a URL
        return HttpGateway(
            settings.sms_gateway_url,
            key=settings.sms_gateway_key,
            secret=settings.sms_gateway_secret,
            timeout=settings.sms_gateway_timeout,
            batch=settings.sms_gateway_batch,
            concurrency=settings.sms_concurrency,
        )
    return DevGateway(settings.var_path / "sms")


def template_ids(settings: Settings) -> dict[str, str]:
    """``TRACECODE_SMS_TEMPLATE_IDS`` ("otp=SMS_1,redemption=SMS_2") as a mapping; its form is
    checked when the settings are loaded (``app.config``)."""
    text = settings.sms_template_ids
    pairs = (part.partition("=") for part in text.split(",")) if text else ()
    return {name.strip(): value.strip() for name, _, value in pairs}
