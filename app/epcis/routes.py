"""HTTP face of EPCIS 2.0 (the GS1 REST binding's capture and events resources).

Errors are the project's JSON error (``{"error": {...}}``) with the RFC 7807 fields the binding
asks for beside it (``type`` = ``epcisException:…``, ``title``, ``status``, ``detail``), sent as
``application/problem+json``. That holds for every error of these routes, the project's own
(401 and 403 ``SecurityException``, 404 ``NoSuchResourceException``, 415, 429, …) included:
``as_problem`` dresses the project's answer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote, unquote

import msgspec
from litestar import Controller, Request, Response, Router, get, post

from app import errors, jobs
from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.config import Settings
from app.csvread import read_body
from app.db import Conn
from app.edge import MAX_JSON_DEPTH, is_utf8, json_depth_ok, media_of
from app.epcis import capture
from app.epcis.document import DocumentError, parse_document
from app.epcis.hashing import event_hash
from app.epcis.identifiers import event_key
from app.epcis.query import CONTEXT, QueryError, parse_query
from app.epcis.search import one_event, search
from app.errors import NotAcceptable, NotFound, UnsupportedMediaType, error_body
from app.paging import Page, PageNo, PerPage

MEDIA_TYPES = ("application/json", "application/ld+json")
_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
PROBLEM = "application/problem+json"

# -- the OpenAPI document: what the handlers read themselves (app/apidocs.py: UPLOADS, QUERIES) --

_EVENT_TYPES = (
    "ObjectEvent, AggregationEvent, TransactionEvent, TransformationEvent or AssociationEvent"
)
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": f"One EPCIS 2.0 event (JSON-LD): {_EVENT_TYPES}, or an extension type "
    "that is a URI; its fields as the standard's JSON schema names them.",
    "required": ["type"],
    "properties": {
        "@context": {"description": "the event's own context: a URI, an object, or a list"},
        "type": {"type": "string", "examples": ["ObjectEvent"]},
        "eventID": {"type": "string", "description": "urn:uuid:…; else the CBV event hash"},
        "eventTime": {"type": "string", "format": "date-time"},
        "eventTimeZoneOffset": {"type": "string", "examples": ["+08:00"]},
    },
    "additionalProperties": True,
}
DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An EPCIS 2.0 EPCISDocument (JSON-LD): its events in epcisBody.eventList.",
    "required": ["@context", "type", "schemaVersion", "creationDate", "epcisBody"],
    "properties": {
        "@context": {"description": "the EPCIS 2.0 context URI, or a list with it"},
        "type": {"type": "string", "enum": ["EPCISDocument"]},
        "schemaVersion": {"type": "string", "examples": ["2.0"]},
        "creationDate": {"type": "string", "format": "date-time"},
        "epcisBody": {
            "type": "object",
            "required": ["eventList"],
            "properties": {"eventList": {"type": "array", "items": EVENT_SCHEMA}},
        },
    },
    "additionalProperties": True,
}


def _parameter(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_SEVERAL = "; several values separated by `|` (or the parameter repeated) match any of them"
_TIME = {"type": "string", "format": "date-time"}
# ``query_events`` reads ``request.query_params`` itself (``parse_query``), so Litestar lists
# none; ``EQ_bizTransaction_{type}`` is a family of names, which the operation's description
# names (OpenAPI lists parameters by their names only).
QUERY_PARAMETERS = [
    _parameter("eventType", f"{_EVENT_TYPES}{_SEVERAL}"),
    _parameter("GE_eventTime", "events at or after this time (with a zone)", **_TIME),
    _parameter("LT_eventTime", "events before this time (with a zone)", **_TIME),
    _parameter("GE_recordTime", "events recorded at or after this time", **_TIME),
    _parameter("LT_recordTime", "events recorded before this time", **_TIME),
    _parameter("EQ_action", f"ADD, OBSERVE or DELETE{_SEVERAL}"),
    _parameter("EQ_bizStep", f"a CBV business step, as a word or a URI{_SEVERAL}"),
    _parameter("EQ_disposition", f"a CBV disposition, as a word or a URI{_SEVERAL}"),
    _parameter("EQ_readPoint", f"a read point's identifier{_SEVERAL}"),
    _parameter("EQ_bizLocation", f"a business location's identifier{_SEVERAL}"),
    _parameter("MATCH_epc", f"an EPC of the event (a URN, a Digital Link, a pattern){_SEVERAL}"),
    _parameter("MATCH_parentID", f"the event's parentID (a URN or a Digital Link){_SEVERAL}"),
    _parameter("MATCH_anyEPC", f"an EPC, a child or the parentID of the event{_SEVERAL}"),
    _parameter(
        "EXISTS_errorDeclaration",
        "only events declared erroneous (no value, or `true`)",
        type="string",
        enum=["", "true"],
    ),
    _parameter(
        "GE_errorDeclarationTime", "events declared erroneous at or after this time", **_TIME
    ),
    _parameter("LT_errorDeclarationTime", "events declared erroneous before this time", **_TIME),
    _parameter("EQ_errorReason", f"an error declaration's CBV reason, a word or a URI{_SEVERAL}"),
    _parameter("EQ_correctiveEventID", f"an error declaration's corrective event{_SEVERAL}"),
    _parameter("perPage", "events per page", type="integer", minimum=1, maximum=1000, default=30),
    _parameter("nextPageToken", "the next page, from the previous page's Link header"),
]
QUERY_DESCRIPTION = (
    "The matching events the caller may see, as an EPCISQueryDocument; the next page in "
    '`Link: <…>; rel="next"`. Besides the parameters listed, the family '
    "`EQ_bizTransaction_{type}`: `EQ_bizTransaction_po=…` matches events with a business "
    "transaction of type `po` (a CBV word or a URI) and that id. Several values of a parameter "
    "with `|`; another parameter is 400 `epcisException:QueryParameterException`."
)


def problem(
    status: int,
    kind: str,
    code: str,
    detail: str,
    extra: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        problem_body(status, kind, code, detail, extra),
        status_code=status,
        media_type=PROBLEM,
        headers={**_HEADERS, **(headers or {})},
    )


def problem_body(
    status: int, kind: str, code: str, detail: str, extra: Any = None
) -> dict[str, Any]:
    """The project's error body with the binding's problem+json fields beside it."""
    body = error_body(code, detail, extra)
    body.update(
        type=f"epcisException:{kind}", title=code.replace("_", " "), status=status, detail=detail
    )
    return body


def edge_refusal(
    method: str, status: int, error: dict[str, Any]
) -> tuple[dict[str, Any], str, dict[str, str]]:
    """An error the request layer answers under ``/epcis`` before a route is found (``app.front``:
    a control character in the path or query, a path or method no route has) as the binding
    answers errors: body, media type and headers. ``error``: the project's error object."""
    kind = _kind(status, method in ("GET", "HEAD"))
    body = problem_body(status, kind, error["code"], error["message"], error["details"])
    return body, PROBLEM, _HEADERS


# The binding's exception per status; 400 and 413 depend on the resource (capture or query).
_KINDS = {
    401: "SecurityException",
    403: "SecurityException",
    404: "NoSuchResourceException",
    406: "NotAcceptableException",
    409: "ResourceAlreadyExistsException",
    415: "UnsupportedMediaTypeException",
}


def as_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Any other error of an EPCIS route: the project's answer to it, as problem+json."""
    handler = next(
        errors.exception_handlers[c] for c in type(exc).__mro__ if c in errors.exception_handlers
    )
    plain: Response[Any] = handler(request, exc)
    # app.errors' handlers answer through its _response, which always sets a status
    status, error = cast(int, plain.status_code), plain.content["error"]
    kind = _kind(status, request.method in ("GET", "HEAD"))
    return problem(status, kind, error["code"], error["message"], error["details"], plain.headers)


_ANSWERED_AS = {"*/*", "application/*", *MEDIA_TYPES}


def _acceptable(request: Request[Any, Any, Any]) -> None:
    """406 ``NotAcceptableException`` when an ``Accept`` header names no media type a query is
    answered in (JSON-LD, JSON, or a wildcard), as the binding answers it (a probe: a client
    asking for XML only got 200 and a JSON-LD body)."""
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return
    for part in accept.split(","):
        media, *params = part.split(";")
        weight = next((p.strip()[2:] for p in params if p.strip().lower().startswith("q=")), "1")
        try:
            wanted = float(weight) > 0
        except ValueError:
            wanted = True  # a weight that is no number: as if none were given
        if wanted and media.strip().lower() in _ANSWERED_AS:
            return
    raise NotAcceptable(
        "events are answered as application/ld+json (or application/json)",
        details={"accept": accept[:200], "available": list(MEDIA_TYPES)},
    )


def _kind(status: int, querying: bool) -> str:
    """The binding's exception for an error status (400 and 413: of a query or a capture)."""
    if status == 400:
        return "QueryParameterException" if querying else "ValidationException"
    if status == 413:
        return "QueryTooLargeException" if querying else "CaptureLimitExceededException"
    return _KINDS.get(status, "ImplementationException" if status >= 500 else "EPCISException")


def handle_document_error(_: Request[Any, Any, Any], exc: DocumentError) -> Response[Any]:
    kind = exc.type.removeprefix("epcisException:")
    code = "epcis_capture_limit" if exc.status == 413 else "epcis_validation"
    return problem(exc.status, kind, code, exc.detail, {"title": exc.title})


def handle_query_error(_: Request[Any, Any, Any], exc: QueryError) -> Response[Any]:
    return problem(400, "QueryParameterException", "epcis_query_parameter", exc.detail)


async def _body(request: Request[Any, Any, Any]) -> bytes:
    media, charset = media_of(request.headers.get("content-type", ""))
    if media not in MEDIA_TYPES or not is_utf8(charset):
        raise UnsupportedMediaType(
            "send the EPCIS document as application/json or application/ld+json, in UTF-8",
            details={"accepted": list(MEDIA_TYPES)},
        )
    return await read_body(request.stream(), capture.MAX_BYTES)


class CaptureController(Controller):
    """``POST /epcis/capture`` an EPCISDocument (permission ``epcis.capture``); poll the job."""

    path = "/epcis/capture"

    @post(
        "/",
        status_code=202,
        request_max_body_size=capture.MAX_BYTES + 1024,
        opt={"permission": ("epcis.capture",)},  # before the body (app.deps.caller_first)
    )
    async def capture_document(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
        settings: Settings,
    ) -> Response[capture.CaptureOut]:
        """Capture a document, all or nothing, idempotent by eventID. 202 with the job
        (``Location``); a document of up to ``TRACECODE_EPCIS_INLINE_EVENTS`` events is applied
        before the answer. 400 ``epcisException:ValidationException`` (problem+json) for a
        document the standard refuses, 413 for too many events."""
        job = await capture.accept(conn, principal, await _body(request))
        await conn.commit()  # the job exists before anyone runs it
        if job.events <= settings.epcis_inline_events:
            await capture.run(conn, scheme, job.captureID)
            job = await capture.get(conn, principal, uuid.UUID(job.captureID))
        else:
            # workers/epcis.py; a job the broker cannot take now is sent by app.ops.orphans
            await jobs.hand_over("capture_job", job.captureID)
        location = f"/epcis/capture/{job.captureID}"
        return Response(job, status_code=202, headers={"Location": location, **_HEADERS})

    @get("/")
    async def list_captures(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[capture.CaptureOut]:
        """The capture jobs of the caller's subtree, newest first."""
        return await capture.list_jobs(conn, principal, page, per_page)

    @get("/{capture_id:uuid}")
    async def get_capture(
        self, capture_id: uuid.UUID, conn: Conn, principal: Principal
    ) -> capture.CaptureOut:
        """A capture job: ``running``, then ``success`` or the ``errors`` that refused it."""
        return await capture.get(conn, principal, capture_id)


class EventController(Controller):
    """``GET /epcis/events`` (the standard's query parameters) and one event by eventID, read
    from the read replica when there is one (app/replica.py); ``POST /epcis/events`` captures a
    single event."""

    path = "/epcis/events"

    @get("/", media_type="application/ld+json", description=QUERY_DESCRIPTION)
    async def query_events(
        self,
        request: Request[Any, Any, Any],
        read_conn: Conn,
        principal: Principal,
        scheme: Scheme,
        settings: Settings,
    ) -> Response[dict[str, Any]]:
        """An EPCISQueryDocument of the matching events the caller may see; the next page's
        link in ``Link: <…>; rel="next"``. Parameters: eventType, GE_/LT_eventTime,
        GE_/LT_recordTime, EQ_action, EQ_bizStep, EQ_disposition, EQ_readPoint,
        EQ_bizLocation, MATCH_epc, MATCH_parentID, MATCH_anyEPC, EQ_bizTransaction_{type},
        perPage (1–1000, default 30), nextPageToken; several values with ``|``. 400
        ``epcisException:QueryParameterException`` for others; 406 for an ``Accept`` of
        neither JSON-LD nor JSON. The token is bound to the query: given with other parameters
        (``perPage`` aside), 400."""
        if _raw_tail(request) is not None:  # /epcis/events/%2F, /epcis/events//: the router
            # normalises them to this path (a probe: eventID "/" answered every event)
            raise NotFound("no such event", code="epcis_event_not_found")
        _acceptable(request)
        params = [(k, v) for k, vs in request.query_params.dict().items() for v in vs]
        q = parse_query(params)
        page = await search(read_conn, principal, scheme, settings, q)
        headers = dict(_HEADERS)
        if page.next_token:
            kept = [(k, v) for k, v in params if k != "nextPageToken"]
            pairs = [*kept, ("nextPageToken", page.next_token)]
            query = "&".join(f"{_q(k)}={_q(v)}" for k, v in pairs)
            headers["Link"] = f'</epcis/events?{query}>; rel="next"'
        return Response(page.document, media_type="application/ld+json", headers=headers)

    @post("/", status_code=201, request_max_body_size=1024 * 1024)
    async def capture_event(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
    ) -> Response[Any]:
        """Capture one event (201, ``Location`` of the event); 409 when its eventID exists."""
        document = _as_document(await _body(request))
        if isinstance(document, str):
            return problem(400, "ValidationException", "epcis_validation", document)
        job = await capture.accept(conn, principal, msgspec.json.encode(document))
        await conn.commit()
        await capture.run(conn, scheme, job.captureID)
        done = await capture.get(conn, principal, uuid.UUID(job.captureID))
        if done.errors:  # with the failure's own type and status (a probe: a 403 was a 400)
            errors = done.errors
            status = int(errors.get("status") or 400)
            kind = str(errors.get("type") or "").removeprefix("epcisException:")
            if status == 503:  # concurrent captures of the same codes (capture.Contended)
                return problem(503, kind, "retry", errors["detail"], errors, {"Retry-After": "1"})
            if not kind or not 400 <= status < 500:  # a record PostgreSQL refused: its data
                status, kind = 400, "ValidationException"
            code = str(errors.get("title") or "") if status in (401, 403) else ""
            return problem(status, kind, code or "epcis_validation", errors["detail"], errors)
        if not done.stored:
            return problem(
                409,
                "ResourceAlreadyExistsException",
                "epcis_event_exists",
                "an event with this eventID exists",
            )
        event_id = await _event_id(conn, job.captureID, document)
        return Response(
            {"eventID": event_id},
            status_code=201,
            headers={"Location": f"/epcis/events/{_q(event_id)}", **_HEADERS},
        )

    @get("/{event_id:path}", media_type="application/ld+json")
    async def get_event(
        self,
        event_id: str,
        request: Request[Any, Any, Any],
        read_conn: Conn,
        principal: Principal,
        scheme: Scheme,
        settings: Settings,
    ) -> Response[dict[str, Any]]:
        """One event by its eventID (``urn:uuid:…`` or a ``ni:///sha-256;…`` hash), URL-encoded."""
        _acceptable(request)
        q = parse_query([])
        q.event_id = event_key(_raw_tail(request) or event_id.lstrip("/"))
        # a JSON-LD document: the event with its context (a probe found none at all)
        event = one_event(await search(read_conn, principal, scheme, settings, q))
        if event is None:
            raise NotFound("no such event", code="epcis_event_not_found")
        return Response(event, media_type="application/ld+json", headers=_HEADERS)


def _as_document(raw: bytes) -> dict[str, Any] | str:
    """One event's body as a capture document, or why it is not an event. Nesting is checked
    before decoding: the decoder's recursion limit was a 500."""
    too_deep = f"the event is nested deeper than {MAX_JSON_DEPTH} levels"
    if not json_depth_ok(raw):
        return too_deep
    try:
        event = msgspec.json.decode(raw)
    except RecursionError:  # an unbalanced body: the depth check leaves it to the decoder
        return too_deep
    except msgspec.DecodeError:
        return "not valid JSON"
    if not isinstance(event, dict):
        return "an event is a JSON object"
    return {  # the event keeps its own @context, as in a capture document: the event hash
        # reads it as a member, so the same event had two ids by two endpoints (a probe)
        "@context": event.get("@context", CONTEXT),
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": datetime.now(UTC).isoformat(),
        "epcisBody": {"eventList": [event]},
    }


async def _event_id(conn: Conn, capture_id: str, document: dict[str, Any]) -> str:
    """The eventID of a single-event capture: the stored row's, or for an error declaration
    (which changes an event stored by an earlier capture) the eventID it names (given, or the
    event hash: the declaration is not hashed)."""
    event = document["epcisBody"]["eventList"][0]
    if "errorDeclaration" not in event:
        return await capture.last_event_id(conn, capture_id)
    parsed = parse_document(msgspec.json.encode(document))[0]
    return parsed.event_id or event_hash(parsed.raw, parsed.context)


def _raw_tail(request: Request[Any, Any, Any]) -> str | None:
    """The eventID as sent: the path parameter has lost the ``///`` of ``ni:///`` to the
    router's path normalisation, the raw path has not."""
    raw = request.scope.get("raw_path")
    if not raw:
        return None
    _, _, tail = raw.decode("latin-1").partition("/epcis/events/")
    return unquote(tail) or None


def _q(value: str) -> str:
    return quote(value, safe="")


router = Router(
    path="",
    route_handlers=[CaptureController, EventController],
    tags=["epcis"],
    exception_handlers={
        **dict.fromkeys(errors.exception_handlers, as_problem),
        DocumentError: handle_document_error,
        QueryError: handle_query_error,
    },
)
