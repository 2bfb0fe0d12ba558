"""The staff mobile app (issue 18): the Vue + Vant PWA of ``console/`` (its second entry,
``console/vite.mobile.config.ts``), built by ``make console`` into ``console/dist/m`` (below
``TRACECODE_CONSOLE_DIST`` when set) and served at ``/m`` the way ``app.web.console`` serves the
console:

* ``/m``: a redirect to ``/m/`` (the service worker's scope is ``/m/``: it controls only pages
  below it, and the app must start offline from its home screen icon);
* a file of the build: hashed assets cached for a year; ``sw.js`` (the service worker, which caches
  the app shell), ``manifest.webmanifest`` and the icons ``no-cache``, so a new build is picked up;
* any other path below ``/m/``: ``index.html`` (the SPA's router shows the page); a missing
  file (a name with an extension: ``/m/registerSW.js``, an old icon) is a 404;
* every file an ETag, and a 304 when ``If-None-Match`` names it (``console._send``);
* no build yet: a 503 page saying to run ``make console``.

Answers carry the console's Content-Security-Policy (everything from this origin, nothing from a
CDN) with one addition, fonts from ``data:`` URLs (Vant's icon font is inlined into its CSS; the
build drops its CDN fallback), and a Permissions-Policy that lets this origin use the camera
(scanning) and the position (inspections), nothing else.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.status_codes import HTTP_302_FOUND

from app.config import Settings
from app.errors import NotFound
from app.web import console

mimetypes.add_type("application/manifest+json", ".webmanifest")

CSP = console.CSP.replace("default-src 'self';", "default-src 'self'; font-src 'self' data:;", 1)
HEADERS = {
    **console.SECURITY_HEADERS,
    "Content-Security-Policy": CSP,
    "Permissions-Policy": "camera=(self), geolocation=(self), microphone=()",
}

MISSING_BUILD = console.MISSING_BUILD.replace("Console not built", "Mobile app not built").replace(
    "The console is not built", "The staff mobile app is not built"
)


def mobile_dir(settings: Settings) -> Path:
    """The mobile app's build: ``m/`` in the console's build directory."""
    return console.dist_dir(settings) / "m"


def _send(file: Path, request: Request[Any, Any, Any], cache: str) -> Response[bytes]:
    response = console._send(file, request, cache)
    response.headers.update(HEADERS)
    return response


@get(["/m", "/m/{path:path}"], include_in_schema=False)
async def mobile(request: Request[Any, Any, Any], settings: Settings) -> Response[Any]:
    """A file of the mobile app's build, else its index.html (the SPA's routes), else a 503."""
    if request.scope.get("raw_path", b"").split(b"?")[0] == b"/m":
        query = request.url.query
        return Response(
            b"",
            status_code=HTTP_302_FOUND,
            headers={**HEADERS, "Location": "/m/" + (f"?{query}" if query else "")},
        )
    dist = mobile_dir(settings)
    path = str(request.path_params.get("path", ""))
    index = dist / "index.html"
    if not index.is_file():
        return Response(
            MISSING_BUILD,
            status_code=503,
            media_type="text/html",  # Litestar adds the charset
            headers={**HEADERS, "Cache-Control": "no-store"},
        )
    file = console._file_in(dist.resolve(), path)
    if file is not None and file.name != "index.html":
        hashed = path.startswith("/assets/")
        return _send(file, request, console.IMMUTABLE if hashed else "no-cache")
    if path.startswith("/assets/") or console.names_a_file(path):
        raise NotFound("no such mobile app file")
    return _send(index, request, "no-cache")


route_handlers = [mobile]
