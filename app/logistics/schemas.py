"""Shapes of orders, documents and movements (SPEC L1–L8, L10), stock and thresholds (L9)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar, Literal

import msgspec

from app.bodies import SCAN_MAX
from app.idempotency import ClientId
from app.localtime import check_day

OrderKind = Literal["sales", "purchase", "transfer", "return"]
OrderStatus = Literal["open", "shipped", "received", "closed", "cancelled"]
DocKind = Literal["factory_inbound", "outbound", "exception", "inbound", "sale", "return"]
DocStatus = Literal["draft", "pending_approval", "confirmed", "rejected", "cancelled"]
ExceptionReason = Literal["staff_welfare", "gift", "sample", "other"]
ReturnReason = Literal["damaged", "expired", "wrong_goods", "other"]
# 包装类型 of a document line: the level of the packages it moved, ``mixed`` when of several
PackageLevel = Literal["inner", "master", "pallet", "mixed"]
Text = Annotated[str, msgspec.Meta(max_length=200)]
ScanCode = Annotated[str, msgspec.Meta(min_length=1, max_length=SCAN_MAX)]
MAX_CODES = 200_000


class OrderLineIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    product_id: int
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]


class OrderIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An order from ERP or by hand; ``erp_no`` makes it idempotent (same number, same order)."""

    erp_no: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[!-~]+(?!\n)$")]
    kind: OrderKind = "sales"
    from_org_id: int
    to_org_id: int
    order_date: date | None = None
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    lines: Annotated[list[OrderLineIn], msgspec.Meta(min_length=1, max_length=1000)]

    def __post_init__(self) -> None:
        check_day(self.order_date, 366, "order_date")


class OrderLineOut(msgspec.Struct, frozen=True, kw_only=True):
    line_no: int
    product_id: int
    product_name: str
    quantity: int
    shipped: int
    received: int


class OrderOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    erp_no: str
    kind: OrderKind
    from_org_id: int
    to_org_id: int
    status: OrderStatus
    order_date: date
    note: str
    source: str
    created_at: datetime
    lines: list[OrderLineOut]


class DocumentIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A new document (draft). ``org_id``: the organisation doing it (default: the caller's).

    factory_inbound: into a factory warehouse from the factory (``counterparty_id``, default the
    warehouse's parent; no order); outbound: to ``counterparty_id`` (optionally against
    ``order_id``: then to the order's receiver, another ``counterparty_id`` is 422
    ``wrong_order``); exception: goods leaving without an order or a counterparty, needs
    approval (``reason``; an ``order_id`` on either is refused, 422 ``order_not_allowed``);
    inbound: receiving ``shipment_id`` (an outbound document) or the shipments of ``order_id``,
    from who shipped them (a ``counterparty_id`` on it or on an exception is refused, 422
    ``counterparty_not_allowed``); return: back to ``counterparty_id`` (default: who shipped the
    goods to us; no order: 422 ``order_not_allowed``). A ``shipment_id`` on any kind but an
    inbound is refused, 422 ``shipment_not_allowed``. ``customer``, ``customer_type`` and
    ``destination_city`` left out of an outbound or a return are its counterparty's name, kind
    and city.
    """

    kind: Literal["factory_inbound", "outbound", "exception", "inbound", "return"]
    org_id: int | None = None
    counterparty_id: int | None = None
    order_id: int | None = None
    shipment_id: int | None = None
    doc_date: date | None = None
    signee: Text | None = None
    phone: Annotated[str, msgspec.Meta(max_length=32, pattern=r"^[0-9+() -]*(?!\n)$")] | None = None
    customer: Text | None = None
    customer_type: Text | None = None
    destination_city: Text | None = None
    salesperson_id: int | None = None
    reason: Text | None = None
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""

    def __post_init__(self) -> None:
        check_day(self.doc_date, 366, "doc_date")


Codes = Annotated[list[ScanCode], msgspec.Meta(min_length=1, max_length=MAX_CODES)]


class CodesIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Codes scanned into a draft. ``client_id``: the app's id of this request, stored with each
    code it adds; sent again (its answer lost), a code it added answers ``added`` again, not
    ``duplicate`` (one added by another request stays ``duplicate``)."""

    codes: Codes
    client_id: ClientId | None = None


class RemoveCodesIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Codes taken off a draft."""

    codes: Codes


class ItemResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: str
    result: Literal["added", "duplicate", "rejected"]
    kind: Literal["unit", "case"] | None = None
    reason: str | None = None


class ItemsOut(msgspec.Struct, frozen=True, kw_only=True):
    added: int
    rejected: int
    items: list[ItemResult]


class RemovedResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: str
    result: Literal["removed", "not_on_document", "rejected"]
    kind: Literal["unit", "case"] | None = None
    reason: str | None = None


class RemovedOut(msgspec.Struct, frozen=True, kw_only=True):
    removed: int
    items: list[RemovedResult]


class DocumentLineOut(msgspec.Struct, frozen=True, kw_only=True):
    """Units and packages (outermost cases) of one product and lot of a confirmed document.
    ``package_level``: the packages' level (``mixed``: of several; null: none moved, or a line
    confirmed before levels were recorded whose level was not known); ``manufacturer``: the
    organisation whose packing line packed the units (null: not known)."""

    product_id: int
    product_name: str
    lot: str
    units: int
    packages: int
    package_level: PackageLevel | None
    manufacturer_id: int | None
    manufacturer: str | None


class DocumentOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    doc_no: str
    direction: Literal["inbound", "outbound"]
    kind: DocKind
    org_id: int
    org_name: str
    counterparty_id: int | None
    counterparty_name: str | None
    order_id: int | None
    order_no: str | None
    shipment_id: int | None
    doc_date: date
    handler_id: int | None
    handler_name: str | None
    signee: str | None
    phone: str | None
    customer: str | None
    customer_type: str | None
    destination_city: str | None
    salesperson_id: int | None
    reason: str | None
    status: DocStatus
    note: str
    discrepancies: dict[str, object] | None
    approved_by: int | None  # who approved or rejected it (L4)
    approved_at: datetime | None
    decision_note: str  # the approver's words (``note``: the requester's)
    confirmed_at: datetime | None
    client_at: datetime | None  # a sale's time on the phone (``SaleIn.client_at``)
    #: who confirmed a document that waits for approval (its approver is someone else)
    submitted_by: int | None
    created_at: datetime
    items: int
    units: int
    packages: int
    lines: list[DocumentLineOut]


class SummaryLineOut(msgspec.Struct, frozen=True, kw_only=True):
    """One product of a document's running count: ``scanned`` units (cases counted as the units
    inside them). Against an order: the line's ``ordered`` quantity, ``done`` (already shipped or
    received on it by confirmed documents) and ``remaining`` (what the line still lacks once this
    draft is confirmed; negative: over); ``over``: more than the order's line, or a product the
    order does not name."""

    product_id: int
    product_name: str
    line_no: int | None
    ordered: int | None
    done: int | None
    scanned: int
    remaining: int | None
    over: bool


class DocumentSummaryOut(msgspec.Struct, frozen=True, kw_only=True):
    """A document's running count per product, from the codes scanned into it so far."""

    id: int
    status: DocStatus
    order_id: int | None
    cases: int  # case codes scanned
    units: int  # units in them and scanned loose (each unit once)
    lines: list[SummaryLineOut]


class DecisionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class SaleIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A store sells units (or whole cases) by scanning (L7).

    ``client_at``: when the phone scanned the sale (one queued offline arrives later), with its
    zone; at most 10 minutes ahead of the server's clock and 30 days old, as an inspection's. It
    dates the sale — never before the units' last movement (their receipt), never after now."""

    # added after sales were fingerprinted: left out of the fingerprint when not sent
    fingerprint_late: ClassVar[tuple[str, ...]] = ("client_at",)

    codes: Annotated[list[ScanCode], msgspec.Meta(min_length=1, max_length=10_000)]
    org_id: int | None = None
    customer: Text | None = None
    phone: Annotated[str, msgspec.Meta(max_length=32, pattern=r"^[0-9+() -]*(?!\n)$")] | None = None
    # the app's id of this sale: sent again with the same body, the first sale is answered
    client_id: ClientId | None = None
    client_at: datetime | None = None


class ReturnIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A consumer brings a sold unit back to the store that sold it (L8): it returns to that
    store's stock (disposition returned / damaged / expired); with ``exchange_for`` another unit
    of the store is sold in its place."""

    code: ScanCode
    reason: ReturnReason
    exchange_for: ScanCode | None = None
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class ReturnOut(msgspec.Struct, frozen=True, kw_only=True):
    returned: str
    disposition: str
    exchanged_for: str | None
    documents: list[str]
    # the unit's unsettled rebate claim, withdrawn by the return (``app.rebates.returns``)
    rebate_withdrawn: int | None = None
    # the unit's points claim, withdrawn by the return (``app.members.returns``)
    points_withdrawn: int | None = None
    # the unit's lucky draw, withdrawn by the return (``app.draws.returns``)
    draw_withdrawn: int | None = None


class StockOut(msgspec.Struct, frozen=True, kw_only=True):
    org_id: int
    org_name: str
    product_id: int
    product_name: str
    lot: str
    on_hand: int
    in_transit: int
    updated_at: datetime
    packages: int  # outermost cases on hand holding units (``center.packages_on_hand``)


class ThresholdIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Alert when the organisation's units of the product on hand (all lots) fall below this;
    0 turns the alert off."""

    min_units: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]


class ThresholdOut(msgspec.Struct, frozen=True, kw_only=True):
    org_id: int
    org_name: str
    product_id: int
    product_name: str
    min_units: int
    on_hand: int  # summed over lots, as rolled up
    below: bool


class SalespersonOut(msgspec.Struct, frozen=True, kw_only=True):
    """A user an outbound may name as its responsible salesperson (``salesperson_id``)."""

    id: int
    username: str
    display_name: str
    org_id: int
    org_name: str
    org_kind: str
