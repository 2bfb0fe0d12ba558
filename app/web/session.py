"""The member's session on the consumer pages: the token cookie, CSRF tokens and claim tickets.

Cookies. ``tc_member`` holds the member token of ``POST /members/login``'s kind (the API stays
Bearer; only the pages read the cookie): HttpOnly (no script reads it), Secure when the page is
served over https (the request's scheme or ``TRACECODE_PUBLIC_SCHEME``), SameSite=Lax, path ``/``.
Lax, not Strict: a consumer arrives from a QR scan or a chat link, a cross-site top-level
navigation, and Strict would hide the session on that first GET (signed in, yet shown signed out).
Every cookie of the pages is built by ``cookie`` (the clerk's with their ``/clerk`` path), the
language switch's ``tc_lang`` too (``language``): a probe found it the one cookie without
``Secure`` over https.

CSRF. Lax still sends the cookie on some cross-site requests (top-level GETs; POSTs in old
browsers and from sibling subdomains, which count as same-site), so every form post of these pages
carries a token and is refused without it (403): the signed double-submit pattern. A random
``tc_csrf`` cookie (HttpOnly, Lax) is set with the first form; the form's hidden ``csrf`` field is
HMAC-SHA256(``Settings.subkey("h5-csrf")``, that cookie). A cross-site page can neither read the
cookie nor compute the HMAC without the key. A post is refused when it comes from another host:
its ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site`` (the pages' forms post to their own
paths, so their posts are ``same-origin``; a sibling host's post is none of theirs), or its
``Origin`` names another host: neither the request's ``Host`` nor the public one
(``Settings.resolver_host``; a probe: behind a TLS proxy that passes its upstream's address as
``Host``, nginx's default, every post of a real browser was refused). An opaque ``Origin: null``
alone passes: the pages' own posts send it under their ``no-referrer`` policy. A hostile page
sends it too (its own ``no-referrer``, a sandboxed frame: a probe spent wrong PINs so), but a
browser then says ``Sec-Fetch-Site: cross-site``; only a browser too old to send that header
cannot be told from the pages' own.
There a sibling subdomain that can set cookies for this host could plant a cookie whose token it
fetched itself (the server answers any cookie's token) and post from a sandboxed frame (a probe):
serve the pages from a host with no untrusted sibling subdomains. The sign-in forms carry the
token too (login CSRF would sign a victim into the attacker's membership and credit the victim's
claims to it). GET pages change nothing.

Claim tickets. The verification answer offers "claim the points" for the code just proved with its
PIN; the form carries a ticket, not the PIN: serial, PIN, brand, a nonce (the claim's client id:
pressing twice is one claim) and an expiry, sealed with AES-GCM under ``subkey("h5-claim")``.
The answer page's draw link carries one too. Signed out, either is carried through the sign-in
pages as their ``claim`` (``member_pages``): the ticket as it is for the points claim, behind
``DRAW`` for the draw form, which the sign-in then leads back to (``draw_return``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
from litestar import Request
from litestar.datastructures import Cookie

from app import sealing
from app.config import Settings
from app.db import Conn
from app.errors import AppError, Forbidden
from app.members.principal import Member, member_from_token
from app.verify.record import CHECK_RETRY_SECONDS
from app.web.i18n import COOKIE as LANG_COOKIE
from app.web.i18n import Lang, choose

MEMBER_COOKIE = "tc_member"
CSRF_COOKIE = "tc_csrf"
BRAND_COOKIE = "tc_brand"  # the brand of the last sign-in: where "sign in" leads once signed out
# seconds: long enough to sign up between the PIN and the claim, and as long as the answer
# page's check holds (``record.CHECK_RETRY_SECONDS``): a claim made, or sent again, with a
# ticket is never counted as another check of the code (a probe: past the check's ten minutes,
# a 30-minute ticket's claim counted again)
TICKET_TTL = CHECK_RETRY_SECONDS
LANG_AGE = 365 * 86400  # seconds a language chosen by the switch is remembered
_CLAIM = "h5-claim"  # the claim tickets' subkey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secure(request: Request[Any, Any, Any], settings: Settings) -> bool:
    """Whether the visitor talks https to us (then every cookie is Secure). The scope's scheme,
    not ``request.url``'s: building that URL parses the Host header, which can fail."""
    return request.scope.get("scheme") == "https" or settings.public_scheme == "https"


def cookie(
    request: Request[Any, Any, Any],
    settings: Settings,
    key: str,
    value: str,
    max_age: int,
    path: str = "/",
) -> Cookie:
    """A cookie of the pages: HttpOnly, SameSite=Lax, Secure over https (``secure``)."""
    return Cookie(
        key=key,
        value=value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=secure(request, settings),
        samesite="lax",
    )


def expired(request: Request[Any, Any, Any], settings: Settings, key: str) -> Cookie:
    """A cookie that removes ``key`` from the browser."""
    return cookie(request, settings, key, "", 0)


def remembered(request: Request[Any, Any, Any], settings: Settings, lang: Lang) -> Cookie:
    """The ``tc_lang`` cookie that keeps ``lang`` (the language switch)."""
    return cookie(request, settings, LANG_COOKIE, lang, LANG_AGE)


def language(
    request: Request[Any, Any, Any], settings: Settings, override: str | None = None
) -> tuple[Lang, Cookie | None]:
    """The page's language (``i18n.choose``) and, when the visitor chose it now, the cookie that
    remembers it (for ``pages.respond``)."""
    lang, chosen = choose(request, override)
    return lang, remembered(request, settings, lang) if chosen else None


# -- the member ------------------------------------------------------------------------------


async def member_of(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Member | None:
    """The member whose token is in the cookie; None when absent, expired, revoked or forged."""
    token = request.cookies.get(MEMBER_COOKIE)
    if not token:
        return None
    try:
        return await member_from_token(conn, settings, token)
    except AppError:
        return None
    except Exception:  # a malformed token string: as good as none
        return None


# -- CSRF ------------------------------------------------------------------------------------


def _form_token(settings: Settings, cookie_value: str) -> str:
    mac = hmac.digest(settings.subkey("h5-csrf"), cookie_value.encode(), hashlib.sha256)
    return _b64(mac)


def csrf(request: Request[Any, Any, Any], settings: Settings) -> tuple[str, Cookie | None]:
    """The form token for this visitor and the cookie to set (None: it has one already)."""
    current = request.cookies.get(CSRF_COOKIE) or ""
    if len(current) >= 32:
        return _form_token(settings, current), None
    fresh = _b64(secrets.token_bytes(32))
    return _form_token(settings, fresh), cookie(request, settings, CSRF_COOKIE, fresh, 30 * 86400)


FOREIGN_SITES = frozenset({"cross-site", "same-site"})  # ``Sec-Fetch-Site`` of another host
_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_origin(request: Request[Any, Any, Any], settings: Settings) -> None:
    """403 ``csrf_failed`` when the post comes from another host: its ``Sec-Fetch-Site`` says so
    (``cross-site``; ``same-site``, a sibling host: the pages post only to themselves), or its
    ``Origin`` names one — a ``host[:port]`` that is neither the request's ``Host`` nor the
    public one (``settings.resolver_host``; a probe: behind a TLS proxy that sends its upstream
    as ``Host`` every browser's post was refused). An opaque ``null`` Origin (the pages' own
    posts under ``no-referrer``) passes unless ``Sec-Fetch-Site`` says another site sent it (a
    probe: a hostile page under ``no-referrer`` sends ``null`` too); no ``Sec-Fetch-Site`` (an
    old browser) passes."""
    if request.headers.get("sec-fetch-site", "").strip().lower() in FOREIGN_SITES:
        raise Forbidden("this form was sent from another site", code="csrf_failed")
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return
    scheme = urlsplit(origin).scheme
    site = _site(scheme, origin.partition("://")[2])
    host = _site(scheme, request.headers.get("host", ""))
    if site[0] is None or site not in (host, _site(scheme, settings.resolver_host)):
        raise Forbidden("this form was sent from another site", code="csrf_failed")


def _site(scheme: str, netloc: str) -> tuple[str | None, int | None]:
    """(host in lower case, port) of ``netloc``, the scheme's default port filled in: a browser's
    Origin leaves out a default port and writes its host in lower case, the setting and a
    ``Host`` header may not (a probe: ``TRACECODE_RESOLVER_HOST=id.example:443`` or with
    capitals refused every post behind a proxy). (None, None) when it is no host[:port]."""
    try:
        parts = urlsplit(f"//{netloc}")
        if parts.path or parts.query or parts.fragment or parts.username is not None:
            return None, None
        return parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None, None


def check_csrf(request: Request[Any, Any, Any], settings: Settings, posted: str) -> None:
    """403 ``csrf_failed`` unless the post carries this visitor's token and comes from here."""
    check_origin(request, settings)
    current = request.cookies.get(CSRF_COOKIE) or ""
    expected = _form_token(settings, current) if len(current) >= 32 else ""
    if not expected or not hmac.compare_digest(expected.encode(), posted.encode()):
        raise Forbidden("the form has expired: open the page again", code="csrf_failed")


# -- claim tickets ---------------------------------------------------------------------------


class Ticket(msgspec.Struct, frozen=True):
    serial: str
    pin: str
    brand_id: int
    nonce: str
    expires: int

    @property
    def client_id(self) -> str:
        return f"h5-{self.nonce}"


def seal(settings: Settings, purpose: str, value: Any) -> str:
    """``value`` as JSON, sealed under ``purpose`` (``app.sealing.encrypt``): base64url
    (unpadded) of nonce + ciphertext + tag, for a cookie or a form field (a claim ticket, a
    clerk's, the WeChat openid waiting to be bound)."""
    return _b64(sealing.encrypt(settings, purpose, json.dumps(value).encode()))


def unseal(settings: Settings, purpose: str, text: str) -> Any:
    """What ``seal`` sealed under ``purpose``; None when ``text`` is not one of ours (forged,
    cut, sealed for another purpose or under another master key)."""
    try:
        return json.loads(sealing.decrypt(settings, purpose, _unb64(text)))
    except (ValueError, TypeError):
        return None


def issue_ticket(
    settings: Settings, serial: str, pin: str, brand_id: int, check: str | None = None
) -> str:
    """A sealed claim ticket; its nonce is the answer page's ``check`` (``pages.PAGE_CHECK``),
    whose verification the claim then does not count again, or a fresh one."""
    claim = check or secrets.token_hex(8)
    return seal(settings, _CLAIM, [serial, pin, brand_id, claim, int(time.time()) + TICKET_TTL])


def open_ticket(settings: Settings, text: str) -> Ticket | None:
    """The ticket's claim, or None when it is not one of ours or has expired."""
    try:
        serial, pin, brand_id, client, expires = unseal(settings, _CLAIM, text)
        ticket = Ticket(str(serial), str(pin), int(brand_id), str(client), int(expires))
    except (ValueError, TypeError, KeyError):
        return None
    return ticket if ticket.expires > time.time() else None


DRAW = "draw."  # a sign-in's ``claim`` so prefixed carries a draw link's ticket (base64url: no .)


def carried_ticket(settings: Settings, claim: str) -> Ticket | None:
    """The ticket a sign-in's ``claim`` carries: the points claim's, or the draw's (``DRAW``)."""
    return open_ticket(settings, claim.removeprefix(DRAW)) if claim else None


def draw_return(settings: Settings, claim: str, lang: Lang) -> str | None:
    """Where a sign-in carrying a draw (``claim`` ``DRAW`` + ticket) leads: the draw form of the
    ticket's unit, with the ticket — a same-site path built here, not one taken from the request;
    its ticket expired or forged, the form asking for the code and PIN. None: no draw carried."""
    if not claim.startswith(DRAW):
        return None
    text = claim.removeprefix(DRAW)
    ticket = open_ticket(settings, text)
    if ticket is None:
        return f"/member/draw?lang={lang}"
    serial, sealed = quote(ticket.serial, safe=""), quote(text, safe="")
    return f"/member/draw?serial={serial}&lang={lang}&ticket={sealed}"
