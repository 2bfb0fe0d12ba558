"""Operational actors, the sweeper of jobs left without a runner (``app.ops.orphans``) and the
retention sweeper of personal information (``app.retention``)."""

from __future__ import annotations

import logging
import time

import dramatiq

from app.db import Conn
from app.jobs import redis_client, send, settings
from app.locks import Lock, run_alone
from app.ops.orphans import SWEEP_SECONDS, resend_orphans
from app.retention import SWEEP_SECONDS as RETENTION_SECONDS
from app.retention import sweep
from workers.periodic import PeriodicRollup

log = logging.getLogger("tracecode.orphans")


class OrphanSweeper(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("orphans", _sweep, interval=SWEEP_SECONDS)


async def _sweep(conn: Conn) -> None:
    """One process at a time sends again the jobs left without a runner."""
    sent = await run_alone(
        conn, Lock.ORPHAN_SWEEP, lambda: resend_orphans(conn, send, settings.export_path)
    )
    if sent:
        log.warning("sent again %d export or capture jobs left without a runner", sent)


class RetentionSweeper(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("retention", _retain, interval=RETENTION_SECONDS)


async def _retain(conn: Conn) -> None:
    """One process at a time clears what is kept no longer (``app.retention``)."""
    swept = await run_alone(conn, Lock.RETENTION_SWEEP, lambda: sweep(conn, settings))
    if swept and any(vars(swept).values()):
        logging.getLogger("tracecode.retention").info(
            "cleared the details of %d verification records, %d SMS numbers, %d sign-in codes, "
            "%d dead letters, %d WeChat messages, %d fraud holds' client addresses",
            swept.scans,
            swept.sms,
            swept.codes,
            swept.letters,
            swept.wechat,
            swept.holds,
        )


@dramatiq.actor(max_retries=0)
def ping(token: str) -> None:
    """Answer through Redis, so a test or an operator can prove the worker pipeline end to end.
    Idempotent: a second delivery sets the same key again."""
    redis_client.set(f"{settings.redis_namespace}:pong:{token}", str(time.time()), ex=300)
