"""The audit log writer: one row per change — who, what, when, before and after (SPEC U4)."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from app.auth.principal import Principal
from app.db import Conn
from app.logs import request_id_var


def _plain(value: Any) -> Any:
    if value is None:
        return None
    return msgspec.to_builtins(value, builtin_types=(), enc_hook=str)


async def record(
    conn: Conn,
    actor: Principal | None,
    action: str,
    entity: str,
    entity_id: object,
    *,
    before: Any = None,
    after: Any = None,
    org_id: int | None = None,
) -> None:
    """Write one audit row in the caller's transaction (so it commits or rolls back with it)."""
    await conn.execute(
        """INSERT INTO audit_log
               (actor_user, actor_key, org_id, action, entity, entity_id, before, after, request_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            actor.user_id if actor else None,
            actor.api_key_id if actor else None,
            org_id if org_id is not None else (actor.org_id if actor else None),
            action,
            entity,
            None if entity_id is None else str(entity_id),
            Jsonb(_plain(before)) if before is not None else None,
            Jsonb(_plain(after)) if after is not None else None,
            request_id_var.get(),
        ),
    )
