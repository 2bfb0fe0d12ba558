"""Rich text from the back office, made safe to put in a consumer page: an allow-list sanitiser.

Brand staff write the brand story (品牌介绍) as HTML; a consumer's phone shows it inside the H5
pages, which carry the member's session cookie. Whatever the staff (or a stolen staff token)
send, what is kept is the allow-list below and nothing else: ammonia (the Rust sanitiser, through
``nh3``) parses the fragment as a browser does (html5ever), drops every other tag — ``script``
and ``style`` with their content —, every other attribute (``on*``, ``style``, ``class``…) and
every URL that is not absolute ``http``/``https`` (``javascript:``, ``data:``, relative and
protocol-relative ones: the story lives on other pages than the one it is written for), and
writes well-formed HTML back. Links get ``rel="noopener noreferrer"``. An ``href`` or ``src`` is
kept only when it starts ``http://`` or ``https://`` (``_absolute``, after the blanks a browser
drops): ammonia checks the scheme only, and ``https:/member/close`` or ``https:evil`` — a
scheme and no ``//`` — is a relative reference to a browser, resolved against the page (a probe).

Pictures: ``img`` with an absolute http(s) ``src`` — the catalogue's own pictures are such URLs
(``image_url``), and the H5 pages' CSP already allows them (``img-src https: http: data:``,
upgraded to https when served over https), so a story picture is no new exposure: with
``Referrer-Policy: no-referrer`` the picture's host learns an address and no page. ``data:`` URLs
are refused (a megabyte of base64 in a phone's page, and an old trick to smuggle markup). One
naming a catalogue medium of this server is the brand's own (``urls`` lists them for
``app.content.story``'s check).

The text is sanitised when it is written (and kept sanitised), and again when a page first
shows a version of it (``app.content.story.public_story`` keeps the result per version): today's
list applies to a story written under an older one. Elements nest at most ``MAX_DEPTH`` deep
(``depth``): html5ever's tree builder is quadratic in nesting (a probe: 22,000 nested ``<ul>``,
88 KB, took 1.4 s to sanitise, on every view), so a deeper story is refused as it is written and
a deeper one kept before that bound is never parsed again. Sanitising runs off the event
loop (``nh3`` lets go of the GIL), a save's a couple at a time (``app.content.story.sanitising``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

TAGS = frozenset(
    {"p", "br", "strong", "em", "b", "i", "u", "h2", "h3", "ul", "ol", "li", "blockquote"}
    | {"a", "img"}
)
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt"}}
URL_SCHEMES = frozenset({"http", "https"})
MAX_DEPTH = 64  # elements inside elements: a story's lists and emphasis need a handful
# elements that have no end tag (HTML's void elements: the allow-list's br and img, and those an
# older list may have kept)
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    | {"param", "track", "wbr"}
)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)")
_TAG_REST = re.compile(r'(?:[^>"]|"[^"]*")*>')  # to the tag's end, past quoted values' ">"

_ABSOLUTE = re.compile(r"https?://", re.I)
_URL_BLANKS = str.maketrans("", "", "\t\n\r")  # a browser drops them anywhere in a URL
_URL_EDGES = "".join(map(chr, range(0x21)))  # and C0 controls and spaces around it


def _absolute(element: str, attribute: str, value: str) -> str | None:
    """``nh3``'s attribute filter: an ``href`` or ``src`` kept only when it is an absolute
    ``http(s)://`` URL to a browser, and kept as the browser requests it — the C0 controls and
    spaces around it and the tabs and newlines in it dropped, as the WHATWG URL parser does —
    so that what ``urls`` lists for the media check is what the browser loads (a review:
    ``src="…/media/catalog/{id} "``, another brand's medium with a space after, passed the check
    and the phone showed it); every other attribute (those allowed) as it is."""
    if attribute not in ("href", "src"):
        return value
    url = value.translate(_URL_BLANKS).strip(_URL_EDGES)
    return url if _ABSOLUTE.match(url) else None


_CLEANER = nh3.Cleaner(
    tags=set(TAGS),
    attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",
    link_rel="noopener noreferrer",
    strip_comments=True,
    attribute_filter=_absolute,
)


def clean(html: str) -> str:
    """``html`` with only the allowed tags, attributes and URLs left, trimmed."""
    return _CLEANER.clean(html).strip()


class _Urls(HTMLParser):
    """The ``img`` ``src`` and ``a`` ``href`` values of sanitised HTML, as a browser reads them
    (character references decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"img": "src", "a": "href"}.get(tag)
        self.found.extend((tag, value) for name, value in attrs if name == wanted and value)


def urls(kept: str) -> list[tuple[str, str]]:
    """(element, URL) of each picture (``img``, its ``src``) and link (``a``, its ``href``) of
    HTML as ``clean`` keeps it, in order: what ``app.content.story`` checks against the
    catalogue's media. One linear pass (no tree is built)."""
    parser = _Urls()
    parser.feed(kept)
    parser.close()
    return parser.found


def depth(html: str, limit: int = MAX_DEPTH) -> int:
    """How deep elements nest in ``html`` as the sanitiser writes it (every element closed,
    text escaped, attribute values in double quotes), in one linear pass: no tree is built.
    Counted up to ``limit + 1`` (deeper is as much too deep); a tag that never ends (no such
    output) counts as too deep: what cannot be measured is not parsed."""
    open_ = deepest = pos = 0
    while (tag := _TAG.search(html, pos)) is not None:
        rest = _TAG_REST.match(html, tag.end())
        if rest is None:
            return limit + 1
        pos = rest.end()
        if tag.group(2).lower() in _VOID:
            continue
        if tag.group(1):
            open_ = max(0, open_ - 1)
        else:
            open_ += 1
            deepest = max(deepest, open_)
            if deepest > limit:
                break
    return deepest
