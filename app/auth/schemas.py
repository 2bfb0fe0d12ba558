"""Request and response shapes of login, tokens and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from app.textguard import VISIBLE

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=VISIBLE)]  # seen


class LoginIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]


class PasswordChangeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The caller's own password: the current one, and the new one (8 to 256 characters)."""

    current_password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    new_password: Password


class RefreshIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class TokenOut(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_at: int
    refresh_expires_at: int


class MeOut(msgspec.Struct, frozen=True):
    org_id: int
    permissions: list[str]
    user_id: int | None
    username: str | None
    api_key_id: int | None
    # of the brand organisation itself: what only the brand's own staff read (member and
    # verification statistics, members, SMS) is open to it, whatever the permissions say
    brand_staff: bool = False
    # the password someone else chose is to be replaced first (POST /auth/password): until
    # then every other request is 403 ``password_change_required``
    must_change_password: bool = False
    # of ``org_id`` (a probe: the console's home showed those without reports.read a number)
    org_name: str = ""


class ApiKeyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    permissions: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    org_id: int | None = None


class ApiKeyOut(msgspec.Struct, frozen=True):
    id: int
    org_id: int
    name: str
    prefix: str
    permissions: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(msgspec.Struct, frozen=True):
    key: str  # shown once; only a hash is stored
    api_key: ApiKeyOut
