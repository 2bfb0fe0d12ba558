"""Shapes of a store clerk's rebate claim (R1); the input is ``app.claims.ClaimIn``."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.forensics.status import ClaimStatus
from app.verify.schemas import VerifyOut


class RebateClaimOut(msgspec.Struct, frozen=True, kw_only=True):
    claim_id: int
    serial: str
    amount: float  # yuan, a multiple of 0.5: the rule in force when the claim was made
    product_id: int
    store_id: int
    agent_id: int | None  # the store's nearest agent, whose rule applied, if any
    clerk_id: int
    claimed_at: datetime
    sale_recorded: bool  # the claim recorded the unit's sale (it had not been scanned as sold)
    verification: VerifyOut | None  # None on a replay (the same client id again)
    # under_review: the clerk is on hold (app.forensics.holds): the code is taken, the rebate is
    # credited once a reviewer releases the hold (rejected: never)
    status: ClaimStatus = "credited"
