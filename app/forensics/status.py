"""What a claim's answer says of a hold (``app.forensics.holds``): a small leaf module, so the
claim paths (``app.members.points``, ``app.rebates.claims``) import it without the rest."""

from __future__ import annotations

from typing import Literal

# credited: as ever; under_review: the claimant is on hold (the code is taken, nothing credited
# yet); rejected: a reviewer confirmed the hold (never credited)
ClaimStatus = Literal["credited", "under_review", "rejected"]

_STATUS: dict[str | None, ClaimStatus] = {
    None: "credited",
    "released": "credited",
    "held": "under_review",
    "rejected": "rejected",
}


def claim_status(hold_state: str | None) -> ClaimStatus:
    """A claim's status from its ``hold_state`` column."""
    return _STATUS[hold_state]
