"""User and role shapes (SPEC U2, U3)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.auth.schemas import Password

Username = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.@-]{3,64}(?!\n)$")]
RoleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,39}(?!\n)$")]
DisplayName = Annotated[str, msgspec.Meta(max_length=100)]
Phone = Annotated[str, msgspec.Meta(max_length=32, pattern=r"^[0-9+() -]*(?!\n)$")]
Email = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+(?!\n)$")]
Roles = Annotated[list[RoleName], msgspec.Meta(max_length=20)]
Status = Literal["active", "inactive"]


class UserIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    org_id: int
    username: Username
    password: Password
    roles: Roles
    display_name: DisplayName = ""
    phone: Phone | None = None
    email: Email | None = None
    must_change_password: Annotated[
        bool,
        msgspec.Meta(
            description="the user replaces this password at the first sign-in (POST "
            "/auth/password) before anything else: 403 password_change_required until then"
        ),
    ] = False


class UserPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    email: Email | msgspec.UnsetType | None = msgspec.UNSET
    roles: Roles | msgspec.UnsetType = msgspec.UNSET
    status: Status | msgspec.UnsetType = msgspec.UNSET
    password: Password | msgspec.UnsetType = msgspec.UNSET
    # with a reset: the user replaces it at the next sign-in (cleared by POST /auth/password)
    must_change_password: bool | msgspec.UnsetType = msgspec.UNSET


class UserOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    org_id: int
    username: str
    display_name: str
    phone: str | None
    email: str | None
    status: str
    roles: list[str]
    erp_code: Annotated[str | None, msgspec.Meta(description="the ERP's code (set by import)")]
    last_login_at: datetime | None
    must_change_password: bool
    created_at: datetime
    updated_at: datetime


class RoleIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: RoleName
    permissions: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    description: Annotated[str, msgspec.Meta(max_length=200)] = ""


class RolePatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    permissions: (
        Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)] | msgspec.UnsetType
    ) = msgspec.UNSET
    description: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType = msgspec.UNSET


class RoleOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    org_id: int | None
    name: str
    description: str
    permissions: list[str]
    builtin: bool


class PermissionOut(msgspec.Struct, frozen=True):
    name: str
    description: str
