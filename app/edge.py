"""What enters at the edge, checked once before any handler sees it.

* JSON bodies: ``EdgeRequest.json()`` (the app's ``request_class``) refuses control characters
  (``app.textguard``) and nesting deeper than ``MAX_JSON_DEPTH`` with 400 before decoding, so a
  1,000-level document never reaches the decoder's recursion limit (it answered 500).
* Query strings and paths: ``check_edge``, called by the request layer (``app.front``) before
  routing, refuses control characters (raw or percent-encoded) with 400 ``invalid_character``
  (``refuse`` answers it) before a handler or the database sees them (PostgreSQL cannot store
  NUL).
* Form bodies (the PIN form) are checked like query strings in ``EdgeRequest.body()``.
* The ``Host`` header (HTTP/2's ``:authority``, which granian passes as ``host`` when the request
  has no Host): ``host_ok``, called by the request layer on every request, before routing;
  one that is no ``uri-host [":" port]`` is 400 ``invalid_host`` (``check_edge``). A port that
  is no digits or above 65535 (``x:abc``, ``127.0.0.1:99999``, an IPv6 address without
  brackets), an IP literal urllib cannot read (``[::1``, ``[abc]``) made
  Litestar's ``request.url`` raise ValueError (a probe): the GS1 resolver and every validation
  error answered 500, and the consumer pages' HTML error page failed too. Characters no
  host name has (``/``, ``?``, ``#``, ``@``, a space, non-ASCII: Litestar's router refused most
  as 400 ``bad_request``, the fast lane not at all) are refused with them. An empty or
  zero-padded port (``host:``, ``h:0080``: RFC 3986's ``*DIGIT``) passes.
* Media types: a JSON body must say so (``application/json`` or ``application/…+json``, UTF-8
  if it names a charset), else 415 ``unsupported_media_type`` before decoding; ``media_of``
  reads the header for the routes that take other bodies (CSV, EPCIS documents).
* Content codings: a body is taken as sent, never decompressed; one in a coding (``Content-Encoding:
  gzip``, …) is 415 ``unsupported_media_type`` naming it before a byte of it is read
  (``require_identity``: in ``EdgeRequest.stream()``, which every body read of a route goes
  through, and in ``read_post_body``), never 400 ``malformed_json`` for valid JSON compressed.

The checks are single passes in C (regular expressions) or in the Rust core (the JSON depth)
that bulk uploads of megabytes pay a few milliseconds for; small bodies pay microseconds, a
common ``Host`` (a name, an optional port) one regular-expression match (~0.2 µs).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import msgspec
from litestar import Request
from litestar.types import Empty

from app import _core
from app.bodies import decode_data
from app.errors import (
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from app.textguard import check_json_body, check_text

MAX_JSON_DEPTH = 64

# A control character in a query string or form body: raw, or percent-encoded (tab, line feed
# and carriage return pass); in UTF-8 the C1 controls and the bidirectional overrides and
# isolates too, as in app.textguard.
_QUERY_CONTROL = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|%(?:0[0-8bcefBCEF]|1[0-9a-fA-F]|7[fF])"
    rb"|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
    rb"|%[cC]2%[89][0-9a-fA-F]|%[eE]2%80%[aA][a-eA-E]|%[eE]2%81%[aA][6-9]"
)
_FORM = "application/x-www-form-urlencoded"
# A Host of the common shape: a name (letters, digits, dots, dashes), an optional port of up to
# 10 digits — empty ("host:") and zero-padded ones are ports (RFC 3986 3.2.3: *DIGIT), the 65,535
# limit is checked apart; anything else takes the full check (``_HOST_ANY``).
_HOST_COMMON = re.compile(rb"[0-9A-Za-z._-]*(?::([0-9]{0,10}))?").fullmatch
# uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2): an IP literal in brackets, or a name of
# unreserved characters, sub-delimiters and percent escapes — what Litestar's router lets in
# (``is_valid_host``, which the fast lane does not run), less ":", "[", "]" and "@" in a name
_HOST_ANY = re.compile(
    rb"(\[[0-9A-Za-z!$&'()*+,;=._~%:-]+\]|[0-9A-Za-z!$&'()*+,;=._~%-]*)(?::([0-9]{0,10}))?"
).fullmatch


# The GS1 resolver's paths (app.web.resolver): the CORS headers of its every answer, which the
# edge check's refusals there carry too (a web scanner on another origin saw a CORS failure, not
# the 400)
RESOLVER_PATHS = ("/01/", "/00/")
RESOLVER_ALONE = ("/01", "/00", "/.well-known/gs1resolver")
_RESOLVER_METHODS = "GET, HEAD, OPTIONS"
RESOLVER_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": _RESOLVER_METHODS,
    "Access-Control-Expose-Headers": "Link",
    "Allow": _RESOLVER_METHODS,
    "Vary": "Accept",
}
# its CORS preflight's answer (204): every origin, its methods and ``Accept``
RESOLVER_PREFLIGHT = {**RESOLVER_CORS, "Access-Control-Allow-Headers": "Accept"}


class InvalidHost(BadRequest):
    status, code = 400, "invalid_host"


class TooDeep(BadRequest):
    status, code = 400, "too_deep"


def _too_deep() -> TooDeep:
    return TooDeep(
        f"the JSON document is nested more than {MAX_JSON_DEPTH} levels deep",
        details={"max_depth": MAX_JSON_DEPTH},
    )


def json_depth_ok(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """False when arrays and objects nest deeper than ``limit`` (brackets in strings ignored; a
    body that does not balance: the deepest its running count reaches, as deep as a decoder
    would recurse before it finds out). One pass in the Rust core: the bracket-pair passes it
    replaced took seconds of the event loop for a 10 MB body of brackets (probe G). A body of
    at most ``limit`` bytes cannot nest deeper (a verification's ends there)."""
    return len(body) <= limit or _core.json_depth_ok(body, limit)


def media_of(content_type: str) -> tuple[str, str | None]:
    """The media type (lower case) and the charset parameter (lower case, or None) of a
    ``Content-Type`` header."""
    media, *params = content_type.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media.strip().lower(), charset


def is_utf8(charset: str | None) -> bool:
    return charset in (None, "utf-8", "utf8")


def require_json(content_type: str) -> None:
    """415 ``unsupported_media_type`` unless the body is declared JSON, in UTF-8."""
    media, charset = media_of(content_type)
    json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    if not json or not is_utf8(charset):
        raise UnsupportedMediaType(
            "send the body as JSON in UTF-8 (Content-Type: application/json)",
            details={"content_type": content_type[:200], "accepted": ["application/json"]},
        )


def require_identity(content_encoding: str | None) -> None:
    """415 ``unsupported_media_type`` for a body in a content coding other than ``identity``
    (RFC 9110 8.4.1; ``Accept-Encoding`` says which one is accepted, RFC 7694)."""
    if content_encoding and any(
        coding.strip().lower() not in ("identity", "") for coding in content_encoding.split(",")
    ):
        raise UnsupportedMediaType(
            f"the body is sent with Content-Encoding: {content_encoding[:50]}; "
            "send it uncompressed, without a Content-Encoding",
            details={"content_encoding": content_encoding[:200], "accepted": ["identity"]},
            headers={"Accept-Encoding": "identity"},
        )


def check_json(body: bytes) -> None:
    """400 ``invalid_character`` or ``too_deep`` for a JSON body that must not be decoded."""
    check_json_body(body)
    if not json_depth_ok(body):
        raise _too_deep()


async def read_post_body(scope: Any, receive: Any, max_bytes: int, what: str) -> bytes:
    """The JSON body of a POST to a plain ASGI handler (``/v1/verify``, claims): 405 with
    ``Allow`` for another method; 415 unless it is ``application/json`` in UTF-8 (as every other
    route answers: a form or ``text/plain`` POST, which a browser sends cross-site without
    asking, never gets in) in no content coding (``require_identity``); past ``max_bytes`` 413
    without reading the rest, with ``Connection: close`` so the client's next request goes on a
    new connection instead of failing on this.

    Reading stops once ``Content-Length`` bytes are in, even when the message says more may
    come: granian gives a whole small body with ``more_body`` true and the end in a message of
    its own, a second round trip through the event loop for nothing."""
    if scope["method"] != "POST":
        raise MethodNotAllowed("use POST", headers={"Allow": "POST"})
    length, media, coding = -1, b"", b""
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif name == b"content-type":
            media = value
        elif name == b"content-encoding":
            coding = value
    if coding:
        require_identity(coding.decode("latin-1"))
    if media != b"application/json" and not _json_media(media):
        raise UnsupportedMediaType(
            f"send {what} as application/json (UTF-8)",
            details={"accepted": ["application/json"]},
        )
    message = await receive()
    body: bytes = message.get("body", b"")
    if message.get("more_body") and len(body) != length:
        while message.get("more_body") and len(body) <= max_bytes:
            message = await receive()
            body += message.get("body", b"")
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"{what} is at most {max_bytes // 1024} KB",
            details={"max_bytes": max_bytes},
            headers={"Connection": "close"},
        )
    return body


def _json_media(content_type: bytes) -> bool:
    media, charset = media_of(content_type.decode("latin-1"))
    return media == "application/json" and is_utf8(charset)


def check_query(raw: bytes, what: str = "query") -> None:
    """400 ``invalid_character`` when a query string (or form body) carries a control character."""
    match = _QUERY_CONTROL.search(raw)
    if match is not None:
        char = unquote_to_bytes(match.group()).decode("utf-8", "replace")
        # the field name: the last "name=" before the match
        start = raw.rfind(b"&", 0, match.start()) + 1
        name = raw[start : match.start()].partition(b"=")[0].decode("latin-1", "replace")
        check_text(char, field=name or None, what=what)


class EdgeRequest(Request[Any, Any, Any]):
    """Litestar's request, with the edge checks on the bodies it decodes."""

    def stream(self) -> AsyncGenerator[bytes, None]:
        """Litestar's, once the body is known to be in no content coding (``body()``, ``json()``,
        ``form()`` and the routes that stream a file all read through here)."""
        require_identity(self.headers.get("content-encoding"))
        return super().stream()

    async def body(self) -> bytes:
        fresh = self._body is Empty and self._connection_state.body is Empty
        body = await super().body()
        if (
            fresh
            and body
            and self.content_type[0] == _FORM
            and not self.route_handler.opt.get("raw_body")  # its bytes are no form (a photo)
        ):
            check_query(body, what="form")
        return body

    async def json(self) -> Any:
        if self._json is Empty and self._connection_state.json is Empty:
            body = await self.body()
            if body:
                require_json(self.headers.get("content-type", ""))
            check_json(body)
            try:  # strictly, into the handler's data type (app.bodies): 1e3 is not an int
                decoded = decode_data(self.route_handler, body or b"null")
            except RecursionError:  # a safety net: the depth check comes first
                raise _too_deep() from None
            self._json = self._connection_state.json = decoded
        return await super().json()


def host_ok(host: bytes) -> bool:
    """Whether a ``Host`` header value is ``uri-host [":" port]`` that urllib (Litestar's
    ``request.url``) reads as it is: the port, when there is a colon, up to 10 ASCII digits
    (none, or zero-padded, as RFC 3986 allows) of a value up to 65535; an IP literal one urllib
    takes. The common shape is one match; the rest
    (``_host_ok_slowly``) a second and, for an IP literal, urllib's own reading."""
    common = _HOST_COMMON(host)
    if common is not None:  # a port may be empty ("host:", urllib sends it) or zero-padded
        # (RFC 3986 3.2.3: port = *DIGIT): its value is what counts
        return int(common.group(1) or 0) <= 65535
    return _host_ok_slowly(host)


def _host_ok_slowly(host: bytes) -> bool:
    match = _HOST_ANY(host)
    if match is None or int(match.group(2) or 0) > 65535:
        return False
    if host[:1] == b"[":
        try:  # an IP literal: urllib reads IPv6 and IPvFuture only ("[abc]" raises)
            urlsplit("//" + host.decode("latin-1"))
        except ValueError:
            return False
    return True


def check_edge(scope: Any, bad_host: bytes | None = None) -> None:
    """400 ``invalid_host`` (raised) for ``bad_host``, a ``Host`` header that is no host[:port]
    (``host_ok``: the request layer checks each one as it reads the headers), then
    ``invalid_character`` for a control character in the path or query; either, of a GS1
    resolver path, with the resolver's CORS headers (``RESOLVER_CORS``)."""
    try:
        if bad_host is not None:
            shown = bad_host[:200].decode("latin-1")
            raise InvalidHost(
                f"the Host header {shown!r} is not a host name or address with an optional port "
                "of 0-65535",
                details={"host": shown},
            )
        query = scope.get("query_string")
        if query:
            check_query(query)
        check_text(scope["path"], what="path")
    except BadRequest as exc:
        path = scope["path"]
        if path.startswith(RESOLVER_PATHS) or path in RESOLVER_ALONE:
            exc.headers = dict(RESOLVER_CORS)
        raise


async def refuse(
    send: Any, status: int, content: dict[str, Any], media: str, extra: dict[str, str]
) -> None:
    """Answer an error without Litestar (the request layer's, before routing): ``content`` as
    JSON, of ``media`` type, with the ``extra`` headers."""
    body = msgspec.json.encode(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media.encode()),
                (b"content-length", str(len(body)).encode()),
                *[(k.lower().encode(), v.encode()) for k, v in extra.items()],
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _path_int(text: str) -> int:
    """An ``{…:int}`` path segment: ASCII digits, no leading zero. Litestar reads them with
    ``int()``, so ``１``, ``١``, ``1_0``, `` 1``, ``+1`` and ``01`` named org 1 or 10 (probe Q):
    every resource had unlimited other URLs past any rule on paths. Anything else is 404."""
    if not (text.isascii() and text.isdigit()) or (text[0] == "0" and text != "0"):
        raise ValueError(text)  # the router answers 404
    return int(text)


def strict_path_ints() -> None:
    """Routes made from now on read integer path segments with ``_path_int`` (Litestar takes
    the parser when a route is made and has no setting for it)."""
    from litestar.routes import base

    base.parsers_map[int] = _path_int
