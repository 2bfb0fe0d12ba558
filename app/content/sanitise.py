"""Rich text from the back office, made safe to put in a consumer page: an allow-list sanitiser.

Brand staff write the brand story (品牌介绍) as HTML; a consumer's phone shows it inside the H5
pages, which carry the member's session cookie. Whatever the staff (or a stolen staff token)
send, what is kept is the allow-list below and nothing else: ammonia (the Rust sanitiser, through
``nh3``) parses the fragment as a browser does (html5ever), drops every other tag — ``script``
and ``style`` with their content —, every other attribute (``on*``, ``style``, ``class``…) and
every URL that is not absolute ``http``/``https`` (``javascript:``, ``data:``, relative and
protocol-relative ones: the story lives on other pages than the one it is written for), and
writes well-formed HTML back. Links get ``rel="noopener noreferrer"``.

Pictures: ``img`` with an absolute http(s) ``src`` — the catalogue's own pictures are such URLs
(``image_url``), and the H5 pages' CSP already allows them (``img-src https: http: data:``,
upgraded to https when served over https), so a story picture is no new exposure: with
``Referrer-Policy: no-referrer`` the picture's host learns an address and no page. ``data:`` URLs
are refused (a megabyte of base64 in a phone's page, and an old trick to smuggle markup).

The text is sanitised when it is written (and kept sanitised), and again when a page shows it:
the second pass costs microseconds and applies today's list to a story written under an older
one.
"""

from __future__ import annotations

import nh3

TAGS = frozenset(
    {"p", "br", "strong", "em", "b", "i", "u", "h2", "h3", "ul", "ol", "li", "blockquote"}
    | {"a", "img"}
)
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt"}}
URL_SCHEMES = frozenset({"http", "https"})

_CLEANER = nh3.Cleaner(
    tags=set(TAGS),
    attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",
    link_rel="noopener noreferrer",
    strip_comments=True,
)


def clean(html: str) -> str:
    """``html`` with only the allowed tags, attributes and URLs left, trimmed."""
    return _CLEANER.clean(html).strip()
