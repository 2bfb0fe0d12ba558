"""Photos in an S3-compatible object store (``TRACECODE_MEDIA_STORE=s3``), without an S3 library.

Requests are signed with AWS Signature Version 4 (``sign``: the canonical request, the string to
sign and the signing key of the S3 documentation, hmac/hashlib only; the known-answer tests in
tests/test_media_s3.py reproduce the documentation's examples) and sent with the standard
library's ``urllib.request`` in a worker thread: the project has no async HTTP client among its
runtime dependencies. Objects are addressed path-style (``<endpoint>/<bucket>/<prefix><key>``),
which AWS S3, MinIO, Ceph RGW, Garage and the like all accept.

The secret access key is only used to derive signing keys: it is not logged, not part of
``repr`` and not in any error message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from app.errors import BadGateway, NotFound, ServiceUnavailable
from app.media.keys import check_key

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TIMEOUT_SECONDS = 30
CHUNK = 1 << 18  # what a streamed GET holds at a time


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str = "s3") -> bytes:
    """``kSigning`` = HMAC chain over the day (``YYYYMMDD``), region, service and "aws4_request"."""
    key = _hmac(("AWS4" + secret).encode(), day)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_hash: str,
) -> tuple[str, str]:
    """(canonical request, signed header names) as S3 computes them: the path's segments
    URI-encoded once, the query sorted and encoded, the headers lower-cased, trimmed and sorted."""
    encoded = sorted((quote(k, safe="~"), quote(v, safe="~")) for k, v in query.items())
    names = {name.lower().strip(): " ".join(value.split()) for name, value in headers.items()}
    signed = ";".join(sorted(names))
    lines = [
        method,
        quote(path, safe="/~"),
        "&".join(f"{k}={v}" for k, v in encoded),
        *(f"{name}:{names[name]}" for name in sorted(names)),
        "",
        signed,
        payload_hash,
    ]
    return "\n".join(lines), signed


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def sign(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_hash: str,
    *,
    region: str,
    access_key_id: str,
    secret: str,
    amz_date: str,
) -> str:
    """The ``Authorization`` header of a request whose ``headers`` (``host``, ``x-amz-date``,
    ``x-amz-content-sha256`` and any other to be signed) are all signed."""
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    canonical, signed = canonical_request(method, path, query, headers, payload_hash)
    key = signing_key(secret, amz_date[:8], region)
    signature = hmac.new(
        key, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256
    ).hexdigest()
    return (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


class S3Store:
    """Photos as objects of one bucket of an S3-compatible server."""

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        prefix: str = "",
    ) -> None:
        parts = urlsplit(endpoint)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.bucket, self.region, self.prefix = bucket, region, prefix
        self._access_key_id, self._secret = access_key_id, secret_access_key
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:  # never the secret
        return f"S3Store(origin={self.origin!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def path(self, key: str) -> str:
        return f"/{self.bucket}/{self.prefix}{check_key(key)}"

    def _open(
        self, method: str, key: str, body: bytes = b"", extra: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, open response) of a signed request; ``extra`` headers are signed too."""
        path = self.path(key)
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {
            "host": self.host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            **(extra or {}),
        }
        if method == "PUT":
            headers["content-length"] = str(len(body))
            headers["content-type"] = "application/octet-stream"
        headers["authorization"] = sign(
            method,
            path,
            {},
            headers,
            payload_hash,
            region=self.region,
            access_key_id=self._access_key_id,
            secret=self._secret,
            amz_date=headers["x-amz-date"],
        )
        url = self.origin + quote(path, safe="/~")
        request = urllib.request.Request(
            url, data=body if method == "PUT" else None, method=method, headers=headers
        )
        try:
            response = self._opener.open(request, timeout=TIMEOUT_SECONDS)
            return response.status, response
        except urllib.error.HTTPError as exc:
            return exc.code, exc
        except OSError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: OSError) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the photo store at {self.origin} cannot be reached ({type(exc).__name__})",
            code="media_store_unavailable",
        )

    def _request(self, method: str, key: str, body: bytes = b"") -> tuple[int, bytes]:
        status, response = self._open(method, key, body)
        with response:
            try:
                return status, response.read()
            except OSError as exc:
                raise self._unreachable(exc) from None

    def _failed(self, method: str, status: int, body: bytes) -> BadGateway:
        code = (
            body.split(b"<Code>", 1)[-1].split(b"</Code>", 1)[0][:64] if b"<Code>" in body else b""
        )
        return BadGateway(
            f"the photo store answered {method} with {status} {code.decode(errors='replace')}",
            code="media_store_failed",
        )

    def _put(self, key: str, data: bytes) -> None:
        status, body = self._request("PUT", key, data)
        if status != 200:
            raise self._failed("PUT", status, body)

    def _get(self, key: str) -> bytes:
        status, body = self._request("GET", key)
        if status == 404:
            raise NotFound("photo not found")
        if status != 200:
            raise self._failed("GET", status, body)
        return body

    def _delete(self, key: str) -> None:
        status, body = self._request("DELETE", key)
        if status not in (200, 204, 404):
            raise self._failed("DELETE", status, body)

    def _open_range(self, key: str, first: int, last: int) -> tuple[Any, int]:
        """(open response, bytes to skip at its start) of a GET of bytes ``first``–``last``:
        206 with those bytes alone, or 200 with the whole object (a server ignoring Range)."""
        status, response = self._open("GET", key, extra={"range": f"bytes={first}-{last}"})
        if status in (200, 206):
            return response, first if status == 200 else 0
        with response:
            body = response.read()
        if status == 404:
            raise NotFound("photo not found")
        raise self._failed("GET", status, body)

    async def stream(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        """Bytes ``first``–``last`` of an object, asked of the server as a range and given in
        chunks as they come, never held whole (a video of 200 MB: one chunk at a time). The
        object is opened before this returns (404, 502, 503 raised here, before an answer)."""
        response, skip = await asyncio.to_thread(self._open_range, key, first, last)
        return self._chunks(response, skip, last - first + 1)

    async def _chunks(self, response: Any, skip: int, left: int) -> AsyncIterator[bytes]:
        try:
            while skip > 0:  # a whole object's answer: the bytes before the range read, dropped
                skip -= len(await self._read(response, min(CHUNK, skip)))
            while left > 0:
                chunk = await self._read(response, min(CHUNK, left))
                left -= len(chunk)
                yield chunk
        finally:
            response.close()

    async def _read(self, response: Any, size: int) -> bytes:
        chunk: bytes = await asyncio.to_thread(response.read, size)
        if not chunk:
            raise RuntimeError(f"an object of {self.origin} ended before its last byte")
        return chunk

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)
