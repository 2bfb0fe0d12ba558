"""The OpenAPI document and its pages: Swagger UI served from the package, the real errors.

* ``/schema`` and ``/schema/swagger``: Swagger UI from the ``swagger-ui-bundle-v2`` package (its
  files are those of npm's ``swagger-ui-dist``), served under ``/schema/assets/``; nothing loads
  from a CDN, and the pages carry a strict CSP, ``nosniff`` and ``no-referrer`` like the consumer
  pages. There is no Scalar page: no package ships its assets, and a CDN is not an option.
* ``document_errors``: every 4xx and 5xx answer is ``{"error": {"code", "message", "details"}}``
  (the ``Error`` component; under ``/epcis/`` the ``EpcisProblem`` that extends it with the RFC
  7807 fields), those written by hand (``/v1/verify``, the claims) included, and each
  operation lists the codes it can answer, worked out once from its handler (authenticated, ids in
  the path, a body, a mutation) instead of by hand on each route; the tables below add what a
  handler does not show (a replay's 200, a queued job's 202, a rate limit, the photo store, a
  body or query parameters the handler reads itself, codes streamed as text or a file).
  README's "Error codes" names every ``code`` (tests/test_apidocs.py keeps it so).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from litestar import Litestar, Request, Response, Router, get
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import OpenAPI, SecurityScheme
from litestar.routes import HTTPRoute

from app.epcis import routes as epcis_routes
from app.web.resolver import LINKSET

SCHEMA_PATH = "/schema"
ASSETS = f"{SCHEMA_PATH}/assets"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=CSP),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
]

# Swagger UI's own start-up, as a file (no inline script under the CSP): the document from this
# server, no call to the public validator, no "explore" box to load other documents.
INIT_JS = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{SCHEMA_PATH}/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  }});
}});
"""

_FILES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


@cache
def _asset(name: str) -> bytes:
    from swagger_ui_bundle import swagger_ui_path

    return (swagger_ui_path / name).read_bytes()


@get("/assets/{name:str}", include_in_schema=False, sync_to_thread=False)
def swagger_asset(name: str) -> Response[bytes]:
    """The Swagger UI files (cached by browsers for a day) and its start-up script."""
    if name == "init.js":
        content, media = INIT_JS.encode(), "application/javascript"
    elif name in _FILES:
        content, media = _asset(name), _FILES[name]
    else:
        raise NotFoundException(f"no asset {name}")
    return Response(content, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI on a page of its own: scripts and styles from ``/schema/assets`` only."""

    def __init__(self) -> None:
        super().__init__(path="/swagger", favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="robots" content="noindex">'
            f'<title>Tracecode API</title><link rel="icon" href="{ASSETS}/favicon-32x32.png">'
            f'<link rel="stylesheet" href="{ASSETS}/swagger-ui.css"></head>'
            '<body><div id="swagger-ui"></div>'
            f'<script src="{ASSETS}/swagger-ui-bundle.js"></script>'
            f'<script src="{ASSETS}/init.js"></script></body></html>'
        ).encode()


def _not_found_as_json(response: Response[Any]) -> Response[Any]:
    """An unknown page under ``/schema`` is the JSON 404 of every other unknown path (a probe:
    Litestar's schema router answered ``/schema/redoc`` with an HTML page)."""
    if response.status_code == 404:
        raise NotFoundException
    return response


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Tracecode API",
        version=version,
        path=SCHEMA_PATH,
        render_plugins=[SwaggerPage()],
        openapi_router=Router(
            SCHEMA_PATH,
            route_handlers=[swagger_asset],
            include_in_schema=False,
            response_headers=SECURITY_HEADERS,
            after_request=_not_found_as_json,
        ),
    )


# --- the real errors in the document ---------------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'Every error: {"error": {"code", "message", "details"}}; `code` is stable.',
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "examples": ["validation_failed"]},
                "message": {"type": "string"},
                "details": {"description": "what is wrong, per field or item; may be null"},
            },
        }
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
# An EPCIS error (app/epcis/routes.py: problem_body): the project's error with the RFC 7807
# fields the GS1 REST binding asks for beside it, as application/problem+json.
EPCIS_PROBLEM_SCHEMA: dict[str, Any] = {
    "description": "An EPCIS error: the `Error` with the RFC 7807 fields beside it; branch on "
    "`type`.",
    "allOf": [ERROR_REF],
    "type": "object",
    "required": ["error", "type", "title", "status", "detail"],
    "properties": {
        "type": {
            "type": "string",
            "description": "the binding's exception",
            "examples": ["epcisException:ResourceAlreadyExistsException"],
        },
        "title": {"type": "string", "description": "the code in words"},
        "status": {"type": "integer", "description": "the HTTP status"},
        "detail": {"type": "string", "description": "what is wrong (the error's message)"},
    },
}
EPCIS_PROBLEM_REF = {"$ref": "#/components/schemas/EpcisProblem"}
PROBLEM = epcis_routes.PROBLEM  # the media type of every EPCIS error

_WHY = {
    "400": "malformed request: bad JSON, a value of the wrong type or out of range, a control "
    "character (`invalid_character`), JSON nested too deep (`too_deep`)",
    "401": "no or an invalid token or API key",
    "403": "a permission is missing",
    "404": "not found, or not visible to the caller",
    "406": "the Accept header names no media type this operation answers in",
    "409": "conflicts with the current state",
    "413": "the request body is too large",
    "415": "the body is not of a media type this operation reads",
    "416": "the `Range` starts past the file's end (`range_not_satisfiable`)",
    "422": "well-formed but breaks a rule",
    "429": "too many requests; see Retry-After",
    "502": "the photo store (S3) refused the request (`media_store_failed`); retry later",
    "503": "a store (PostgreSQL or Redis) is unavailable; retry shortly",
}

# Operations that answer an extra success status: a replay of the same request (idempotent by a
# client-chosen key) answers the existing record with 200 instead of 201.
REPLAYS = {
    ("/orders", "post"): "the same erp_no and content again: the existing order",
    ("/inspections", "post"): "the same client_id again: the first scan (`replayed`)",
    ("/batches", "post"): "the same client request id again: the existing batch",
    ("/case-batches", "post"): "the same client request id again: the existing batch",
    ("/members/me/claims", "post"): "the same client_id again: the first claim",
    ("/members/me/redemptions", "post"): "the same client_id again: the first redemption",
    ("/points/adjustments", "post"): "the same client_id again: the first entry",
    ("/field/checkins", "post"): "the same client_id again: the first check-in (`replayed`)",
    ("/field/reviews", "post"): "the same client_id again: the first review (`replayed`)",
    ("/allocations", "post"): "the same client_id and request again: the same codes",
    ("/sales", "post"): "the same client_id again: the first sale",
    ("/sms/campaigns", "post"): "the same client_id again: the first campaign",
    ("/chain/anchors", "post"): "the head is anchored already: its anchor",
}
# Operations that may hand their work to a job: 202 with the job and its Location to poll (the
# export's 201 is an export run at once; EPCIS capture is always 202, applied already when small).
QUEUED = {
    ("/batches/{batch_no}/exports", "post"): "a large export, queued: poll Location",
    ("/case-batches/{batch_id}/exports", "post"): "a large export, queued: poll Location",
    ("/epcis/capture", "post"): "the capture job (done already when small): poll Location",
}
_LOCATION = {"Location": {"description": "the job to poll", "schema": {"type": "string"}}}
# Operations that answer a 500 of their own code (beside any fault's ``internal_error``): an
# export run at once whose files cannot be written (app/codes/routes.py ``_start``).
SERVER_ERRORS = {
    ("/batches/{batch_no}/exports", "post"): "the export could not be written (`export_failed`)",
    ("/case-batches/{batch_id}/exports", "post"): "the export could not be written "
    "(`export_failed`)",
}
# Operations whose body the handler reads itself, so Litestar shows none: the media types each
# reads, with the body's schema. (The ERP imports document theirs: app/erp/routes.py.)
_BINARY = {"type": "string", "format": "binary"}
_CSV = {"type": "string", "description": "the CSV file: UTF-8 or GB18030, a header row"}
UPLOADS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("/media/photos", "post"): dict.fromkeys(("image/jpeg", "image/png", "image/webp"), _BINARY),
    ("/orders/import", "post"): {"text/csv": _CSV},
    ("/epcis/capture", "post"): dict.fromkeys(
        epcis_routes.MEDIA_TYPES, epcis_routes.DOCUMENT_SCHEMA
    ),
    ("/epcis/events", "post"): dict.fromkeys(epcis_routes.MEDIA_TYPES, epcis_routes.EVENT_SCHEMA),
}
# Operations whose query parameters the handler reads itself (Litestar shows none).
QUERIES = {("/epcis/events", "get"): epcis_routes.QUERY_PARAMETERS}
# Operations that answer 406 to an Accept naming none of the media types they answer in.
NEGOTIATED = {("/epcis/events", "get"), ("/epcis/events/{event_id}", "get")}
# Operations that stream codes instead of JSON (app/codes/routes.py: _codes): SERIAL,PIN lines,
# or a TCPF1 file for an allocation of format=file; with the allocation in headers.
_CODES_SENT = {
    "text/plain": {
        "schema": {"type": "string", "description": "SERIAL or SERIAL,PIN lines (US-ASCII)"}
    },
    "application/octet-stream": {
        "schema": {**_BINARY, "description": "a TCPF1 file (format=file), sealed for its key"}
    },
}
_ALLOCATION_HEADERS = {
    name: {"description": why, "schema": {"type": "string"}}
    for name, why in (
        ("X-Allocation-Id", "the allocation"),
        ("X-Allocation-Count", "how many codes it holds"),
        ("X-Allocation-Replayed", "true for the answer to a retry (the first codes)"),
        ("Location", "the allocation: GET /allocations/{id}"),
    )
}
STREAMED = {
    ("/allocations", "post"): (_CODES_SENT, _ALLOCATION_HEADERS),
    ("/allocations/{allocation_id}/codes", "get"): (_CODES_SENT, _ALLOCATION_HEADERS),
}
# File downloads that resume (app/byteranges.py): one span of a `Range` is 206.
_FILE = {"application/octet-stream": {"schema": _BINARY}}
_FILE_HEADERS = {
    name: {"description": why, "schema": {"type": "string"}}
    for name, why in (
        ("Accept-Ranges", "bytes"),
        ("ETag", "the file's version, for If-Range"),
        ("Content-Length", "the bytes sent"),
    )
}
RANGED = {
    ("/exports/{export_id}/files/{part}", "get"),
    ("/exports/{export_id}/files/{part}", "head"),
}
# Answers that are not errors but not the generated 200 either.
STATUS_PAGES = {("/health", "get"), ("/health", "head")}  # 503 with the same body: a store is down
RESOLVER = {"/01/{rest}", "/00/{rest}"}  # GS1 Digital Link: 307 to a link, 200 linkset, 204 CORS
# Operations limited per client (429), besides /v1/verify which documents itself.
RATE_LIMITED = {
    ("/auth/login", "post"),
    ("/members/otp", "post"),
    ("/members/login", "post"),
    ("/members/me/claims", "post"),  # the verification's rate limit and PIN lockout
    ("/redemptions/check", "post"),  # unknown codes per staff account (code guessing)
    ("/redemptions/fulfil", "post"),
    ("/members", "get"),  # whole-number phone searches finding none, per masked staff account
    ("/auth/password", "post"),  # wrong current passwords, under the log-in limits (login_locked)
    ("/media/photos", "post"),  # bytes per user in 24 hours (photo_quota)
}
# Operations on the photo store (app/media/s3.py): 502 when it refuses (`media_store_failed`).
PHOTO_STORE = {("/media/photos", "post"), ("/media/photos/{photo_id}", "get")}
# Sign-in operations without a caller: a code or credentials (401), a brand looked up (404).
SIGN_IN = {("/members/login", "post"): {"401"}, ("/members/otp", "post"): {"404"}}
# Operations on the caller's one record that may not exist, with no input to name it: 404.
ONE_RECORD = {("/wechat/account", "delete")}  # no account set (`wechat_not_configured`)
# Called by the SMS gateway, signed with a shared secret instead of a token (app/sms/routes.py).
SIGNED = {
    "/sms/callbacks/{provider}",
    "/sms/callbacks/{provider}/replies",
}
_SIGNED_WHY = {
    "401": "a missing, wrong or stale signature (`invalid_signature`)",
    "403": "no callback secret is configured (`callbacks_disabled`)",
}
_MUTATING = {"post", "put", "patch", "delete"}
_STORES = {"conn", "redis", "state", "principal", "member", "verifier"}


def _error(code: str) -> dict[str, Any]:
    return {"description": _WHY[code], "content": {"application/json": {"schema": ERROR_REF}}}


def _handlers(app: Litestar) -> Iterable[tuple[str, str, Any]]:
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    yield route.path_format, method.lower(), handler


def _codes(path: str, method: str, op: dict[str, Any], params: set[str]) -> set[str]:
    codes = {"400"}
    if path.startswith("/auth/"):  # credentials or tokens in the body
        codes.add("401")
    inputs = bool(op.get("parameters")) or "requestBody" in op or "data" in params
    codes |= SIGN_IN.get((path, method), set())
    if "principal" in params or "member" in params:  # a staff or a member token
        codes |= {"401", "403"}
        if inputs or "{" in path or (path, method) in ONE_RECORD:
            codes.add("404")
        if method in _MUTATING:
            codes.add("409")
    elif "{" in path:
        codes.add("404")
    if inputs:
        codes.add("422")
    if "requestBody" in op or method in _MUTATING:  # a body is read, or refused, on every change
        codes |= {"413", "415"}
    if (path, method) in NEGOTIATED:
        codes.add("406")
    if (path, method) in RATE_LIMITED:
        codes.add("429")
    if (path, method) in PHOTO_STORE:
        codes.add("502")
    if params & _STORES:
        codes.add("503")
    return codes


def _file_formats(op: dict[str, Any]) -> None:
    """``?format=csv|xlsx`` answers a file: its media types next to the JSON page."""
    formats: set[str] = set()
    for param in op.get("parameters", []):
        if param.get("name") == "format" and param.get("in") == "query":
            schema = param.get("schema") or {}
            for option in [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]:
                formats.update(option.get("enum", []))
    content = op.get("responses", {}).get("200", {}).get("content")
    if content is None:
        return
    if "csv" in formats:
        content["text/csv"] = {"schema": {"type": "string", "description": "UTF-8 CSV"}}
    if "xlsx" in formats:
        content["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"] = {
            "schema": {"type": "string", "format": "binary"}
        }


def _raw_input(path: str, method: str, op: dict[str, Any]) -> None:
    """The raw request body (``UPLOADS``) and the query parameters (``QUERIES``) a handler
    reads itself, which Litestar cannot see."""
    types = UPLOADS.get((path, method))
    if types:
        content = {media: {"schema": schema} for media, schema in types.items()}
        op["requestBody"] = {"required": True, "content": content}
    parameters = QUERIES.get((path, method))
    if parameters:
        op["parameters"] = [*op.get("parameters", []), *parameters]


def _streamed(path: str, method: str, responses: dict[str, Any]) -> None:
    """The codes an allocation streams (``STREAMED``): text or a file, never JSON."""
    streamed = STREAMED.get((path, method))
    if streamed:
        content, headers = streamed
        for status, response in responses.items():
            if status[0] == "2":
                response["content"] = dict(content)
                response["headers"] = {**response.get("headers", {}), **headers}


def _ranged(path: str, method: str, responses: dict[str, Any]) -> None:
    """A file, whole (200) or the span a ``Range`` asks for (206); 416 past its end."""
    if (path, method) not in RANGED:
        return
    responses["200"] = {"description": "the file", "content": _FILE, "headers": _FILE_HEADERS}
    responses["206"] = {
        "description": "the span one `Range` asks for (`If-Range`: while the ETag is the same)",
        "content": _FILE,
        "headers": {
            **_FILE_HEADERS,
            "Content-Range": {"description": "bytes first-last/size", "schema": {"type": "string"}},
        },
    }
    responses["416"] = _error("416")


def _special(path: str, method: str, responses: dict[str, Any]) -> None:
    if path in SIGNED:
        for status, why in _SIGNED_WHY.items():
            responses[status] = {**_error(status), "description": why}
    if (path, method) in STATUS_PAGES and "200" in responses:
        responses["503"] = {**responses["200"], "description": "a store is down (see checks)"}
    if path in RESOLVER:
        if method == "options":
            responses["204"] = {"description": "CORS preflight: the methods and headers allowed"}
            responses.pop("200", None)
            return
        responses["307"] = {
            "description": "the default link, or the one `linkType` asks for: Location, and a "
            "Link header naming every link and the linkset",
            "headers": {"Location": {"schema": {"type": "string"}}},
        }
        content = responses.setdefault("200", {"description": "the linkset"}).setdefault(
            "content", {}
        )
        schema = {"type": "object", "description": "RFC 9264 linkset"}
        content.clear()
        content[LINKSET] = {"schema": schema}
        content["application/json"] = {"schema": schema}
        responses["200"]["description"] = "the linkset (`linkType=linkset` or Accept)"


def document_errors(app: Litestar, openapi: OpenAPI) -> None:
    """Rewrite the generated document so that it says what the API really answers."""
    schemas: dict[str, Any] = openapi.components.schemas  # type: ignore[assignment]
    schemas["Error"] = ERROR_SCHEMA  # type: ignore[assignment]
    schemas["EpcisProblem"] = EPCIS_PROBLEM_SCHEMA  # type: ignore[assignment]
    openapi.components.security_schemes = {  # Swagger UI's "Authorize": a token or an API key
        "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
        "apiKey": SecurityScheme(type="apiKey", security_scheme_in="header", name="X-API-Key"),
    }
    paths: dict[str, Any] = openapi.paths if openapi.paths is not None else {}
    handlers = {(p, m): h for p, m, h in _handlers(app)}
    for path, item in paths.items():
        item_ops = item if isinstance(item, dict) else item.to_schema()
        for method, op in list(item_ops.items()):
            if not isinstance(op, dict) or "responses" not in op:
                continue
            handler = handlers.get((path, method))
            params = set(handler.parsed_fn_signature.parameters) if handler else set()
            responses = op["responses"]
            for status in list(responses):  # the generated ones and those written by hand
                if status[0] in "45" and status in _WHY:
                    responses[status] = _error(status)
            if "principal" in params:
                op["security"] = [{"bearer": []}, {"apiKey": []}]
            elif "member" in params:  # a member token (POST /members/login)
                op["security"] = [{"bearer": []}]
            for status in _codes(path, method, op, params):
                responses.setdefault(status, _error(status))
            replay = REPLAYS.get((path, method))
            if replay and "201" in responses:
                responses["200"] = {**responses["201"], "description": replay}
            failed = SERVER_ERRORS.get((path, method))
            if failed:
                error = {"application/json": {"schema": ERROR_REF}}
                responses["500"] = {"description": failed, "content": error}
            queued = QUEUED.get((path, method))
            if queued:
                answer = responses.get("202") or responses["201"]
                headers = {**answer.get("headers", {}), **_LOCATION}
                responses["202"] = {**answer, "description": queued, "headers": headers}
            _file_formats(op)
            _streamed(path, method, responses)
            _ranged(path, method, responses)
            _raw_input(path, method, op)
            _special(path, method, responses)
            if path.startswith("/epcis/"):  # app.epcis.routes: every error as problem+json
                for status, response in responses.items():
                    if status[0] in "45" and "application/json" in response.get("content", {}):
                        response["content"] = {PROBLEM: {"schema": EPCIS_PROBLEM_REF}}
        paths[path] = item_ops
    openapi.paths = paths
