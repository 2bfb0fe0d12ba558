"""HTTP routes of orders, documents, sales and returns (SPEC L1–L8, L10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.params import Parameter, QueryParameter

from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.csvread import declared_encoding
from app.db import Conn
from app.edge import media_of
from app.errors import UnsupportedMediaType
from app.logistics import documents, imports, orders, salespeople, stock
from app.logistics.schemas import (
    CodesIn,
    DecisionIn,
    DocKind,
    DocStatus,
    DocumentIn,
    DocumentOut,
    DocumentSummaryOut,
    ItemsOut,
    OrderIn,
    OrderKind,
    OrderOut,
    OrderStatus,
    RemoveCodesIn,
    RemovedOut,
    ReturnIn,
    ReturnOut,
    SaleIn,
    SalespersonOut,
    StockOut,
    ThresholdIn,
    ThresholdOut,
)
from app.paging import Page, PageNo, PerPage

# a lot, an ERP order or a document number: an empty or longer one can match nothing, 400 (a
# probe: an empty box answered an empty page)
Number = Annotated[str | None, Parameter(min_length=1, max_length=64)]


class OrderController(Controller):
    path = "/orders"
    tags = ["logistics"]

    @post("/")
    async def create(self, data: OrderIn, conn: Conn, principal: Principal) -> Response[OrderOut]:
        """Create an order (201); the same ``erp_no`` again answers 200 with it (409 if it
        differs)."""
        order, created = await orders.create_order(conn, principal, data)
        return Response(order, status_code=201 if created else 200)

    @get("/")
    async def list_orders(
        self,
        conn: Conn,
        principal: Principal,
        kind: OrderKind | None = None,
        order_status: Annotated[list[OrderStatus] | None, QueryParameter(name="status")] = None,
        org_id: int | None = None,
        erp_no: Number = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[OrderOut]:
        """Orders of the caller's subtree, newest first. ``status`` may be given several times
        (``?status=open&status=shipped``: the orders in any of them, as the staff app asks for
        those it may still ship or receive against)."""
        return await orders.list_orders(
            conn,
            principal,
            kind=kind,
            status=order_status,
            org_id=org_id,
            erp_no=erp_no,
            page=page,
            per_page=per_page,
        )

    @post(
        "/import",
        status_code=200,
        request_max_body_size=imports.MAX_BYTES + 1024,
        opt={"permission": ("orders.write",)},  # before the body (app.deps.caller_first)
    )
    async def import_csv(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Principal
    ) -> imports.ImportOut:
        """Import orders from a CSV file sent as the body (``Content-Type: text/csv``), one row
        per order line; see ``app/logistics/imports.py`` for the columns. Bad rows are listed by
        line and column; an order with a bad row is rejected, the others are created (existing
        ones, same ERP number and content, are left as they are)."""
        principal.require("orders.write")
        content_type = request.headers.get("content-type", "")
        if media_of(content_type)[0] not in imports.MEDIA_TYPES:
            raise UnsupportedMediaType(
                "send the CSV file as the body with Content-Type: text/csv",
                details={"accepted": list(imports.MEDIA_TYPES)},
            )
        encoding = declared_encoding(content_type)  # UTF-8 or GB18030; another charset is 415
        raw = await imports.read_body(request.stream())
        return await imports.import_orders(conn, principal, raw, encoding)

    @get("/{order_id:int}")
    async def get_order(self, order_id: int, conn: Conn, principal: Principal) -> OrderOut:
        return await orders.get_order(conn, principal, order_id)

    @post("/{order_id:int}/close", status_code=200)
    async def close(self, order_id: int, conn: Conn, principal: Principal) -> OrderOut:
        """End the order: nothing more is shipped under it (a draft against it is refused
        409 ``order_closed`` when confirmed); what is on its way is still received."""
        return await orders.end_order(conn, principal, order_id, "closed")

    @post("/{order_id:int}/cancel", status_code=200)
    async def cancel(self, order_id: int, conn: Conn, principal: Principal) -> OrderOut:
        """Cancel the order while nothing has moved under it (409 ``order_shipped`` after)."""
        return await orders.end_order(conn, principal, order_id, "cancelled")

    @post("/{order_id:int}/receive", status_code=200)
    async def receive(
        self, order_id: int, conn: Conn, principal: Principal, scheme: Scheme
    ) -> DocumentOut:
        """Receive everything shipped to your organisation under this order, in one action."""
        return await documents.receive_order(conn, principal, scheme, order_id)


class DocumentController(Controller):
    path = "/documents"
    tags = ["logistics"]

    @post("/")
    async def create(self, data: DocumentIn, conn: Conn, principal: Principal) -> DocumentOut:
        """A draft inbound or outbound document; scan codes into it, then confirm it."""
        return await documents.create_document(conn, principal, data)

    @get("/")
    async def list_documents(
        self,
        conn: Conn,
        principal: Principal,
        kind: DocKind | None = None,
        doc_status: Annotated[DocStatus | None, QueryParameter(name="status")] = None,
        org_id: int | None = None,
        doc_no: Number = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[DocumentOut]:
        return await documents.list_documents(  # type: ignore[no-any-return]
            conn,
            principal,
            kind=kind,
            status=doc_status,
            org_id=org_id,
            doc_no=doc_no,
            page=page,
            per_page=per_page,
        )

    @get("/salespeople")
    async def list_salespeople(
        self,
        conn: Conn,
        principal: Principal,
        store_id: int | None = None,
        q: Annotated[str | None, Parameter(max_length=100)] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[SalespersonOut]:
        """Who an outbound may name as its responsible salesperson (``logistics.scan``; L6):
        active users of the caller's subtree and, with ``store_id``, of the store shipped to —
        id, username, display name and organisation only."""
        return await salespeople.list_salespeople(
            conn, principal, store_id=store_id, q=q, page=page, per_page=per_page
        )

    @get("/{doc_id:int}")
    async def get_document(self, doc_id: int, conn: Conn, principal: Principal) -> DocumentOut:
        return await documents.get_document(conn, principal, doc_id)

    @get("/{doc_id:int}/summary")
    async def get_summary(
        self, doc_id: int, conn: Conn, principal: Principal
    ) -> DocumentSummaryOut:
        """The running count per product of the codes scanned so far (cases counted as the units
        inside them, each unit once), beside the lines of the document's order: ordered, done,
        remaining once confirmed, over."""
        return await documents.get_summary(conn, principal, doc_id)

    @post("/{doc_id:int}/codes", status_code=200)
    async def add_codes(
        self, doc_id: int, data: CodesIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> ItemsOut:
        """Scan unit serials or case SSCCs into a draft; per code ``added``, ``duplicate`` (on
        the draft already) or ``rejected``. With ``client_id`` (the app's id of this request),
        the same request sent again (its answer lost) answers ``added`` again for the codes it
        added; a code another request added stays ``duplicate``."""
        return await documents.add_codes(conn, principal, scheme, doc_id, data)

    @post("/{doc_id:int}/codes/remove", status_code=200)
    async def remove_codes(
        self, doc_id: int, data: RemoveCodesIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> RemovedOut:
        """Take scanned codes off a draft (a case that can no longer ship, a code scanned by
        mistake): per code ``removed``, ``not_on_document`` or ``rejected`` (malformed)."""
        return await documents.remove_codes(conn, principal, scheme, doc_id, data)

    @post("/{doc_id:int}/confirm", status_code=200)
    async def confirm(
        self, doc_id: int, conn: Conn, principal: Principal, scheme: Scheme
    ) -> DocumentOut:
        """Move the goods (an exception outbound waits for approval)."""
        return await documents.confirm(conn, principal, scheme, doc_id)

    @post("/{doc_id:int}/approve", status_code=200)
    async def approve(
        self, doc_id: int, data: DecisionIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> DocumentOut:
        return await documents.decide(conn, principal, scheme, doc_id, True, data.note)

    @post("/{doc_id:int}/reject", status_code=200)
    async def reject(
        self, doc_id: int, data: DecisionIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> DocumentOut:
        return await documents.decide(conn, principal, scheme, doc_id, False, data.note)

    @post("/{doc_id:int}/cancel", status_code=200)
    async def cancel(self, doc_id: int, conn: Conn, principal: Principal) -> DocumentOut:
        return await documents.cancel(conn, principal, doc_id)


@post("/sales", status_code=201, tags=["logistics"])
async def sell(
    data: SaleIn, conn: Conn, principal: Principal, scheme: Scheme
) -> Response[DocumentOut]:
    """A store sells units (or cases) by scanning them: they are sold (retail_selling), 201.

    With ``client_id`` (the app's id of the sale) a re-send after a lost answer answers the first
    sale with 200 (the same document, nothing sold twice); the same client id with another body
    is 409 ``client_id_reused``."""
    out, replayed = await documents.sell(conn, principal, scheme, data)
    return Response(out, status_code=200 if replayed else 201)


@post("/returns", status_code=200, tags=["logistics"])
async def consumer_return(
    data: ReturnIn, conn: Conn, principal: Principal, scheme: Scheme
) -> ReturnOut:
    """A consumer returns a sold unit to the store (optionally exchanged for another)."""
    return await documents.consumer_return(conn, principal, scheme, data)


class StockController(Controller):
    path = "/stock"
    tags = ["stock"]

    @get("/")
    async def list_stock(
        self,
        conn: Conn,
        principal: Principal,
        org_id: int | None = None,
        product_id: int | None = None,
        lot: Number = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[StockOut]:
        """Stock per organisation, product and lot in the caller's subtree (rolled up every
        second from the movements): units on hand and units in transit to the organisation."""
        return await stock.list_stock(
            conn,
            principal,
            org_id=org_id,
            product_id=product_id,
            lot=lot,
            page=page,
            per_page=per_page,
        )

    @get("/thresholds")
    async def list_thresholds(
        self,
        conn: Conn,
        principal: Principal,
        org_id: int | None = None,
        product_id: int | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ThresholdOut]:
        """Low-stock thresholds in the caller's subtree, with the units on hand now."""
        return await stock.list_thresholds(
            conn, principal, org_id=org_id, product_id=product_id, page=page, per_page=per_page
        )

    @put("/thresholds/{org_id:int}/{product_id:int}")
    async def set_threshold(
        self, org_id: int, product_id: int, data: ThresholdIn, conn: Conn, principal: Principal
    ) -> ThresholdOut:
        """Set a store's (or any organisation's) low-stock threshold for a product: below it, a
        ``low_stock`` alert opens for the organisation (critical at zero)."""
        return await stock.set_threshold(conn, principal, org_id, product_id, data)
