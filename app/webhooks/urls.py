"""Endpoint URLs partners may subscribe, checked when subscribed and before every attempt.

Refused with 400 and a stable code: a scheme other than http/https or a URL without a host
(``invalid_url``), credentials in the URL (``url_credentials``, secrets belong in the signing
secret, not in a URL that is shown and logged), a fragment (``invalid_url``), control characters
(``invalid_character``) and — unless ``TRACECODE_WEBHOOK_ALLOW_PRIVATE`` is set — a host that is,
or resolves to, a loopback, private, link-local, multicast, reserved or unspecified address
(``private_address``): Tracecode must not be made to call into its own network. A name is
resolved when it is subscribed (a name that does not resolve yet, or not within
``RESOLVE_SECONDS``, is accepted: its endpoint may not be live yet) and its addresses are checked
again before every attempt (a name may change what it points to), and the attempt connects to
an address so checked, not to whatever the name resolves to a moment later (DNS rebinding).

A public address: IPv4 that ``ipaddress`` calls global; IPv6 in global unicast (``2000::/3``)
that it calls global, or an IPv4 address carried in IPv6 (mapped, NAT64 ``64:ff9b::/96``, 6to4,
Teredo) that is itself public. Everything else — the IPv4-compatible ``::/96``, local-use NAT64,
site-local ``fec0::/10``, the 6to4 relay anycast ``192.88.99.0/24`` — is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from app.errors import BadRequest
from app.textguard import check_text


class UrlRefused(BadRequest):
    """An endpoint URL that may not be called; ``code`` says why."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, normalised only by stripping surrounding blanks, or ``UrlRefused``."""
    check_text(url, "url", "body")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("url: not a valid URL", code="invalid_url") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("url: only http and https endpoints", code="invalid_url")
    if not parts.hostname or any(c.isspace() for c in url):
        raise UrlRefused("url: no host, or blanks in the URL", code="invalid_url")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("url: credentials in the URL are not allowed", code="url_credentials")
    if parts.fragment:
        raise UrlRefused("url: a fragment is not sent; remove it", code="invalid_url")
    if port == 0:
        raise UrlRefused("url: port 0", code="invalid_url")
    try:  # what the sender's HTTP client will make of it (IDNA, brackets, ...)
        host = httpx.Request("POST", url).url.raw_host.decode("ascii")
    except Exception:
        raise UrlRefused("url: not a valid URL", code="invalid_url") from None
    labels = host.removesuffix(".").split(".")
    if _ip(host) is None and (len(host) > 253 or not all(0 < len(x) <= 63 for x in labels)):
        # no DNS name (a probe: the resolver's IDNA codec raised on it, a 500)
        raise UrlRefused("url: not a valid host name", code="invalid_url")
    if not allow_private:
        literal = _ip(host)
        name = host.lower().rstrip(".")
        if (
            (literal is not None and not _public(literal))
            or name == "localhost"
            or name.endswith(".localhost")
        ):
            raise UrlRefused("url: a private or loopback address", code="private_address")
    return url


RESOLVE_SECONDS = 3.0  # a subscription waits this long for its name to resolve


async def check_subscribed(url: str, *, allow_private: bool) -> str:
    """``check_url``, then the addresses the name resolves to now, if it resolves."""
    url = check_url(url, allow_private=allow_private)
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            await check_resolved(url, allow_private=allow_private)
    except (OSError, TimeoutError):  # not resolvable (yet): every attempt checks again
        pass
    return url


async def check_resolved(url: str, *, allow_private: bool) -> list[str] | None:
    """Before an attempt: every address the host resolves to is public (``UrlRefused``); those
    addresses, for the attempt to connect to in turn (``app.webhooks.sender``: the name cannot
    point elsewhere between this check and the connection), or None when private addresses are
    allowed (the HTTP client resolves the name itself). The name resolved is the one the HTTP
    client sends: for a non-ASCII name its IDNA 2008 form (probe K: Python's own IDNA 2003 codec
    made ``faß`` into ``fass``, another name than the ``xn--fa-hia`` httpx connects to)."""
    if allow_private:
        return None
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii")
    port = target.port or (443 if target.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    for text in addresses:
        address = _ip(text)
        if address is None or not _public(address):
            raise UrlRefused(f"{host} resolves to a non-public address", code="private_address")
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return list(dict.fromkeys(addresses))  # once each (an address per socket type and family)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally: an IP literal, or an IPv4 address in any form the
    C library's resolver takes as one (``127.1``, ``2130706433``, ``0x7f000001``), with one
    trailing dot too (a probe: ``127.0.0.1.``, the same address fully qualified, passed as a
    name that did not resolve yet)."""
    host = host.strip("[]").split("%")[0].removesuffix(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_SIXTOFOUR_RELAY = ipaddress.IPv4Network("192.88.99.0/24")


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]  # the client's address
        if embedded is not None:
            return _public(embedded)
        if address not in _GLOBAL_UNICAST:
            return False
    elif address in _SIXTOFOUR_RELAY:
        return False
    return address.is_global and not address.is_multicast
