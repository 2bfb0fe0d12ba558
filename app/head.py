"""HEAD requests: wherever GET answers, HEAD answers with the same status and headers, no body.

Two parts:

* ``HeadForGet``, a route plugin (Litestar's ``ReceiveRoutePlugin``), gives every HTTP route with
  a GET handler a HEAD entry as the app registers the route, before the routing table is built:
  a copy of the registered GET handler that answers HEAD and stays out of the OpenAPI document.
  HEAD then runs the GET handler's function once, with its guards, dependencies and error
  handlers, so it answers exactly what GET would — 401, 403 and 404 included. Nothing is added
  to a request's path: the routing table just has one more method per route (``/v1/verify``, a
  raw ASGI route, is not an HTTP route and is left alone). A GET handler with a side effect asks
  ``request.method`` and skips it for HEAD (``/c/{serial}`` records no verification, an export
  file's HEAD is no download and not audited).
* The request layer in front of the app (``app.front.Tracecode``) drops the body of every HEAD
  answer — errors included, also routing's own 404 and 405 — and keeps the headers,
  ``Content-Length`` too (RFC 9110 9.3.2). Litestar itself would send the body.

A handler declared with ``http_method=GET_HEAD`` (the public resolver and ``/health``) is the
same handler for both methods, and lists HEAD in the OpenAPI document too; other routes answer
HEAD without documenting it there.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import copy

from litestar import MediaType, Response
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.types import Method, Scope

GET_HEAD: list[Method] = ["GET", "HEAD"]


class HeadForGet(ReceiveRoutePlugin):
    """Route plugin: each route's GET handler answers HEAD too (unless it has a HEAD handler)."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        get = route.route_handler_map.get("GET")
        if get is None or "HEAD" in route.route_handler_map:
            return
        handler, parameters = get
        # The registered GET handler as it is (guards, dependencies, error handlers resolved),
        # only answering HEAD and left out of the OpenAPI document (an operation of its own
        # there would need another operation id).
        head = copy(handler)
        head.http_methods = {"HEAD"}
        head.include_in_schema = False
        head._resolved_include_in_schema = False  # resolved (True) when GET was registered
        route.route_handler_map["HEAD"] = (head, parameters)
        route.methods.add("HEAD")  # the Allow header of a 405 and of OPTIONS lists it
        options = route.route_handler_map.get("OPTIONS")
        if options is not None and options[0].handler_name == "options_handler":
            # Litestar's own OPTIONS handler lists the methods of the route it was made for; a
            # domain Router made it for its route, before HEAD was added here: list this one's.
            allow = copy(options[0])
            allow(_allow(route))  # the handler's call replaces its function (sync, as Litestar's)
            route.route_handler_map["OPTIONS"] = (allow, options[1])


def _allow(route: HTTPRoute) -> Callable[[Scope], Response[None]]:
    """Litestar's OPTIONS answer (204, ``Allow``) with the methods of ``route`` as they are now."""

    def options_handler(scope: Scope) -> Response[None]:
        allow = ", ".join(sorted(route.methods))
        return Response(None, status_code=204, headers={"Allow": allow}, media_type=MediaType.TEXT)

    return options_handler
