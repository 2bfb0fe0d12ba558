"""The database helper: the async pool, connections per request, and the migration runner."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app.config import Settings

Conn = psycopg.AsyncConnection[dict[str, Any]]
T = TypeVar("T")

MIGRATION_LOCK = 7_245_001  # pg_advisory_lock key: one migrator at a time
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def create_pool(url: str, settings: Settings) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        kwargs={"row_factory": dict_row, "application_name": "tracecode"},
        open=False,
        name="tracecode",
    )


async def connection(pool: AsyncConnectionPool) -> AsyncIterator[Conn]:
    """One connection and one transaction: committed on success, rolled back on error."""
    async with pool.connection() as conn:
        yield conn  # type: ignore[misc]


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in app/migrations, in order."""
    found = []
    for entry in resources.files("app.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


def migrate(url: str) -> list[str]:
    """Apply the migrations not yet applied; return their names. Safe to run concurrently."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
            done = {version: (name, checksum) for version, name, checksum in rows}
            for version, name, text in migrations():
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if version in done:
                    if done[version][1] != checksum:
                        raise RuntimeError(
                            f"migration {name} was changed after it was applied; "
                            "write a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(text)  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (version, name, checksum),
                    )
                applied_now.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now


async def run_alone(
    conn: Conn, lock_key: int, work: Callable[[], Awaitable[T]], *, wait: bool = False
) -> T | None:
    """``work()`` under a session advisory lock, so one process at a time runs it; ``None`` when
    another holds the lock and ``wait`` is false. ``conn`` should be in autocommit mode."""
    if wait:
        await conn.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
    else:
        got = await (
            await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (lock_key,))
        ).fetchone()
        if not got or not got["ok"]:
            return None
    try:
        return await work()
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
