"""Endpoint URLs partners may subscribe, checked when subscribed and before every attempt.

Refused with 400 and a stable code: a scheme other than http/https or a URL without a host
(``invalid_url``), credentials in the URL (``url_credentials``, secrets belong in the signing
secret, not in a URL that is shown and logged), a fragment (``invalid_url``), control characters
and, anywhere in it, characters that show as nothing — format characters (``app.textguard``'s
``FORMAT``: U+200B…, but the joiners U+200C/U+200D in a host name where IDNA2008 allows them)
and blanks but the ASCII ones (``SPACES``: U+00A0, U+3000…) — with ``invalid_character`` (a
probe: ``/hook\\u200b`` was subscribed, shown as ``/hook``, and the sender's client
percent-encoded it: every delivery went to ``/hook%E2%80%8B``), and — unless
``TRACECODE_WEBHOOK_ALLOW_PRIVATE`` is set — a host that is, or resolves to, a loopback,
private, link-local, multicast, reserved or unspecified address
(``private_address``): Tracecode must not be made to call into its own network. A name is
resolved when it is subscribed (a name that does not resolve yet, or not within
``RESOLVE_SECONDS``, is accepted: its endpoint may not be live yet) and its addresses are checked
again before every attempt (a name may change what it points to), and the attempt connects to
an address so checked, not to whatever the name resolves to a moment later (DNS rebinding).

A public address: IPv4 that ``ipaddress`` calls global; IPv6 in global unicast (``2000::/3``)
that it calls global, or an IPv4 address carried in IPv6 (mapped, NAT64 ``64:ff9b::/96``, 6to4,
Teredo) that is itself public. Everything else — the IPv4-compatible ``::/96``, local-use NAT64,
site-local ``fec0::/10``, the 6to4 relay anycast ``192.88.99.0/24``, the IETF protocol
assignments ``192.0.0.0/24`` but for the global ``192.0.0.9`` and ``192.0.0.10``, the IPv6
documentation range ``3fff::/20`` — is refused.

Names are resolved in threads of their own (``RESOLVER_THREADS``), not in the event loop's
default executor, and an attempt's brand has at most its share of them (``check_resolved``): a
look-up that never ends keeps its thread after its attempt has timed out, until the C library
gives up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import idna

from app.errors import BadRequest
from app.textguard import FORMAT, SPACES, InvalidCharacter, check_text


class UrlRefused(BadRequest):
    """An endpoint URL that may not be called; ``code`` says why."""


# what shows as nothing in a URL: a format character, a blank but the ASCII ones (an ASCII
# space inside it is ``invalid_url``, as before; blanks around it are stripped)
_UNSEEN = re.compile(rf"(?![\x00-\x7f])[{FORMAT}{SPACES}]")
_JOINERS = "\u200c\u200d"  # ZWNJ, ZWJ: letters of a host name where IDNA2008's CONTEXTJ allows
_DOTS = re.compile("[.\u3002\uff0e\uff61]")  # what IDNA takes for a label's end


def _refuse_unseen(url: str) -> None:
    """``InvalidCharacter`` for the first character of ``_UNSEEN`` in ``url`` but a joiner in
    the host that IDNA2008 allows there (CONTEXTJ, RFC 5892 A.1/A.2: after a virama, or ZWNJ
    between letters that join — a review: Persian's ``https://می\u200cخواهم.ir/hook`` was
    400). The HTTP client sends such a name as its IDNA form, which the joiner is part of; a
    joiner anywhere else, an ASCII label's too, shows as nothing and is refused as before."""
    start, end = _host_span(url)
    for unseen in _UNSEEN.finditer(url):
        at = unseen.start()
        if start <= at < end and unseen.group() in _JOINERS:
            before = _DOTS.split(url[start:at])[-1]
            label = before + _DOTS.split(url[at:end])[0]
            try:
                if idna.valid_contextj(label, len(before)):
                    continue
            except (ValueError, idna.IDNAError):  # a neighbour without a joining type
                pass
        char = f"U+{ord(unseen.group()):04X}"
        raise InvalidCharacter(
            f"url: an invisible character ({char})",
            details=[{"field": "url", "message": f"invisible character {char}", "source": "body"}],
        )


def _host_span(url: str) -> tuple[int, int]:
    """Where the host of ``url`` is in it (not its user information or port), (0, 0) when it
    has none or is no URL."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return 0, 0
    start = url.find("//") + 2
    if not netloc or url[start : start + len(netloc)] != netloc:
        return 0, 0
    host = netloc.rpartition("@")[2]
    start += len(netloc) - len(host)
    return start, start + len(host.partition(":")[0])


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, normalised only by stripping surrounding blanks, or ``UrlRefused``."""
    check_text(url, "url", "body")
    url = url.strip()
    _refuse_unseen(url)
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

# The look-ups' own threads (a probe: in the event loop's default executor, min(32, CPUs + 4)
# threads shared by every brand, and by the database and Redis drivers, one brand's names whose
# name servers never answer held every thread, and every other brand's attempts timed out).
# Above any WEBHOOK_CONCURRENCY (app/config.py: 256 at most), so that with each brand held to
# its share of the slots the others find threads; made only as look-ups need them.
RESOLVER_THREADS = 512
_RESOLVER = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="webhook-resolve")
_running: Counter[int] = Counter()  # look-ups in the threads per brand, stuck ones too
_running_lock = threading.Lock()  # ``_running`` is also changed from the threads


async def check_subscribed(url: str, *, allow_private: bool) -> str:
    """``check_url``, then the addresses the name resolves to now, if it resolves (in
    ``_RESOLVER``'s threads, not counted for a brand: one that waits too long is accepted)."""
    url = check_url(url, allow_private=allow_private)
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            await check_resolved(url, allow_private=allow_private)
    except (OSError, TimeoutError):  # not resolvable (yet): every attempt checks again
        pass
    return url


async def check_resolved(
    url: str, *, allow_private: bool, brand: int | None = None, share: int = 1
) -> list[str] | None:
    """Before an attempt: every address the host resolves to is public (``UrlRefused``); those
    addresses, for the attempt to connect to in turn (``app.webhooks.sender``: the name cannot
    point elsewhere between this check and the connection), or None when private addresses are
    allowed (the HTTP client resolves the name itself). The name resolved is the one the HTTP
    client sends: for a non-ASCII name its IDNA 2008 form (probe K: Python's own IDNA 2003 codec
    made ``faß`` into ``fass``, another name than the ``xn--fa-hia`` httpx connects to). An
    attempt for ``brand`` resolves only while the brand has fewer than ``share`` look-ups
    running (``_resolve``)."""
    if allow_private:
        return None
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii")
    port = target.port or (443 if target.scheme == "https" else 80)
    infos = await _resolve(host, port, brand, share)
    addresses = [str(info[4][0]) for info in infos]
    for text in addresses:
        address = _ip(text)
        if address is None or not _public(address):
            raise UrlRefused(f"{host} resolves to a non-public address", code="private_address")
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return list(dict.fromkeys(addresses))  # once each (an address per socket type and family)


async def _resolve(host: str, port: int, brand: int | None, share: int) -> list[Any]:
    """``socket.getaddrinfo`` in one of ``_RESOLVER``'s threads. For ``brand`` (None: not
    counted), ``OSError`` at once when it has ``share`` look-ups running already, counting those
    whose attempts have timed out: a brand whose names never answer holds ``share`` threads at
    most, and the others keep getting threads."""
    if brand is not None:
        with _running_lock:
            if _running[brand] >= share:
                raise OSError(f"{share} look-ups of this brand's names are still running")
            _running[brand] += 1
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    if brand is not None:  # when the thread ends, or when cancelled before it started
        future.add_done_callback(lambda _: _release(brand))
    return await asyncio.wrap_future(future)


def _release(brand: int) -> None:
    with _running_lock:
        _running[brand] -= 1
        if not _running[brand]:
            del _running[brand]


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
# IETF protocol assignments (RFC 6890), global only for these two: Python before 3.11.10 and
# 3.12.4 (CVE-2024-4032) calls most of the range global (a probe: 192.0.0.8 was subscribed)
_PROTOCOL_ASSIGNMENTS = ipaddress.IPv4Network("192.0.0.0/24")
_GLOBAL_ASSIGNMENTS = (ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10"))
_DOCUMENTATION_V6 = ipaddress.IPv6Network("3fff::/20")  # RFC 9637, unknown to ipaddress here


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]  # the client's address
        if embedded is not None:
            return _public(embedded)
        if address not in _GLOBAL_UNICAST or address in _DOCUMENTATION_V6:
            return False
    elif address in _SIXTOFOUR_RELAY or (
        address in _PROTOCOL_ASSIGNMENTS and address not in _GLOBAL_ASSIGNMENTS
    ):
        return False
    return address.is_global and not address.is_multicast
