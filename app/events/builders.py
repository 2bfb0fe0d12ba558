"""One constructor per EPCIS event shape Tracecode records; every domain builds events here.

Each fixes what its shape fixes (event type, action, and the bizStep/disposition where the shape
has one) and takes the rest by keyword, typed with the vocabularies of ``app.events.epcis``:

=================  ================  =======  ========================  =====================
constructor        event type        action   bizStep                   disposition
=================  ================  =======  ========================  =====================
``commission``     ObjectEvent       ADD      commissioning             active
``decommission``   ObjectEvent       DELETE   decommissioning           inactive
``observe``        ObjectEvent       OBSERVE  given (shipping, …)       given
``aggregate``      AggregationEvent  ADD      packing (or replacing)    in_progress
``disaggregate``   AggregationEvent  DELETE   unpacking                 given (default none)
=================  ================  =======  ========================  =====================

They only build ``NewEvent`` values; ``app.events.log.write_events`` writes them in bulk. ``id``
is one from ``allocate_ids`` when the caller must name the event before writing it (state rows
point at it), else ``None`` and the writer allocates one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from app.events.epcis import BizStep, Disposition
from app.events.log import NewEvent


def geo_uri(lat: float, lng: float) -> str:
    """A read point where a phone was: a geo URI (RFC 5870, ``geo:30.2592,120.1303``), each
    coordinate as Python writes it (the read points recorded before stay the same text for
    ``EQ_readPoint``), but never in exponent form (a probe: ``f"geo:{lat}"`` wrote
    ``geo:1e-05,…``, no geo URI at all)."""
    return f"geo:{_plain(lat)},{_plain(lng)}"


def _plain(coordinate: float) -> str:
    text = repr(float(coordinate))
    return text if "e" not in text else format(Decimal(text), "f")


def commission(
    *,
    id: int | None,
    brand_id: int,
    at: datetime,
    units: list[int],
    recorded_by: int | None,
    details: dict[str, Any] | None = None,
    read_point: str | None = None,
    biz_location: int | None = None,
) -> NewEvent:
    """Units activated: ObjectEvent ADD, commissioning, active."""
    return NewEvent(
        id=id,
        brand_id=brand_id,
        event_type="ObjectEvent",
        action="ADD",
        biz_step="commissioning",
        disposition="active",
        event_time=at,
        units=units,
        read_point=read_point,
        biz_location=biz_location,
        recorded_by=recorded_by,
        details=details,
    )


def decommission(
    *,
    id: int | None,
    brand_id: int,
    at: datetime,
    units: list[int],
    recorded_by: int | None,
    details: dict[str, Any] | None = None,
    biz_location: int | None = None,
) -> NewEvent:
    """Units voided: ObjectEvent DELETE, decommissioning, inactive."""
    return NewEvent(
        id=id,
        brand_id=brand_id,
        event_type="ObjectEvent",
        action="DELETE",
        biz_step="decommissioning",
        disposition="inactive",
        event_time=at,
        units=units,
        biz_location=biz_location,
        recorded_by=recorded_by,
        details=details,
    )


def observe(
    *,
    id: int | None,
    brand_id: int,
    at: datetime,
    biz_step: BizStep,
    disposition: Disposition | None,
    units: list[int],
    cases: list[int] | None = None,
    recorded_by: int | None,
    details: dict[str, Any] | None = None,
    read_point: str | None = None,
    biz_location: int | None = None,
    source_org: int | None = None,
    destination_org: int | None = None,
    biz_transactions: list[dict[str, str]] | None = None,
) -> NewEvent:
    """Goods seen at a step (shipped, received, sold, inspected, returned): ObjectEvent OBSERVE
    with the step's bizStep and the disposition the goods are left in."""
    return NewEvent(
        id=id,
        brand_id=brand_id,
        event_type="ObjectEvent",
        action="OBSERVE",
        biz_step=biz_step,
        disposition=disposition,
        event_time=at,
        units=units,
        cases=cases or [],
        read_point=read_point,
        biz_location=biz_location,
        source_org=source_org,
        destination_org=destination_org,
        biz_transactions=biz_transactions,
        recorded_by=recorded_by,
        details=details,
    )


def aggregate(
    *,
    id: int | None,
    brand_id: int,
    at: datetime,
    parent: int,
    units: list[int],
    cases: list[int] | None = None,
    recorded_by: int | None,
    details: dict[str, Any] | None = None,
    biz_step: Literal["packing", "replacing"] = "packing",
    read_point: str | None = None,
    biz_location: int | None = None,
    client_event_id: str | None = None,
) -> NewEvent:
    """Children put into the case ``parent`` (its SSCC as a number): AggregationEvent ADD,
    in_progress."""
    return NewEvent(
        id=id,
        brand_id=brand_id,
        event_type="AggregationEvent",
        action="ADD",
        biz_step=biz_step,
        disposition="in_progress",
        event_time=at,
        parent=parent,
        units=units,
        cases=cases or [],
        read_point=read_point,
        biz_location=biz_location,
        recorded_by=recorded_by,
        client_event_id=client_event_id,
        details=details,
    )


def disaggregate(
    *,
    id: int | None,
    brand_id: int,
    at: datetime,
    parent: int,
    units: list[int],
    cases: list[int] | None = None,
    recorded_by: int | None,
    details: dict[str, Any] | None = None,
    disposition: Disposition | None = None,
    read_point: str | None = None,
    biz_location: int | None = None,
) -> NewEvent:
    """Children taken out of the case ``parent``: AggregationEvent DELETE, unpacking."""
    return NewEvent(
        id=id,
        brand_id=brand_id,
        event_type="AggregationEvent",
        action="DELETE",
        biz_step="unpacking",
        disposition=disposition,
        event_time=at,
        parent=parent,
        units=units,
        cases=cases or [],
        read_point=read_point,
        biz_location=biz_location,
        recorded_by=recorded_by,
        details=details,
    )
