"""How a member's phone, e-mail and WeChat id are shown: masked, except to the member and staff
allowed to see them.

``mask_phone`` is the one masking rule (the members admin, redemption checks, SMS logs and exports
all call it): the first three and the last four digits stay, the rest become ``*`` —
``13812341234`` → ``138****1234``. Shorter numbers keep less so that at least half is hidden.
``sees_phones`` is the one rule of who sees it whole: the brand's own staff (members are the
brand head office's) holding ``members.read_phone`` — a role below the brand granting it shows
nothing more (a probe: a store's user given it read every redeeming member's whole phone).
A member's e-mail and WeChat id are the phone's kind of data and follow its rule
(``shown_email``, ``shown_wechat_id``) wherever staff list, export or open members, as the audit
log masks them (a probe: customer service read every e-mail whole in the members' CSV, beside
masked phones, while ``GET /audit`` masked them). ``mask_email`` is the one e-mail masking
(``l***@example.com``), the audit log's for users' rows too.
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


def sees_phones(actor: Principal) -> bool:
    """Whether ``actor`` sees members' phones whole: brand staff holding ``members.read_phone``."""
    return actor.org_id == actor.brand_id and actor.has(READ_PHONE)


def shown_phone(actor: Principal, phone: str) -> str:
    """The phone as ``actor`` may see it: whole to ``sees_phones``, else masked."""
    return phone if sees_phones(actor) else mask_phone(phone)


def mask_email(email: str) -> str:
    """``l***@example.com`` for ``lin.wei@example.com``: the first character and the domain;
    ``***`` for a text without ``@``."""
    name, at, domain = email.partition("@")
    return f"{name[:1]}***{at}{domain}" if at else "***"


def mask_wechat_id(wechat_id: str) -> str:
    """``l***`` for ``lin_wei88``: the first character, as an e-mail's name."""
    return f"{wechat_id[:1]}***"


def shown_email(actor: Principal, email: str | None) -> str | None:
    """A member's e-mail as ``actor`` may see it: whole to ``sees_phones``, else masked."""
    return email if email is None or sees_phones(actor) else mask_email(email)


def shown_wechat_id(actor: Principal, wechat_id: str | None) -> str | None:
    """A member's WeChat id as ``actor`` may see it: whole to ``sees_phones``, else masked."""
    return wechat_id if wechat_id is None or sees_phones(actor) else mask_wechat_id(wechat_id)
