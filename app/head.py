"""HEAD requests: the headers of GET, never a body.

A route that answers HEAD lists it next to GET (``http_method=GET_HEAD``) and runs as for GET;
``strip_head_body``, a before-send hook of the app, then drops the body of every HEAD answer —
errors included — and keeps the headers, ``Content-Length`` too (RFC 9110 9.3.2). Litestar itself
would send the body.
"""

from __future__ import annotations

from litestar.types import Message, Scope

GET_HEAD = ["GET", "HEAD"]


async def strip_head_body(message: Message, scope: Scope) -> None:
    """Before-send hook: a HEAD answer goes out with its headers and an empty body."""
    if message["type"] == "http.response.body" and scope.get("method") == "HEAD":
        message["body"] = b""
