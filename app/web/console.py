"""The office console: the Vue single-page app of ``console/``, served from its build.

``make console`` builds it into ``console/dist`` (``TRACECODE_CONSOLE_DIST`` names another
directory); this module answers ``/console`` and every path below it from there:

* a file of the build (``/console/assets/index-3f2a….js``): the file. Vite puts a hash of the
  content in every asset's name, so assets are cached for a year (``immutable``); a missing
  asset is a 404, never index.html (a script tag must not get HTML);
* any other path (``/console/users?page=2``): ``index.html`` (the SPA's router, in history mode,
  shows the page), ``no-cache`` so a new build is picked up at once;
* no build yet: a 503 page saying to run ``make console``, never a 500.

Text files (JS, CSS, HTML, SVG, JSON) are sent gzip-compressed to clients that accept it,
compressed once per file and process and kept (the build is a few hundred kB). Every answer
carries the console's Content-Security-Policy: scripts, styles, fonts and API calls from this
origin only (Element Plus sets inline styles, hence ``'unsafe-inline'`` for styles alone), no
framing; nothing comes from a CDN.
"""

from __future__ import annotations

import gzip
import mimetypes
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


def _accepts_gzip(request: Request[Any, Any, Any]) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def _body(file: Path, gzip_ok: bool) -> tuple[bytes, bool]:
    """The file's bytes, gzip-compressed (from the cache) when that pays and the client may."""
    if not gzip_ok or file.suffix not in COMPRESSIBLE:
        return file.read_bytes(), False
    stat = file.stat()
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    packed = _gzipped.get(key)
    if packed is None:
        packed = gzip.compress(file.read_bytes(), compresslevel=9, mtime=0)
        _gzipped[key] = packed
    return packed, True


def _send(file: Path, request: Request[Any, Any, Any], cache: str) -> Response[bytes]:
    content, packed = _body(file, _accepts_gzip(request))
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if media_type in {"application/javascript", "image/svg+xml"}:
        media_type += "; charset=utf-8"  # text/* gets it from Litestar (twice when added here)
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "Vary": "Accept-Encoding"}
    if packed:
        headers["Content-Encoding"] = "gzip"
    return Response(content, media_type=media_type, headers=headers)


@get(["/console", "/console/{path:path}"], include_in_schema=False)
async def console(request: Request[Any, Any, Any], settings: Settings) -> Response[bytes]:
    """A file of the console's build, else its index.html (the SPA's routes), else a 503."""
    dist = dist_dir(settings)
    path = str(request.path_params.get("path", ""))
    index = dist / "index.html"
    if not index.is_file():
        return Response(
            MISSING_BUILD,
            status_code=503,
            media_type="text/html",  # Litestar adds the charset
            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
        )
    file = _file_in(dist, path)
    if file is not None and file.name != "index.html":
        return _send(file, request, IMMUTABLE if path.startswith("/assets/") else "no-cache")
    if path.startswith("/assets/"):
        raise NotFound("no such console asset")
    return _send(index, request, "no-cache")


route_handlers = [console]
