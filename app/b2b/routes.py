"""HTTP routes of B2B verification (SPEC B8): ``/v1/lms/verify`` for trade partners' receiving
systems, and the brand's side — the requests asked, its lots' expiry and recall, its GLN."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any
from urllib.parse import unquote

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import Parameter, QueryParameter

from app.auth.principal import Principal
from app.b2b import service
from app.b2b.schemas import (
    FailureReason,
    LmsRequestOut,
    LmsVerifyIn,
    LmsVerifyOut,
    LotIn,
    LotOut,
    ResponderIn,
    ResponderOut,
)
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import ValidationFailed, invalid_body
from app.paging import Page, PageNo, PerPage

_VERIFY_DOC = """Verify a product identifier as printed (GTIN, serial, lot, expiry) for a trade
partner's receiving system, without the consumer PIN: the GS1 Lightweight Messaging Standard's
verification (``verify.b2b``; see README "B2B verification (GS1 Lightweight Messaging)").
``data.verified`` true or false; when false ``verificationFailureReason`` is ``No_match_GTIN``,
``No_match_GTIN_Serial``, ``No_match_GTIN_Serial_Lot``, ``No_match_GTIN_Serial_Expiry``,
``No_match_GTIN_Serial_Lot_Expiry`` or ``Not_for_re-distribution`` (``additionalInfo``
``Recalled``, ``Decommissioned``, ``Destroyed``, ``Sold``; a unit returned damaged ``Damaged``,
returned expired ``Expired``); a verified pack past its declared expiry has ``additionalInfo``
``Expired``. The same ``corrUUID`` and request again: the first answer; another request under it:
409 ``corr_uuid_reused``. 400 ``invalid_gtin``, ``invalid_gln``, ``invalid_expiration_date``,
``validation_failed`` (also a parameter or member given twice); 429 ``rate_limited``."""

_VERIFY_RESPONSES = {
    409: ResponseSpec(None, description="corr_uuid_reused: the corrUUID named another request"),
    429: ResponseSpec(None, description="rate_limited: over lms_rate_limit a minute; Retry-After"),
}


class LmsController(Controller):
    path = "/v1/lms"
    tags = ["b2b verification"]

    @post("/verify", status_code=200, description=_VERIFY_DOC, responses=_VERIFY_RESPONSES)
    async def verify(
        self,
        request: Request[Any, Any, Any],
        data: LmsVerifyIn,
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
    ) -> LmsVerifyOut:
        """Verify a product identifier (the request as a JSON object)."""
        _once_each_member(await request.body())
        limit = service.rate_limit(request.app.state)
        return await service.verify(conn, principal, scheme, limit, data)

    @get("/verify", description=_VERIFY_DOC, responses=_VERIFY_RESPONSES)
    async def verify_get(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
        gtin: Annotated[str, Parameter(max_length=14)],
        serial_number: Annotated[str, QueryParameter(name="serialNumber", max_length=20)],
        lot_number: Annotated[str, QueryParameter(name="lotNumber", max_length=20)],
        expiration_date: Annotated[str, QueryParameter(name="expirationDate", max_length=10)],
        requestor_gln: Annotated[
            str | None, QueryParameter(name="requestorGLN", max_length=13)
        ] = None,
        context: Annotated[str, Parameter(max_length=64)] = "verify",
        corr_uuid: Annotated[uuid.UUID | None, QueryParameter(name="corrUUID")] = None,
        link_type: Annotated[
            str | None,
            QueryParameter(name="linkType", max_length=100, description="ignored (a resolver's)"),
        ] = None,
    ) -> LmsVerifyOut:
        """Verify a product identifier (the standard's query parameters). A HEAD checks the
        caller and the parameters only: nothing is verified, counted or recorded."""
        _once_each(request)
        fields: dict[str, Any] = {
            "gtin": gtin,
            "serialNumber": serial_number,
            "lotNumber": lot_number,
            "expirationDate": expiration_date,
            "requestorGLN": requestor_gln,
            "context": context,
            "corrUUID": corr_uuid,
        }
        try:
            data = msgspec.convert(fields, LmsVerifyIn)
        except msgspec.ValidationError as exc:
            raise invalid_body(exc) from None
        if request.method == "HEAD":  # no side effect of GET (app.head)
            principal.require(service.PERMISSION)
            service.read_request(data)  # its 400s
            return service.head_answer(data)
        limit = service.rate_limit(request.app.state)
        return await service.verify(conn, principal, scheme, limit, data)

    @get("/requests")
    async def list_requests(
        self,
        conn: Conn,
        principal: Principal,
        verified: bool | None = None,
        reason: Annotated[
            FailureReason | None,
            Parameter(description="verificationFailureReason answered"),
        ] = None,
        corr_uuid: Annotated[uuid.UUID | None, QueryParameter(name="corrUUID")] = None,
        gtin: Annotated[str | None, Parameter(max_length=14)] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[LmsRequestOut]:
        """The B2B verifications asked by the caller's subtree, newest first (``reports.read``:
        every partner's, with ``detail``; ``verify.b2b``: the partner's subtree's, without it)."""
        return await service.list_requests(
            conn,
            principal,
            verified=verified,
            reason=reason,
            corr_uuid=corr_uuid,
            gtin=gtin,
            page=page,
            per_page=per_page,
        )

    @get("/lots")
    async def list_lots(
        self,
        conn: Conn,
        principal: Principal,
        gtin: Annotated[str | None, Parameter(max_length=14)] = None,
        recalled: bool | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[LotOut]:
        """The lots the brand declared (expiry, recall), last changed first."""
        return await service.list_lots(conn, principal, gtin, recalled, page, per_page)

    @put("/lots/{gtin:str}/{lot:path}")
    async def put_lot(
        self,
        request: Request[Any, Any, Any],
        gtin: str,
        lot: str,
        data: LotIn,
        conn: Conn,
        principal: Principal,
    ) -> LotOut:
        """Declare a lot's expiry (``expirationDate``, YYMMDD or ISO; null: none on record) and
        its recall (``recalled``, ``recall_note``) — ``catalog.write``, the brand's own staff
        (403 ``brand_staff_only`` below the brand); audited. The lot URL-encoded: ``%`` as
        ``%25``, ``?`` as ``%3F``, a last ``/`` as ``%2F`` (another ``/`` may be sent bare).
        404 ``unknown_gtin`` for a GTIN of no product of the brand; 400 ``invalid_lot`` for a
        lot outside GS1 CSET 82 or over 20 characters, or ending in a bare ``/``."""
        service.may_declare_lots(principal)  # 403 before the path's shape is judged (a review)
        return await service.put_lot(conn, principal, gtin, _lot_of(request, gtin, lot), data)

    @get("/responder")
    async def get_responder(self, conn: Conn, principal: Principal) -> ResponderOut:
        """The brand's GLN answered as ``responderGLN`` (null: none; the field is left out)."""
        return await service.get_responder(conn, principal)

    @put("/responder")
    async def put_responder(
        self, data: ResponderIn, conn: Conn, principal: Principal
    ) -> ResponderOut:
        """Set the brand's GLN (``catalog.write``, the brand's own staff: 403
        ``brand_staff_only`` below it; 400 ``invalid_gln``); audited."""
        return await service.put_responder(conn, principal, data)


# the GET's parameters that make the request: each names one value of the identifier
_VERIFY_PARAMS = (
    "gtin",
    "serialNumber",
    "lotNumber",
    "expirationDate",
    "requestorGLN",
    "context",
    "corrUUID",
)


def _once_each(request: Request[Any, Any, Any]) -> None:
    """400 ``validation_failed`` naming a parameter sent twice: Litestar keeps the last value,
    and one answer for two identifiers is recorded by the dock against the wrong pack."""
    for name in _VERIFY_PARAMS:
        if len(request.query_params.getall(name, [])) > 1:
            raise ValidationFailed(
                f"invalid request ({name}): the query parameter is given more than once",
                details=[{"field": name, "message": "repeated", "source": "query"}],
            )


def _once_each_member(raw: bytes) -> None:
    """400 ``validation_failed`` naming a member the POST's body gives twice: msgspec keeps the
    last value — ``_once_each``'s wrong pack. The body is read again by the standard library,
    which hands over every member: one msgspec decoded already (a flat object of short strings,
    within the route's body limit), cached by Litestar — this route's only."""
    json.loads(raw.decode("utf-8"), object_pairs_hook=_no_repeated_member)


def _no_repeated_member(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise ValidationFailed(
                f"invalid request ({name}): the member is given more than once",
                details=[{"field": name, "message": "repeated", "source": "body"}],
            )
        seen.add(name)
    return dict(pairs)


_ROUTE = ["v1", "lms", "lots"]


def _lot_of(request: Request[Any, Any, Any], gtin: str, lot: str) -> str:
    """The lot as sent, past the GTIN's segment: GS1 CSET 82 has ``/``, which the router
    decodes before routing (hence a ``path`` parameter) and whose ``//`` it folds into one —
    the raw path has neither (``app.epcis.routes._raw_tail``'s way). The raw path alone names
    the lot: its GTIN segment is the router's ``gtin`` or the request is refused (400
    ``invalid_gtin``: ``{gtin}%2FX/L`` was saved as lot ``L`` of the GTIN, ``//{gtin}/L`` as
    lot ``{gtin}/L``). A bare last ``/`` is 400 ``invalid_lot``, a lot ending in ``/`` sends it
    as ``%2F``: Litestar's ``{lot:str}`` took ``L/`` as ``L``, and read as lot ``L/`` a recall
    sent so answered 200 and recalled nothing."""
    raw = request.scope.get("raw_path")
    if not raw:
        return lot[1:] if lot.startswith("/") else lot
    # found by its decoded segments: the router decodes ``/v1/lms/%6Cots/…`` too (a review: the
    # text ``/v1/lms/lots/`` looked for, the GTIN read as empty, 400 for a right GTIN)
    parts = raw.decode("latin-1").split("/")
    at = next(
        (i for i in range(len(parts)) if [unquote(p) for p in parts[i : i + 3]] == _ROUTE), -1
    )
    segment, encoded = (parts[at + 3], "/".join(parts[at + 4 :])) if at >= 0 else ("", "")
    if at < 0 or unquote(segment) != gtin:  # ``lots%2F{gtin}``: no segment of its own
        raise ValidationFailed(
            "not a GTIN: the path's GTIN segment is not one GTIN",
            code="invalid_gtin",
            details={"gtin": unquote(segment)},
        )
    if encoded.endswith("/"):
        raise ValidationFailed(
            "a lot ending in '/' is sent with that '/' as %2F (a bare one ends the path)",
            code="invalid_lot",
            details={"lot": unquote(encoded)},
        )
    return unquote(encoded)
