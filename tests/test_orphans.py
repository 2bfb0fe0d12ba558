"""Jobs left without a runner (probe J: an API process killed or cut off from PostgreSQL mid-run,
or a broker that could not take the job, left exports and captures unfinished for ever): the
workers' sweeper sends again exactly those no runner holds."""

from __future__ import annotations

import json
from typing import Any

from app import locks
from app.locks import Lock
from app.ops.orphans import resend_orphans
from tests.helpers import acting, issue_units

EXPORT = {"outer": {"passphrase": "a long passphrase"}, "inner": {"passphrase": "another one!"}}
DOCUMENT = {
    "@context": "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    "type": "EPCISDocument",
    "schemaVersion": "2.0",
    "creationDate": "2026-12-01T08:00:00Z",
    "epcisBody": {"eventList": []},
}


async def _export(client: Any, login: Any, demo: Any) -> str:
    batch_no, _ = await issue_units(client, login, demo, 3)
    made = await client.post(
        f"/batches/{batch_no}/exports", headers=await login("planner"), json=EXPORT
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def test_the_sweeper_sends_again_only_the_jobs_no_runner_holds(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    from app.epcis import capture

    # two exports whose runner died (running, finished by nobody); one has a live runner; one
    # whose runs died again and again (a poison job) is failed, not sent again
    dead, alive = await _export(client, login, demo), await _export(client, login, demo)
    poison = await _export(client, login, demo)
    # two captures committed and never run; one is being run (its row locked)
    async with app.state.pool.connection() as conn:
        partner = await acting(conn, "partner")
        body = json.dumps(DOCUMENT).encode()
        left = (await capture.accept(conn, partner, body)).captureID
        running = (await capture.accept(conn, partner, body)).captureID
        await conn.execute(
            "UPDATE code_exports SET state = 'running', started_at = now() - interval '1 hour' "
            "WHERE id = ANY(%s::uuid[])",
            ([dead, alive, poison],),
        )
        await conn.execute("UPDATE code_exports SET attempts = 5 WHERE id = %s", (poison,))
        await conn.execute(
            "UPDATE epcis_captures SET created_at = now() - interval '1 hour' "
            "WHERE id = ANY(%s::uuid[])",
            ([left, running],),
        )
    sent: list[tuple[str, str]] = []
    async with app.state.pool.connection() as runner, app.state.pool.connection() as sweeper:
        await sweeper.set_autocommit(True)
        await runner.set_autocommit(True)
        await runner.execute(*locks.acquire(Lock.EXPORT_RUN, alive))
        async with runner.transaction():
            await runner.execute(
                "SELECT 1 FROM epcis_captures WHERE id = %s FOR UPDATE", (running,)
            )
            assert await resend_orphans(sweeper, lambda *job: sent.append(job), age=60) >= 2
        await runner.execute(*locks.release(Lock.EXPORT_RUN, alive))
        await runner.set_autocommit(False)
        await sweeper.set_autocommit(False)
    assert ("run_export_job", dead) in sent and ("capture_job", left) in sent
    assert ("run_export_job", alive) not in sent and ("capture_job", running) not in sent
    assert ("run_export_job", poison) not in sent
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT state, error FROM code_exports WHERE id = %s", (poison,))
        ).fetchone()
    assert row["state"] == "failed" and "5 times" in row["error"]
    # a young job is left to the runner it was handed to
    fresh: list[tuple[str, str]] = []
    async with app.state.pool.connection() as sweeper:
        await sweeper.set_autocommit(True)
        await resend_orphans(sweeper, lambda *job: fresh.append(job), age=3600 * 24)
        await sweeper.set_autocommit(False)
    assert ("capture_job", left) not in fresh
