"""How a member's phone is shown: masked, except to the member and staff allowed to see it.

``mask_phone`` is the one masking rule (the members admin, redemption checks, SMS logs and exports
all call it): the first three and the last four digits stay, the rest become ``*`` —
``13812341234`` → ``138****1234``. Shorter numbers keep less so that at least half is hidden.
``shown_phone`` is the one rule of who sees it whole: staff holding ``members.read_phone``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.auth.principal import Principal

READ_PHONE = "members.read_phone"


def mask_phone(phone: str | None) -> str:
    """``138****1234`` for ``13812341234``; never more than half of a short number is shown."""
    if not phone:
        return ""
    n = len(phone)
    if n >= 11:
        head, tail = 3, 4
    elif n >= 7:
        head, tail = 2, 2
    else:
        head, tail = 0, min(2, n // 2)
    return phone[:head] + "*" * (n - head - tail) + phone[n - tail :]


def shown_phone(actor: Principal, phone: str) -> str:
    """The phone as ``actor`` may see it: whole with ``members.read_phone``, else masked."""
    return phone if actor.has(READ_PHONE) else mask_phone(phone)
