"""Shapes of the WeChat service account and its template messages (SPEC W5). Inputs are frozen
and refuse unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Kind = Literal["redemption", "points_reminder", "complaint_reply"]
KINDS: tuple[Kind, ...] = ("redemption", "points_reminder", "complaint_reply")
MessageState = Literal["pending", "sending", "sent", "failed", "dead"]

AppId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^wx[0-9a-f]{16}(?!\n)$",
        description="the service account's AppID (开发者ID): wx and 16 hexadecimal digits",
    ),
]
AppSecret = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9A-Za-z]{16,64}(?!\n)$",
        description="the AppSecret (开发者密码), write-only: stored sealed, never answered; "
        "left out, the one kept stays",
    ),
]
TemplateId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9A-Za-z_-]{1,64}(?!\n)$",
        description="a template id of the account's template library (模板ID)",
    ),
]


class Templates(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The account's template id of each kind of message; one left out (or null) is not sent."""

    redemption: TemplateId | None = None  # a redemption code issued (兑换码已发放)
    points_reminder: TemplateId | None = None  # points enough for a gift (积分提醒)
    complaint_reply: TemplateId | None = None  # the brand answered a complaint (投诉回复)


class AccountIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    app_id: AppId
    app_secret: AppSecret | None = None  # required the first time
    # none: no template (a default instance here made the OpenAPI component's default depend on
    # which of this and AccountOut was documented first: the typed client came out either way)
    templates: Templates | None = None
    enabled: bool = False


class AccountOut(msgspec.Struct, frozen=True, kw_only=True):
    brand_id: int
    configured: bool  # false: no account set (the other fields empty)
    app_id: str | None
    secret_set: bool  # the secret itself is never answered
    templates: Templates
    enabled: bool
    updated_at: datetime | None
    updated_by: int | None


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    member_id: int
    kind: Kind
    cause_key: str
    state: MessageState
    template_id: str | None
    openid: str | None  # masked: the first 4 and last 4 characters
    attempts: int
    msgid: str | None
    errcode: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None  # while pending
