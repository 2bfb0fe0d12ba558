"""GS1 Digital Link resolver (SPEC I4): ``/01/{gtin}[/10/{lot}][/21/{serial}]`` and ``/00/{sscc}``.

Answers GET, HEAD and OPTIONS; validates the syntax (check digits included: 400 on a bad URI,
never a 200 error page); redirects (307) to the default link — the verification page when the URI
names a serial, else the product information page; honours ``?linkType=`` for the links a
product has; lists all links as an RFC 9264 linkset for ``?linkType=all`` or
``Accept: application/linkset+json``; tolerates a trailing slash; describes itself at
``/.well-known/gs1resolver``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, route

from app._core import Gs1Error, parse_digital_link
from app.config import Settings
from app.db import Conn
from app.errors import NotFound, ValidationFailed

GS1_VOC = "https://gs1.org/voc/"
LINKSET = "application/linkset+json"
METHODS = "GET, HEAD, OPTIONS"


def _parse(request: Request[Any, Any, Any]) -> dict[str, str]:
    uri = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        ais = parse_digital_link(uri)
    except Gs1Error as exc:
        raise ValidationFailed(
            f"not a valid GS1 Digital Link URI: {exc}", code="invalid_digital_link"
        ) from None
    return ais  # type: ignore[no-any-return]


def _links(base: str, ais: dict[str, str], product: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The links of one product (and serial), by GS1 link type."""
    gtin = ais["01"]
    links = {
        "gs1:pip": {
            "href": f"{base}/p/{gtin}",
            "title": f"{product['name']} — product information",
            "type": "text/html",
        }
    }
    if "21" in ais:
        links["gs1:verificationService"] = {
            "href": f"{base}/c/{quote(ais['21'], safe='')}",
            "title": "Verify this item (enter the PIN) — 验证真伪",
            "type": "text/html",
        }
    if product.get("video_url"):
        links["gs1:instructions"] = {
            "href": product["video_url"],
            "title": f"{product['name']} — video",
            "type": "video/mp4",
        }
    return links


def _linkset(anchor: str, links: dict[str, dict[str, str]], default: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"anchor": anchor}
    for link_type, link in links.items():
        entry[GS1_VOC + link_type.split(":", 1)[1]] = [{**link, "hreflang": ["zh", "en"]}]
    entry[GS1_VOC + "defaultLink"] = [links[default]]
    return {"linkset": [entry]}


@route(
    ["/01/{rest:path}", "/00/{rest:path}"],
    http_method=["GET", "HEAD", "OPTIONS"],
    tags=["resolver"],
    include_in_schema=True,
)
async def resolve(
    request: Request[Any, Any, Any], rest: str, conn: Conn, settings: Settings
) -> Response[Any]:
    """Resolve a GS1 Digital Link URI to its default link, a chosen link type, or a linkset."""
    ais = _parse(request)
    cors = {"Access-Control-Allow-Origin": "*", "Allow": METHODS}
    if request.method == "OPTIONS":
        return Response(
            None,
            status_code=204,
            headers={
                **cors,
                "Access-Control-Allow-Methods": METHODS,
                "Access-Control-Allow-Headers": "Accept",
            },
        )
    if "00" in ais:
        raise NotFound("no public links for logistic units (SSCC)", code="no_links")
    product = await (
        await conn.execute(
            "SELECT id, name, video_url FROM products WHERE gtin = %s AND published",
            (ais["01"],),
        )
    ).fetchone()
    if product is None:
        raise NotFound(f"no product with GTIN {ais['01']}", code="unknown_gtin")
    base = f"{request.url.scheme}://{request.url.netloc}"
    links = _links(base, ais, product)
    default = "gs1:verificationService" if "21" in ais else "gs1:pip"
    wanted = ais.get("linkType") or request.query_params.get("linktype")
    accept = request.headers.get("accept", "")
    if wanted == "all" or (wanted is None and LINKSET in accept):
        anchor = f"https://{settings.resolver_host}{request.url.path.rstrip('/')}"
        return Response(_linkset(anchor, links, default), media_type=LINKSET, headers=cors)
    link = links.get(wanted or default) or links[default]  # unknown type: the default link
    return Response(
        None,
        status_code=307,
        headers={
            **cors,
            "Location": link["href"],
            "Link": f'<{link["href"]}>; rel="{wanted or default}"',
        },
    )


@get("/.well-known/gs1resolver", tags=["resolver"])
async def resolver_description(settings: Settings) -> dict[str, Any]:
    """The resolver description document of the GS1-Conformant resolver standard."""
    root = f"https://{settings.resolver_host}"
    return {
        "name": "Tracecode GS1 Digital Link resolver",
        "resolverRoot": root,
        "supportedPrimaryKeys": ["gtin", "sscc"],
        "supportedLinkType": [
            {"namespace": GS1_VOC, "prefix": "gs1:", "profile": GS1_VOC + "linkTypes"}
        ],
        "linkTypeDefaultCanBeLinkset": False,
        "linkTypes": ["gs1:pip", "gs1:verificationService", "gs1:instructions"],
        "supportedContextValuesEnumerated": [],
        "validatesDigitalLinkSyntax": True,
        "methods": ["GET", "HEAD", "OPTIONS"],
    }
