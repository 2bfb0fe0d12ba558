"""Jobs left without a runner (probe J), sent again by the workers' sweeper.

An export or an EPCIS capture is a row first, then a job: a worker runs it from a broker
message, or the API runs it inline (an export of up to ``TRACECODE_EXPORT_ASYNC_THRESHOLD``
codes, a capture of up to ``TRACECODE_EPCIS_INLINE_EVENTS`` events). An API process killed
mid-run, a database connection dropped under it, or a broker that could not take the message
(``app.jobs.hand_over``) left the row queued, pending or running for ever, with nothing to run
it but ``tracecode redis rebuild``.

``resend_orphans`` (every ``SWEEP_SECONDS``, ``workers/ops.py``) sends the job again for each
row older than ``ORPHAN_SECONDS`` that no runner holds:
- an export queued or running whose runner's session lock (``Lock.EXPORT_RUN``, held for the
  whole run by ``app.codes.exports.run_export``) is free;
- a capture pending or running whose row no runner has locked (``app.epcis.capture.run`` holds
  it ``FOR UPDATE`` for the whole run).
A job still waiting in the broker's queue that long is sent again (at most once per sweep):
both runners leave a finished job alone, and a copy delivered while a runner holds the job
returns within ``RUN_LOCK_GRACE`` (``app.codes.exports``, ``app.epcis.capture``; a probe: each
copy waited out the whole run on a worker thread, and a few took every thread), so the cost is
a message, never work done twice. An export whose runs keep dying (``MAX_RUNS`` started) is
marked failed, not sent again, and the last killed run's ``*.partial`` files removed (a probe:
they stayed on the export disk for good; every other failed export holds no file); a capture
counts its own runs and fails itself past ``app.epcis.capture.MAX_RUNS``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

from app import locks
from app.db import Conn
from app.locks import Lock

ORPHAN_SECONDS = 300
SWEEP_SECONDS = float(ORPHAN_SECONDS)  # a job is sent again at most once per ORPHAN_SECONDS
MAX_RUNS = 5  # an export whose runs keep dying (its worker killed, say) is left failed after

_EXPORTS = """SELECT id::text, attempts FROM code_exports
               WHERE state IN ('queued', 'running')
                 AND coalesce(started_at, created_at) < now() - make_interval(secs => %s)"""
_FAILED = """UPDATE code_exports SET state = 'failed',
                    error = 'its runs died ' || attempts || ' times'
             WHERE id = %s AND state IN ('queued', 'running')"""
_CAPTURES = """SELECT id::text FROM epcis_captures
                WHERE state IN ('pending', 'running')
                  AND created_at < now() - make_interval(secs => %s)
                  FOR UPDATE SKIP LOCKED"""


async def resend_orphans(
    conn: Conn, send: Callable[[str, str], object], export_path: Path, age: float = ORPHAN_SECONDS
) -> int:
    """Send again the job of every export and capture left without a runner (see the module);
    how many. ``conn`` in autocommit mode; ``export_path`` holds the exports' folders."""
    sent = 0
    for row in await (await conn.execute(_EXPORTS, (age,))).fetchall():
        export_id = row["id"]
        free = await (await conn.execute(*locks.try_acquire(Lock.EXPORT_RUN, export_id))).fetchone()
        if not (free and free["ok"]):
            continue  # a runner has it
        try:
            if row["attempts"] >= MAX_RUNS:
                await conn.execute(_FAILED, (export_id,))
                await asyncio.to_thread(shutil.rmtree, export_path / export_id, True)
                continue
        finally:
            await conn.execute(*locks.release(Lock.EXPORT_RUN, export_id))
        send("run_export_job", export_id)
        sent += 1
    async with conn.transaction():
        for row in await (await conn.execute(_CAPTURES, (age,))).fetchall():
            send("capture_job", row["id"])
            sent += 1
    return sent
