"""Who is calling: a user (JWT) or a partner system (API key), its organisation and permissions."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from app.errors import Forbidden, NotFound


def path_ids(org_path: str) -> list[int]:
    """The organisations of a path, the brand first: ``/7/12/30/`` -> [7, 12, 30]."""
    return [int(org) for org in org_path.strip("/").split("/")]


def brand_of(org_path: str) -> int:
    """The brand of an organisation path (``/brand/…/``): the root of its tree."""
    return int(org_path.strip("/").split("/")[0])


class Principal(msgspec.Struct, frozen=True):
    org_id: int
    org_path: str
    permissions: frozenset[str]
    user_id: int | None = None
    api_key_id: int | None = None
    username: str | None = None
    key_maker: int | None = None  # an API key's: the user who made it (None: a system key)
    # a user's password someone else chose, not yet replaced: only POST /auth/password and GET
    # /auth/me serve it (``app.deps``; 403 ``password_change_required``)
    password_change_due: bool = False

    @property
    def person(self) -> int | None:
        """The person behind the call: the user, or the user who made the API key (review R5:
        a key its maker made skipped the rules on one's own password and approvals)."""
        return self.user_id if self.user_id is not None else self.key_maker

    @property
    def brand_id(self) -> int:
        """The root of the caller's tree: its brand."""
        return brand_of(self.org_path)

    def has(self, permission: str) -> bool:
        return permission in self.permissions

    def has_any(self, *permissions: str) -> bool:
        """Whether the caller holds at least one of ``permissions`` (a widening, not a check:
        ``require``/``require_any`` refuse)."""
        return not self.permissions.isdisjoint(permissions)

    def require(self, *permissions: str) -> None:
        missing = [p for p in permissions if p not in self.permissions]
        if missing:
            raise Forbidden(
                f"missing permission {', '.join(missing)}",
                code="permission_denied",
                details={"missing": missing},
            )

    def require_any(self, *permissions: str) -> None:
        """At least one of ``permissions`` (403 ``permission_denied`` naming them all)."""
        if self.permissions.isdisjoint(permissions):
            raise Forbidden(
                f"missing permission {' or '.join(permissions)}",
                code="permission_denied",
                details={"missing": list(permissions)},
            )

    def sees(self, org_path: str) -> bool:
        """Whether an organisation (by its path) lies in the caller's subtree."""
        return org_path.startswith(self.org_path)

    def ensure_sees(self, org_path: str | None, what: str = "organisation") -> None:
        """Records outside the caller's subtree are reported as not found, never leaked."""
        if org_path is None or not self.sees(org_path):
            raise NotFound(f"{what} not found")

    @property
    def is_platform(self) -> bool:
        """A platform operator: onboards brands (tenants) and administers their trees."""
        return "platform.admin" in self.permissions

    @property
    def admin_scope(self) -> str:
        """The path prefix of the organisations and users the caller administers: its own
        subtree; for a platform operator every brand's tree. Only the organisation and user
        endpoints use it; every other read and write stays within ``org_path``."""
        return "/" if self.is_platform else self.org_path

    def ensure_administers(self, org_path: str | None, what: str = "organisation") -> None:
        """Like ``ensure_sees``, over ``admin_scope``."""
        if org_path is None or not org_path.startswith(self.admin_scope):
            raise NotFound(f"{what} not found")

    def lacks(self, permissions: Iterable[str]) -> list[str]:
        """The permissions of another principal (a user, role or API key) this caller does not
        hold, sorted: nobody grants, edits or disables what is stronger than themselves."""
        return sorted(set(permissions) - self.permissions)
