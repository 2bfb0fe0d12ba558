"""The answers of the operations endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Check(msgspec.Struct, frozen=True):
    status: str
    detail: str | None = None


class HealthOut(msgspec.Struct, frozen=True):
    status: str
    version: str
    postgres: Check
    redis: Check
    workers: Check
    down: list[str] = []  # what is not ok: "postgres", "redis", "workers"
    # records set aside per queue (app/deadletters.py): reported, but health stays 200
    dead_letters: dict[str, int] = msgspec.field(default_factory=dict)
    # the read replica (TRACECODE_DATABASE_REPLICA_URL, app/replica.py), when there is one:
    # ok, lagging, down, not_standby, wrong_standby or starting. Not ok: listed in down, but
    # health stays 200 (its reads go to the primary).
    replica: Check | None = None


class AuditOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: datetime
    actor_user: int | None
    actor_key: int | None
    org_id: int | None
    action: str
    entity: str
    entity_id: str | None
    before: Any
    after: Any
    request_id: str | None
