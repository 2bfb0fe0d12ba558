"""The one exception hierarchy and its JSON error handler.

Every error leaves the API as ``{"error": {"code", "message", "details"}}`` with a 4xx status
(5xx only for real server faults). Domain code raises ``AppError`` subclasses; framework and
database exceptions are mapped here, once.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
import psycopg.errors
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.params import QueryParameter

from app._core import ForgedSerial, Gs1Error, SerialError, UnknownKeyVersion
from app.logs import logged_path, request_id_var

log = logging.getLogger("tracecode.errors")


class SerialNotInBatch(SerialError):
    """A genuine serial whose index is not below its batch's size (never issued).

    Raised by ``app.codes.scheme.check_in_batch`` (and exported there); defined here, beside
    the Rust core's serial errors it extends, so this module imports no domain.
    """


class AnswerCutOff(Exception):
    """An answer under way ended early on purpose (a void batch's stream: its labels are to be
    destroyed), not a fault: raised after the answer started, ``app.front`` logs one WARNING
    line with the request's context (no traceback) and counts it as cut off (499), the answer
    left unended — its client sees an incomplete one, never a whole one."""


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers = headers


class BadRequest(AppError):
    status, code = 400, "bad_request"


class ValidationFailed(AppError):
    status, code = 400, "validation_failed"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class MethodNotAllowed(AppError):
    status, code = 405, "method_not_allowed"


class NotAcceptable(AppError):
    status, code = 406, "not_acceptable"


class Conflict(AppError):
    status, code = 409, "conflict"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class RangeNotSatisfiable(AppError):
    status, code = 416, "range_not_satisfiable"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(AppError):
    status, code = 422, "unprocessable"


class TooManyRequests(AppError):
    status, code = 429, "too_many_requests"


class ServerError(AppError):
    """A failure of ours (disk, worker), reported with a stable code instead of a bare 500."""

    status, code = 500, "internal_error"


class BadGateway(AppError):
    """A service we depend on (an S3 photo store) refused or failed the request."""

    status, code = 502, "bad_gateway"


class ServiceUnavailable(AppError):
    """A service we depend on (an S3 photo store) cannot be reached now; try again later."""

    status, code = 503, "service_unavailable"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        content=error_body(code, message, details),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _public_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter as the client names it (``format``), not as the handler does (``fmt``)."""
    try:
        kwarg = request.route_handler.parsed_fn_signature.parameters[key].kwarg_definition
    except (AttributeError, KeyError):
        return key
    # Parameter(query=…) / Parameter(header=…), or QueryParameter(name=…)
    alias = (
        getattr(kwarg, "query", None)
        or getattr(kwarg, "header", None)
        or (getattr(kwarg, "name", None) if isinstance(kwarg, QueryParameter) else None)
    )
    return alias if isinstance(alias, str) and alias else key


def _validation_details(request: Request[Any, Any, Any], extra: Any) -> tuple[str, Any]:
    """Litestar's validation extras as [{"field", "message", "source"}] and a summary line."""
    items = extra if isinstance(extra, list) else [extra] if extra else []
    details = []
    for item in items:
        if isinstance(item, dict):
            field, message = item.get("key") or "", item.get("message", "")
            if field and item.get("source") in ("query", "header"):
                field = _public_name(request, field)
            if field == "data" and item.get("source") == "body":  # no body at all
                field, message = "", "the request body is empty: send a JSON object"
            details.append({"field": field, "message": message, "source": item.get("source")})
    if details:
        first = details[0]
        where = f" ({first['field']})" if first["field"] else ""
        return f"invalid request{where}: {first['message']}", details
    return "invalid request", None


def handle_app_error(_: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
    return _response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        message, details = _validation_details(request, exc.extra)
        missing = _MISSING.match(exc.detail or "")
        if details is None and missing:  # Litestar says so in its text only
            source, name = missing.groups()
            message = f"invalid request ({name}): the {source} parameter is required"
            details = [{"field": name, "message": "required", "source": source}]
        return _response(400, "validation_failed", message, details)
    if status == 400 and isinstance(exc.__cause__, SerializationException):
        return _response(400, "malformed_json", f"the request body is not valid JSON: {exc.detail}")
    if client_gone(exc):
        # the client hung up before its body's end: its fault, not the server's, and an
        # anonymous caller repeating it raised the 5xx rate and the error log at will (probe S)
        log.info("client disconnected mid-body")
        return _response(400, "client_disconnected", "the request body ended before its length")
    code = _HTTP_CODES.get(status, "error")
    if status >= 500:  # as any other 500: the line with its context, the answer with the id
        context = request_context(request.scope)
        log.error("http error", extra={"status": status, "detail": exc.detail, **context})
        return _response(
            status, code, "internal server error", {"request_id": request_id_var.get()}
        )
    headers = dict(exc.headers) if exc.headers else None
    return _response(status, code, exc.detail or code.replace("_", " "), exc.extra or None, headers)


def client_gone(exc: BaseException) -> bool:
    """Whether Litestar's error says the client hung up before its body's end (an
    ``InternalServerException`` that only its text tells apart)."""
    return (
        isinstance(exc, HTTPException)
        and exc.status_code == 500
        and exc.detail == "client disconnected prematurely"
    )


_MISSING = re.compile(r"Missing required (query|header|cookie|path) parameter '([^']*)'")
_FIELD_NAMED = re.compile(r"Object (?:missing required|contains unknown) field `([^`]*)`")


def invalid_body(exc: msgspec.MsgspecError) -> AppError:
    """A request body msgspec could not decode: malformed JSON, or the field that is wrong."""
    if not isinstance(exc, msgspec.ValidationError):
        return BadRequest(f"the request body is not valid JSON: {exc}", code="malformed_json")
    message, at, where = str(exc).rpartition(" - at `$")
    if not at:
        message, where = str(exc), ""
    field = where.rstrip("`").lstrip(".")
    named = _FIELD_NAMED.fullmatch(message)  # a missing or unknown member: name it
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    if not field:
        return ValidationFailed(
            f"invalid request: {message}",
            details=[{"field": "", "message": message, "source": "body"}],
        )
    return ValidationFailed(
        f"invalid request ({field}): {message}",
        details=[{"field": field, "message": message, "source": "body"}],
    )


def handle_msgspec_error(_: Request[Any, Any, Any], exc: msgspec.MsgspecError) -> Response[Any]:
    return handle_app_error(_, invalid_body(exc))


# The unique keys a service checks before it writes, with the code it answers: two requests at
# once both pass the check, and the loser meets the key — it answers what it would have one
# after the other (race probe: a generic 409 conflict).
UNIQUE_CONFLICTS: dict[str, tuple[str, str]] = {
    "users_username_key": ("duplicate_username", "the username is taken"),
    "users_username_lower_key": ("duplicate_username", "the username is taken"),
    "orgs_erp_code_brand_uq": ("duplicate_erp_code", "the ERP code is taken"),
    "orgs_brand_erp_code_uq": ("duplicate_erp_code", "the ERP code is taken"),
    "orgs_gs1_company_prefix_uq": ("duplicate_company_prefix", "the company prefix is taken"),
    "orgs_brand_name_uq": ("duplicate_brand_name", "another brand has this name"),
    "wechat_accounts_app_id_uq": (
        "wechat_app_id_taken",
        "this WeChat app id is another brand's account",
    ),
    "products_org_id_product_no_key": ("duplicate_product_no", "the product number exists"),
    "products_gtin_key": ("duplicate_gtin", "the GTIN is already used"),
    "categories_org_id_name_key": ("duplicate_category", "the category exists"),
    "code_pools_brand_recipient_name_key": ("pool_name_taken", "a pool of this name exists"),
}


def unique_conflict(exc: psycopg.errors.UniqueViolation) -> tuple[str, str]:
    """The code and message of a unique key's violation (``UNIQUE_CONFLICTS``, else generic)."""
    return UNIQUE_CONFLICTS.get(
        exc.diag.constraint_name or "", ("conflict", "a record with the same unique value exists")
    )


def handle_db_error(request: Request[Any, Any, Any], exc: psycopg.Error) -> Response[Any]:
    """A safety net for constraint and data errors that validation did not catch first."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return _response(409, *unique_conflict(exc))
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return _response(409, "in_use", "the record is referenced by, or refers to, another")
    if isinstance(exc, psycopg.errors.CheckViolation | psycopg.errors.NotNullViolation):
        return _response(422, "unprocessable", "a value breaks a rule of the data model")
    if isinstance(exc, psycopg.errors.DataError):
        # PostgreSQL's own words name the value and the type, never a table or a column
        reason = exc.diag.message_primary or "a value is out of range or malformed"
        details = [{"field": "", "message": reason, "source": "value"}]
        return _response(400, "validation_failed", f"invalid request: {reason}", details)
    if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return _response(409, "retry", "a concurrent change conflicted; retry the request")
    if isinstance(exc, psycopg.errors.QueryCanceled):  # TRACECODE_DB_STATEMENT_TIMEOUT
        log.warning("query cancelled", extra={"error": str(exc), **request_context(request.scope)})
        message = "the query took too long; narrow it (a shorter period, a filter) or retry later"
        return _response(503, "query_timeout", message)
    if isinstance(exc, psycopg.OperationalError):
        context = request_context(request.scope)
        log.error("database unavailable", extra={"error": str(exc), **context})
        return _response(503, "service_unavailable", "the database is unavailable; retry shortly")
    return handle_unexpected(request, exc)


def handle_serial_error(_: Request[Any, Any, Any], exc: ValueError) -> Response[Any]:
    """Serial and GS1 failures raised by the Rust core, mapped once (malformed: 400).

    ``UnknownKeyVersion`` is no verdict on a serial (verifying one tries the active versions
    and answers ``ForgedSerial``): something asked to make a code or a key under a version
    retired since (``TRACECODE_KEY_VERSIONS``). It was answered ``not_genuine`` for genuine,
    live codes (a probe: an allocation file fetched again); now ``key_version_retired``."""
    if isinstance(exc, Gs1Error):
        return _response(400, "invalid_gs1", str(exc))
    if isinstance(exc, UnknownKeyVersion):
        message = f"{exc} (TRACECODE_KEY_VERSIONS): what was made under it cannot be made again"
        return _response(422, "key_version_retired", message)
    if isinstance(exc, ForgedSerial | SerialNotInBatch):
        return _response(422, "not_genuine", "not a genuine code")
    return _response(400, "malformed_serial", str(exc))


def request_context(scope: Any) -> dict[str, Any]:
    """What an error line tells of its request, besides the request id every line has: the
    method, the path as the logs show it (``logged_path``: a private path as its route) and
    the route's template (None when no route was found)."""
    return {
        "method": scope.get("method"),
        "path": logged_path(scope),
        "route": scope.get("path_template"),
    }


def log_unexpected(scope: Any, exc: BaseException, message: str = "unhandled error") -> None:
    """The ERROR line of an exception no handler expected: its traceback and its request's
    context (``handle_unexpected``; ``app.front`` for one raised after the answer started)."""
    log.error(message, exc_info=exc, extra=request_context(scope))


def cut_off(exc: BaseException) -> AnswerCutOff | None:
    """The ``AnswerCutOff`` that ``exc`` is, alone or as all of an exception group (a streamed
    answer raises from a task group of its own); None for anything else."""
    if isinstance(exc, BaseExceptionGroup):
        found = [cut_off(inner) for inner in exc.exceptions]
        return found[0] if all(found) else None
    return exc if isinstance(exc, AnswerCutOff) else None


def log_cut_off(scope: Any, exc: AnswerCutOff) -> None:
    """The WARNING line of an answer cut off on purpose (``AnswerCutOff``)."""
    log.warning("answer cut off: %s", exc, extra=request_context(scope))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log_unexpected(request.scope, exc)
    return _response(
        500, "internal_error", "internal server error", {"request_id": request_id_var.get()}
    )


exception_handlers: dict[Any, Any] = {
    AppError: handle_app_error,
    HTTPException: handle_http_exception,
    msgspec.MsgspecError: handle_msgspec_error,
    psycopg.Error: handle_db_error,
    SerialError: handle_serial_error,
    Gs1Error: handle_serial_error,
    Exception: handle_unexpected,
}
