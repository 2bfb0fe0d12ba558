"""GS1 Digital Link resolver (SPEC I4): ``/01/{gtin}[/10/{lot}][/21/{serial}]`` and ``/00/{sscc}``.

What the GS1-Conformant resolver standard asks, and how it is met here:

- GET, HEAD and OPTIONS, with CORS; HEAD answers the headers of GET without a body (the body is
  dropped once, for every route, by ``app.head``).
- The URI syntax is validated (check digits included, each data attribute of the query against
  its AI's format, dates against the calendar): 400 on a bad URI, never a 200 error page — a
  link cut right after its key (``/01``, ``/00/``) too, and one that names no one item of ours
  (``_check_item``: segments before its key, a dot segment, a serial holding ``/``); a trailing
  slash is tolerated. A CORS preflight is answered before the URI is read.
- The default link is a 307 redirect with an empty body: the verification page when the URI
  names a serial (``/c/{serial}?gtin={gtin}``: the page refuses a unit of another product than
  the URI's GTIN names, as ``POST /v1/verify`` refuses the whole URI), else the product
  information page. ``Link`` lists every link (full GS1 link
  type URIs, a title each) and the linkset.
- ``?linkType=`` picks a link by CURIE (``gs1:pip``) or URI (``https://gs1.org/voc/pip``); an
  unknown type gets the default link. ``linkType=linkset`` (and the older ``all``) or
  ``Accept: application/linkset+json`` (with a q-value above 0 and none higher) answer the
  RFC 9264 linkset.
- Every link is absolute: a catalogue medium of this server (``/media/catalog/{id}``) under
  the public URL, typed by its own media type.
- The request's query string is passed on to the redirect target, less ``linkType``, in the
  target's query (before its fragment).
- ``/.well-known/gs1resolver`` describes the resolver (GET, HEAD and OPTIONS, with CORS).
- A refusal (400 ``invalid_digital_link``, 404 ``unknown_gtin`` / ``no_links``) is the JSON
  error for API clients; a browser, which asks for HTML first (``pages.wants_page``: the
  consumer who scanned a fake pack's QR, or one whose link was cut short), gets a consumer page
  in its language with the same status (``_refused``).

Every absolute URL comes from the settings (``TRACECODE_PUBLIC_SCHEME``,
``TRACECODE_RESOLVER_HOST``), never from the request's ``Host`` header: a forged Host cannot
turn the resolver into a redirector to someone else's site.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from litestar import MediaType, Request, Response, route

from app._core import Gs1Error, parse_digital_link
from app.catalog.schemas import CATALOG_PATH
from app.config import Settings
from app.db import Conn
from app.edge import RESOLVER_CORS, RESOLVER_PREFLIGHT
from app.errors import AppError, NotFound, ValidationFailed
from app.head import GET_HEAD
from app.web import session
from app.web.accept import media_ranges, quality
from app.web.html import own_media
from app.web.i18n import word
from app.web.pages import message_page, wants_page
from app.web.queries import OWNER_LIVE

GS1_VOC = "https://gs1.org/voc/"
# Spellings of the GS1 Web Vocabulary namespace that a link type URI may use.
VOC_PREFIXES = (
    "https://gs1.org/voc/",
    "http://gs1.org/voc/",
    "https://www.gs1.org/voc/",
    "http://www.gs1.org/voc/",
    "https://ref.gs1.org/voc/",
)
LINKSET = "application/linkset+json"
LINKSET_TYPES = ("linkset", "all")  # "all": the name of GS1 Digital Link 1.1
CORS = RESOLVER_CORS  # of every answer (app.edge's: its refusals of a resolver path too)
# ASCII titles for the Link header (header values are Latin-1); the full title goes in title*.
HEADER_TITLES = {
    "gs1:pip": "Product information",
    "gs1:verificationService": "Verify this item",
    "gs1:instructions": "Product video",
}
QUALIFIERS = ("22", "10", "21")  # key qualifiers of a GTIN, in URI order
# The media type of a video elsewhere, by its name's extension (none for another: left out)
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".ogv": "video/ogg",
    ".mov": "video/quicktime",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
}


def _invalid(reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"not a valid GS1 Digital Link URI: {reason}", code="invalid_digital_link", headers=CORS
    )


def _parse(request: Request[Any, Any, Any]) -> dict[str, str]:
    # The path as sent, still percent-encoded: the parser splits it into segments first and
    # decodes each one after (decoded first, a lot "L1%2F21%2FXYZ" became a serial "XYZ").
    raw = request.scope.get("raw_path")
    path = raw.split(b"?", 1)[0].decode("latin-1") if raw else quote(request.url.path, safe="/")
    try:  # (``request.url`` decodes it as UTF-8 and fails: a 500 under a server that passes it)
        query = request.scope.get("query_string", b"").decode()
    except UnicodeDecodeError:
        raise _invalid("the query string is not UTF-8") from None
    try:
        ais = parse_digital_link(path + (f"?{query}" if query else ""))
    except Gs1Error as exc:
        raise _invalid(str(exc)) from None
    _check_item(ais)
    return ais  # type: ignore[no-any-return]


def _check_item(ais: dict[str, str]) -> None:
    """400 for a parsed URI that names no one item of ours: a custom path prefix (the parser takes
    every segment before the last readable ``/01/…`` or ``/00/…`` as one, but the routes are at
    the root: ``/01/{A}/21/{forged}/01/{B}/21/{genuine}`` sent a scanner reading A to B's unit —
    a probe), a key qualifier ``.`` or ``..`` (a dot segment: a browser resolves
    ``/c/..?gtin=…`` off the verification page), a serial holding ``/`` (``/c/A%2FB`` is routed
    as ``/c/A/B``: "no such page"). CSET 82 allows them; no serial of the scheme has one, and a
    lot with ``/`` is only ever escaped in the anchor."""
    if ais["prefix"]:
        raise _invalid("the path must start with its key, /01/ or /00/, and name one item")
    for ai in QUALIFIERS:
        if ais.get(ai) in (".", ".."):
            raise _invalid(f"({ai}) {ais[ai]} is a dot segment")
    if "/" in ais.get("21", ""):
        raise _invalid("no serial holds /")


def _unreadable(
    request: Request[Any, Any, Any], settings: Settings, exc: ValidationFailed
) -> Response[Any]:
    """A Digital Link nobody can read (cut short, a wrong check digit): no verdict."""
    return _refused(request, settings, exc, "unreadable_title", "unreadable", "unreadable")


def _refused(
    request: Request[Any, Any, Any],
    settings: Settings,
    exc: AppError,
    title: str,
    message: str,
    kind: str = "error",
) -> Response[Any]:
    """A refusal: raised, for the app's JSON error, to an API client; to a browser (which asks
    for HTML first) a consumer page in the visitor's language with the same status (``title``
    and ``message``: its words; a probe: a fake pack's QR answered English JSON)."""
    if request.method == "OPTIONS" or not wants_page(request):
        raise exc
    lang, remember = session.language(request, settings)
    path = quote(request.scope["path"], safe="/")  # as ``pages.html_error``
    # the answer depends on Accept (JSON or a page) as well as on the page's language
    headers = {**CORS, "Vary": "Accept, Accept-Language, Cookie"}
    return message_page(lang, remember, path, exc.status, title, word(message, lang), kind, headers)


def link_type(value: str | None) -> str | None:
    """A requested link type as a ``gs1:`` CURIE (``https://gs1.org/voc/pip`` -> ``gs1:pip``)."""
    if value is None:
        return None
    for prefix in VOC_PREFIXES:
        if value.startswith(prefix):
            return "gs1:" + value[len(prefix) :]
    return value


def passed_on(query: str) -> str:
    """The request's query string for the redirect target: all of it except ``linkType`` and
    ``gtin`` (the verification page's is the URI's own GTIN, never one added to the query)."""
    kept = [
        part
        for part in query.split("&")
        if part and unquote_plus(part.split("=", 1)[0]).lower() not in ("linktype", "gtin")
    ]
    return "&".join(kept)


def with_query(href: str, query: str) -> str:
    """``href`` with ``query`` added to its own query, before its fragment (a video's
    ``…/serum.mp4#t=5`` → ``…/serum.mp4?17=271231#t=5``: after the fragment, the data
    attributes never reached the target's server)."""
    if not query:
        return href
    parts = urlsplit(href)
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


def linkset_type(accept: str, wanted: str | None) -> str | None:
    """The media type of the linkset answer, or None for the link's redirect (the q-values
    read: ``request.accept`` takes ``q=0`` for a type accepted). A linkset when ``linkType``
    asks for one, or when ``Accept`` names ``application/linkset+json`` itself with a q-value
    above 0 and below none other (``*/*`` alone, a browser's, is the redirect); as plain JSON
    when the client rates ``application/json`` above the linkset type."""
    ranges = media_ranges(accept)
    linkset_q, rank = quality(ranges, LINKSET)
    if wanted not in LINKSET_TYPES:
        top = max(q for _, _, q in ranges)
        if wanted is not None or rank != 3 or linkset_q <= 0 or linkset_q < top:
            return None
    return MediaType.JSON if quality(ranges, MediaType.JSON)[0] > linkset_q else LINKSET


def canonical_path(ais: dict[str, str]) -> str:
    """The URI path of the identified item: GTIN-14 and its qualifiers in the standard order."""
    path = f"/01/{ais['01']}"
    for ai in QUALIFIERS:
        if ai in ais:
            path += f"/{ai}/{quote(ais[ai], safe='')}"
    return path


def _links(base: str, ais: dict[str, str], product: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The links of one product (and serial), by GS1 link type: an unpublished product's only
    the verification of its serial."""
    gtin = ais["01"]
    links: dict[str, dict[str, str]] = {}
    if product["published"]:
        links["gs1:pip"] = {
            "href": f"{base}/p/{gtin}",
            "title": f"{product['name']} — product information",
            "type": "text/html",
        }
    if "21" in ais:  # the page checks the unit is of the GTIN's product (``wrong_product``)
        links["gs1:verificationService"] = {
            "href": f"{base}/c/{quote(ais['21'], safe='')}?gtin={gtin}",
            "title": "Verify this item (enter the PIN) — 验证真伪",
            "type": "text/html",
        }
    video = product.get("video_url") if product["published"] else None
    if video:
        links["gs1:instructions"] = _video_link(base, video, product)
    return links


def _video_link(base: str, video: str, product: dict[str, Any]) -> dict[str, str]:
    """The product's video: a catalogue medium of this server (``/media/catalog/{id}``) under
    the public URL (a bare path in a linkset leads nowhere: the probe), typed by the medium's
    own media type; one elsewhere typed by its name's extension, or not at all."""
    link = {"href": video, "title": f"{product['name']} — video"}
    if own_media(video):
        link["href"] = base + video
        kind = product.get("video_type")
    else:
        kind = VIDEO_TYPES.get(PurePosixPath(urlsplit(video).path).suffix.lower())
    if kind:
        link["type"] = kind
    return link


def _linkset(anchor: str, links: dict[str, dict[str, str]], default: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"anchor": anchor}
    for curie, link in links.items():
        entry[GS1_VOC + curie.split(":", 1)[1]] = [{**link, "hreflang": ["zh", "en"]}]
    entry[GS1_VOC + "defaultLink"] = [links[default]]
    return {"linkset": [entry]}


def _quoted(value: str) -> str:
    """A Link header parameter value: a quoted string of printable ASCII."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header_url(href: str) -> str:
    """A URL fit for a header: spaces, quotes, angle brackets and non-ASCII percent-encoded."""
    return quote(href, safe=":/?#[]@!$&'()*+,;=%~")


def link_header(anchor: str, links: dict[str, dict[str, str]]) -> str:
    """RFC 8288 ``Link``: every link with its type URI and a title (RFC 8187 ``title*`` for the
    full, non-ASCII title), then the linkset."""
    parts = []
    for curie, link in links.items():
        kind = f"type={_quoted(link['type'])}; " if "type" in link else ""  # known, or none
        parts.append(
            f"<{header_url(link['href'])}>; rel={_quoted(GS1_VOC + curie.split(':', 1)[1])}; "
            f'{kind}hreflang="zh"; hreflang="en"; '
            f"title={_quoted(HEADER_TITLES.get(curie, 'Link'))}; "
            f"title*=UTF-8''{quote(link['title'], safe='')}"
        )
    parts.append(f'<{anchor}?linkType=linkset>; rel="linkset"; type="{LINKSET}"')
    return ", ".join(parts)


# video_type: the media type of the product's video when it is a catalogue medium of this server
# (the CASE keeps any other URL from the uuid cast, and the join on the medium's primary key)
_PRODUCT = f"""SELECT p.id, p.name, p.video_url, p.published AND {OWNER_LIVE} AS published,
                      m.content_type AS video_type
                 FROM products p JOIN orgs o ON o.id = p.org_id
                 LEFT JOIN catalog_media m
                   ON m.id = CASE WHEN p.video_url ~ '^{CATALOG_PATH}$'
                                  THEN substr(p.video_url, {len("/media/catalog/") + 1})::uuid END
                WHERE p.gtin = %s"""


@route(
    ["/01/{rest:path}", "/00/{rest:path}"], http_method=[*GET_HEAD, "OPTIONS"], tags=["resolver"]
)
async def resolve(
    request: Request[Any, Any, Any], rest: str, conn: Conn, settings: Settings
) -> Response[Any]:
    """Resolve a GS1 Digital Link URI to its default link, a chosen link type, or a linkset."""
    if request.method == "OPTIONS":  # before parsing: a bad URI's preflight as an unknown GTIN's
        return _preflight()
    try:
        ais = _parse(request)
    except ValidationFailed as exc:  # a link cut short, a wrong check digit: no verdict
        return _unreadable(request, settings, exc)
    if "00" in ais:
        sscc = NotFound("no public links for logistic units (SSCC)", code="no_links", headers=CORS)
        return _refused(request, settings, sscc, "not_found_title", "err_not_found")
    product = await (await conn.execute(_PRODUCT, (ais["01"],))).fetchone()
    # an unpublished product has no public page, but its units' printed QR still verifies them
    # (a probe: the QR on a genuine unit answered 404 while /c/{serial} verified it); one of a
    # brand (or an organisation above its owner) turned off is as unpublished (a probe: its
    # gs1:pip link still led to its page)
    if product is None or not (product["published"] or "21" in ais):
        unknown = NotFound(f"no product with GTIN {ais['01']}", code="unknown_gtin", headers=CORS)
        if "21" in ais:  # a unit's code naming no product of ours: not a genuine code
            return _refused(
                request, settings, unknown, "not_genuine", "unknown_gtin", "not_genuine"
            )
        return _refused(request, settings, unknown, "not_found_title", "no_product")  # as /p/
    base = settings.public_url  # never the request's Host
    anchor = base + canonical_path(ais)
    links = _links(base, ais, product)
    default = "gs1:verificationService" if "21" in ais else "gs1:pip"
    wanted = link_type(ais.get("linkType") or request.query_params.get("linktype"))
    linkset = linkset_type(request.headers.get("accept", ""), wanted)
    if linkset:
        return Response(_linkset(anchor, links, default), media_type=linkset, headers=CORS)
    link = links.get(wanted or default) or links[default]  # unknown type: the default link
    return Response(
        b"",
        status_code=307,
        media_type=MediaType.TEXT,
        headers={
            **CORS,
            "Location": header_url(with_query(link["href"], passed_on(request.url.query))),
            "Link": link_header(anchor, links),
        },
    )


@route(
    ["/01", "/00"], http_method=[*GET_HEAD, "OPTIONS"], tags=["resolver"], include_in_schema=False
)
async def resolve_cut_short(request: Request[Any, Any, Any], settings: Settings) -> Response[Any]:
    """``/01``, ``/00`` (and ``/01/``): a link cut right after its key, by a chat app or a
    damaged print. Refused as any unreadable Digital Link (a probe: routing's English JSON 404,
    without CORS, reached the consumer's phone); its CORS preflight answered as any other's."""
    if request.method == "OPTIONS":
        return _preflight()
    return _unreadable(request, settings, _invalid("the key has no value"))


def _preflight() -> Response[Any]:
    """A CORS preflight's answer: every origin, the resolver's methods and ``Accept``."""
    return Response(None, status_code=204, headers=RESOLVER_PREFLIGHT)


@route("/.well-known/gs1resolver", http_method="OPTIONS", include_in_schema=False)
async def resolver_description_preflight() -> Response[Any]:
    """The description's CORS preflight (the framework's own OPTIONS had no
    ``Access-Control-Allow-*`` header: a web app's preflighted request was refused)."""
    return _preflight()


@route("/.well-known/gs1resolver", http_method=GET_HEAD, tags=["resolver"])
async def resolver_description(settings: Settings) -> Response[dict[str, Any]]:
    """The resolver description document of the GS1-Conformant resolver standard (1.2.0: the
    primary keys by their AI), with CORS."""
    body = {
        "name": "Tracecode GS1 Digital Link resolver",
        "resolverRoot": settings.public_url,
        "supportedPrimaryKeys": ["01", "00"],
        "supportedLinkType": [
            {"namespace": GS1_VOC, "prefix": "gs1:", "profile": GS1_VOC + "linkTypes"}
        ],
        "linkTypeDefaultCanBeLinkset": False,
        "linkTypes": ["gs1:pip", "gs1:verificationService", "gs1:instructions"],
        "supportedContextValuesEnumerated": [],
        "validatesDigitalLinkSyntax": True,
        "methods": ["GET", "HEAD", "OPTIONS"],
    }
    return Response(body, headers=CORS)
