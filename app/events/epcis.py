"""The EPCIS 2.0 vocabularies Tracecode records, as literal types (CBV 2.0 short names).

Every event is built through ``app.events.builders``, whose arguments carry these types, so a
misspelt bizStep or disposition is a type error, not a row no report will ever find.
"""

from __future__ import annotations

from typing import Literal

EventType = Literal["ObjectEvent", "AggregationEvent"]
Action = Literal["ADD", "OBSERVE", "DELETE"]
BizStep = Literal[
    "commissioning",  # a unit activated on a packing line
    "packing",  # children go into a case
    "unpacking",  # children come out of a case
    "replacing",  # a replacement unit takes a failed one's place in its case
    "decommissioning",  # a unit voided (replaced, its batch voided)
    "shipping",  # an outbound, return or exception document
    "receiving",  # an inbound, a factory inbound, a consumer return
    "retail_selling",  # a store's sale
    "inspecting",  # an anti-diversion inspection on a shelf
    "claiming",  # a member claimed the unit's points (custom step: CBV has none for loyalty)
]
Disposition = Literal[
    "active",
    "in_progress",
    "inactive",
    "in_transit",
    "returned",
    "damaged",
    "expired",
    "sellable_accessible",
    "sellable_not_accessible",
    "non_sellable_other",
    "retail_sold",
]
