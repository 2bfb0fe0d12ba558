"""Who is calling: a user (JWT) or a partner system (API key), its organisation and permissions."""

from __future__ import annotations

import msgspec

from app.errors import Forbidden, NotFound


class Principal(msgspec.Struct, frozen=True):
    org_id: int
    org_path: str
    permissions: frozenset[str]
    user_id: int | None = None
    api_key_id: int | None = None
    username: str | None = None

    @property
    def brand_id(self) -> int:
        """The root of the caller's tree: its brand."""
        return int(self.org_path.strip("/").split("/")[0])

    def has(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, *permissions: str) -> None:
        missing = [p for p in permissions if p not in self.permissions]
        if missing:
            raise Forbidden(
                f"missing permission {', '.join(missing)}",
                code="permission_denied",
                details={"missing": missing},
            )

    def sees(self, org_path: str) -> bool:
        """Whether an organisation (by its path) lies in the caller's subtree."""
        return org_path.startswith(self.org_path)

    def ensure_sees(self, org_path: str | None, what: str = "organisation") -> None:
        """Records outside the caller's subtree are reported as not found, never leaked."""
        if org_path is None or not self.sees(org_path):
            raise NotFound(f"{what} not found")
