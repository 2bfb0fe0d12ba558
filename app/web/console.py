"""The office console: the Vue single-page app of ``console/``, served from its build.

``make console`` builds it into ``console/dist`` (``TRACECODE_CONSOLE_DIST`` names another
directory); this module answers ``/console`` and every path below it from there:

* a file of the build (``/console/assets/index-3f2a….js``): the file. Vite puts a hash of the
  content in every asset's name, so assets are cached for a year (``immutable``);
* a missing file, that is a path whose last segment has a file's extension (``/console/x.js``,
  anything under ``/assets/``): a 404, never index.html (a script tag, an icon fetch or a service
  worker must not get HTML with a 200 that caches keep);
* any other path (``/console/users?page=2``): ``index.html`` (the SPA's router, in history mode,
  shows the page), ``no-cache`` so a new build is picked up at once;
* no build yet: a 503 page saying to run ``make console``, never a 500.

Every file carries an ETag (its mtime and size, ``-gz`` for the gzip body), and a request whose
``If-None-Match`` names it is a 304 without a body: revalidating a ``no-cache`` file (index.html,
the staff app's service worker, manifest and icons) costs a round trip, not a download.

Text files (JS, CSS, HTML, SVG, JSON) are sent gzip-compressed to clients that accept it
(``accepts_gzip``, which the H5 pages use too), compressed once per file and process and kept
(the build is a few hundred kB). Every answer carries the console's Content-Security-Policy:
scripts, styles, fonts and API calls from this origin only (Element Plus sets inline styles,
hence ``'unsafe-inline'`` for styles alone), no framing; nothing comes from a CDN.
"""

from __future__ import annotations

import gzip
import mimetypes
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from litestar import Request, Response, get

from app.config import Settings
from app.errors import NotFound

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_DIST = ROOT / "console" / "dist"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for old WebViews, as the pages (a probe)
    "Referrer-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSIBLE = {".js", ".mjs", ".css", ".html", ".svg", ".json", ".map", ".txt"}

MISSING_BUILD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Console not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>The console is not built</h1>
<p>控制台尚未构建。Run <code>make console</code> (or <code>make run</code>) in the Tracecode
checkout to build it into <code>console/dist</code>, then reload this page.</p>
</body></html>
"""

# A file name's extension (``sw.js``, ``icon-144.png``): such a path names a file, never a route.
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,15}$")
# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

# (path, mtime_ns, size) -> gzip-compressed content
_gzipped: dict[tuple[str, int, int], bytes] = {}


def dist_dir(settings: Settings) -> Path:
    """The console build's directory: ``TRACECODE_CONSOLE_DIST`` or ``console/dist``."""
    return Path(settings.console_dist).resolve() if settings.console_dist else DEFAULT_DIST


def _file_in(dist: Path, path: str) -> Path | None:
    """The file ``path`` names inside ``dist``, or None (absent, a directory, or outside)."""
    if not path.strip("/"):
        return None
    try:
        candidate = (dist / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(dist) or not candidate.is_file():
            return None
    except (OSError, ValueError):  # a probe: a name past 255 bytes (ENAMETOOLONG) was a 500
        return None
    return candidate


def _weight(params: str) -> float:
    """The ``q`` of an Accept-Encoding entry's parameters (``; q=0.5``); 1 without one, 0 for
    one that is no qvalue (an entry this cannot read accepts nothing)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            return float(value) if _QVALUE.fullmatch(value) else 0.0
    return 1.0


@lru_cache(maxsize=128)  # browsers send a handful of distinct values
def _gzip_accepted(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (RFC 9110 §12.5.3): a comma list of
    codings with ``;q=`` weights, ``x-gzip`` the same as ``gzip`` (§8.4.1.3); ``q=0`` refuses.
    An entry naming gzip decides over ``*`` (two that disagree: the refusal); neither: no."""
    named: list[float] = []
    anything: list[float] = []
    for entry in accept_encoding.split(","):
        coding, _, params = entry.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            named.append(_weight(params))
        elif coding == "*":
            anything.append(_weight(params))
    weights = named or anything
    return bool(weights) and min(weights) > 0


def accepts_gzip(request: Request[Any, Any, Any]) -> bool:
    """Whether the client accepts a gzip-compressed answer: the one test of everything that
    gzips (these files, the staff app's, the H5 pages of ``app.web.pages``). No header: no."""
    header = request.headers.get("accept-encoding")
    return bool(header) and _gzip_accepted(header)


def names_a_file(path: str) -> bool:
    """Whether ``path``'s last segment has a file's extension (``/sw.js``, ``/icon-144.png``):
    absent from the build, it is a 404, never the SPA's index.html."""
    return _EXTENSION.search(path.rpartition("/")[2]) is not None


def _body(file: Path, stat: os.stat_result, packed: bool) -> bytes:
    """The file's bytes, or (``packed``) gzip-compressed, compressed once per file change."""
    if not packed:
        return file.read_bytes()
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    content = _gzipped.get(key)
    if content is None:
        content = gzip.compress(file.read_bytes(), compresslevel=9, mtime=0)
        _gzipped[key] = content
    return content


def _current(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag``, or is ``*`` (RFC 9110 §13.1.2): a list of entity
    tags compared weakly (``W/"x"`` matches ``"x"``). Ours hold no comma, so a split on commas
    cannot make one out of parts of another."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def _send(file: Path, request: Request[Any, Any, Any], cache: str) -> Response[bytes]:
    """The file with its caching headers and ETag; a 304 without a body when the client's copy
    is current (the file is then not even read)."""
    stat = file.stat()
    packed = file.suffix in COMPRESSIBLE and accepts_gzip(request)
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-gz" if packed else ""}"'
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "Vary": "Accept-Encoding", "ETag": etag}
    if _current(request.headers.get("if-none-match"), etag):
        return Response(b"", status_code=304, headers=headers)
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if media_type in {"application/javascript", "image/svg+xml"}:
        media_type += "; charset=utf-8"  # text/* gets it from Litestar (twice when added here)
    if packed:
        headers["Content-Encoding"] = "gzip"
    return Response(_body(file, stat, packed), media_type=media_type, headers=headers)


@get(["/console", "/console/{path:path}"], include_in_schema=False)
async def console(request: Request[Any, Any, Any], settings: Settings) -> Response[bytes]:
    """A file of the console's build, else its index.html (the SPA's routes), else a 503."""
    dist = dist_dir(settings)
    path = str(request.path_params.get("path", ""))
    index = dist / "index.html"
    if not index.is_file():
        return Response(
            MISSING_BUILD.encode(),
            status_code=503,
            media_type="text/html",  # Litestar adds the charset
            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
        )
    file = _file_in(dist, path)
    if file is not None and file.name != "index.html":
        return _send(file, request, IMMUTABLE if path.startswith("/assets/") else "no-cache")
    if path.startswith("/assets/") or names_a_file(path):
        raise NotFound("no such console file")
    return _send(index, request, "no-cache")


route_handlers = [console]
