"""HTTP routes of verification (partners' JSON API) and of alerts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, asgi, get, post
from litestar.openapi.spec import OpenAPI
from litestar.params import QueryParameter
from litestar.types import Receive, Scope, Send

from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.edge import check_json, read_post_body
from app.errors import invalid_body
from app.paging import Page, PageNo, PerPage
from app.textguard import user_agent
from app.verify import alerts
from app.verify.schemas import AlertOut, VerifyIn, VerifyOut

MAX_BODY = 16 * 1024  # a verification is a few hundred bytes
_JSON = (b"content-type", b"application/json")


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


@asgi("/v1/verify", copy_scope=False, opt={"fast_lane": True})  # app.front: no routing
async def verify(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /v1/verify (documented in the OpenAPI schema by ``document_verify``).

    The platform's hottest endpoint is a plain ASGI handler: Litestar still routes it and its
    exception handlers still turn errors into JSON, but the request skips the per-request
    signature, dependency and response machinery, which cost more than the verification itself.
    """
    body = await read_post_body(scope, receive, MAX_BODY, "a verification")
    check_json(body)  # a control character (NUL) in any string, nesting too deep: 400
    try:
        data = msgspec.json.decode(body, type=VerifyIn)
    except msgspec.MsgspecError as exc:
        raise invalid_body(exc) from None
    client = scope.get("client")
    verifier = scope["litestar_app"].state.verifier
    token = _bearer(scope)
    signed = _member(verifier.settings, token) if token else None
    out = await verifier.verify(
        data,
        client[0] if client else None,
        user_agent(scope),
        member_id=signed[0] if signed else None,
        member_token=signed[1] if signed else None,
    )
    payload = msgspec.json.encode(out)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [_JSON, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _bearer(scope: Scope) -> str | None:
    """The request's bearer token, if any: a member's app sends the member's (the verification
    is then the member's scan record, ``principal.signed_member``)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
            return None
    return None


def _member(settings: Settings, token: str) -> tuple[int, str] | None:
    """The member a bearer token names and the token's id (``principal.signed_member``: its
    signature alone), or None: the verification is answered all the same, anonymous."""
    # imported here: app.members's package imports app.claims, which imports the verifier
    from app.members.principal import signed_member

    return signed_member(settings, token)


_VERIFY_DOC = """Verify a serial (or the QR content), with or without the PIN. No login needed.

``result``: ``genuine`` (the PIN proved the pack), ``unconfirmed`` (a real code asked without
its PIN, reason ``pin_required``: the label could be a copy — never show it as genuine),
``suspicious``, ``not_genuine``, ``wrong_pin`` or ``locked``; ``reason`` says why; ``message`` is
ready to show (``lang`` zh or en; places are named in that language). 400 ``validation_failed``
or ``malformed_json`` on a bad body, ``invalid_character`` for a control character in a string;
413 ``payload_too_large`` over 16 KB (the connection is then closed); 429 ``rate_limited`` past
the per-IP limit; 503 ``query_timeout`` past ``TRACECODE_DB_ROUND_TIMEOUT`` or
``service_unavailable`` when a store does not answer."""


def document_verify(openapi: OpenAPI) -> None:
    """Add POST /v1/verify, an ASGI handler Litestar does not document, to the schema."""
    refs, components = msgspec.json.schema_components(
        (VerifyIn, VerifyOut), ref_template="#/components/schemas/{name}"
    )
    schemas: dict[str, Any] = openapi.components.schemas  # type: ignore[assignment]
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    error = {"description": 'error: {"error": {"code", "message", "details"}}'}
    paths: dict[str, Any] = openapi.paths if openapi.paths is not None else {}
    paths["/v1/verify"] = {
        "post": {
            "tags": ["verify"],
            "summary": "Verify",
            "operationId": "V1VerifyVerify",
            "description": _VERIFY_DOC,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": refs[0]}},
            },
            "responses": {
                "200": {
                    "description": "the answer",
                    "content": {"application/json": {"schema": refs[1]}},
                },
                "400": error,
                "413": error,
                "429": error,
                "503": error,
            },
        }
    }
    openapi.paths = paths


class AlertController(Controller):
    path = "/alerts"
    tags = ["alerts"]

    @get("/")
    async def list_alerts(
        self,
        conn: Conn,
        principal: Principal,
        kind: str | None = None,
        severity: Literal["info", "warning", "critical"] | None = None,
        open_only: Annotated[bool, QueryParameter(name="open")] = False,
        verdict: Literal["untriaged", "true_positive", "false_positive"] | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[AlertOut]:
        """Alerts of the caller's subtree, newest first (severity: info, warning, critical;
        ``verdict``: triaged so, or ``untriaged``)."""
        return await alerts.list_alerts(
            conn,
            principal,
            kind=kind,
            severity=severity,
            open_only=open_only,
            page=page,
            per_page=per_page,
            verdict=verdict,
        )

    @post("/{alert_id:int}/acknowledge", status_code=200)
    async def acknowledge(self, alert_id: int, conn: Conn, principal: Principal) -> AlertOut:
        return await alerts.acknowledge(conn, principal, alert_id)
