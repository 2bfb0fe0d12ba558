"""Jobs left without a runner (probe J: an API process killed or cut off from PostgreSQL mid-run,
or a broker that could not take the job, left exports and captures unfinished for ever): the
workers' sweeper sends again exactly those no runner holds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app import locks
from app.locks import Lock
from app.ops.orphans import resend_orphans
from tests.conftest import ROOT
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
            assert (
                await resend_orphans(
                    sweeper, lambda *job: sent.append(job), app.state.settings.export_path, age=60
                )
                >= 2
            )
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
        await resend_orphans(
            sweeper, lambda *job: fresh.append(job), app.state.settings.export_path, age=3600 * 24
        )
        await sweeper.set_autocommit(False)
    assert ("capture_job", left) not in fresh


# A run of the export in a process of its own that SIGKILLs itself after its first step (a
# worker OOM-killed or crashing in the core mid-export).
_KILLED_RUN = """
import os, signal, sys
from app.codes import exports
from app.codes.scheme import scheme_from_settings
from app.config import load_settings
exports.STEP = 1000
settings = load_settings()
def die(done, total):
    os.kill(os.getpid(), signal.SIGKILL)
exports.run_export(settings.database_url, settings, scheme_from_settings(settings), sys.argv[1], die)
"""


@pytest.mark.parametrize("ends_it", ["sweeper", "delivery"])
async def test_an_export_failed_after_its_runs_died_leaves_no_partial_files(
    client: Any, login: Any, demo: Any, app: Any, tmp_path: Path, ends_it: str
) -> None:
    """A probe: a worker SIGKILLed mid-export leaves ``outer.tcpf.partial`` and ``inner.tcpf.partial``
    (README: "a killed run leaves only *.partial files, rewritten from the start"). Once the
    runs have died ``MAX_RUNS`` times the export is failed — by the orphan sweeper
    (``app.ops.orphans.resend_orphans``) or by the next delivery (``exports._claim``) — and
    nothing will ever rewrite those files: they stay on the export disk for ever (a
    100,000,000-code export's are gigabytes), whereas every other way an export fails (an
    error of the run, its batch voided) removes its files. What the operator should see: a
    failed export holds no file on disk."""
    from app.auth.service import load_user
    from app.codes import exports
    from app.codes.exports import create_unit_export
    from app.codes.schemas import ExportIn
    from app.ops.orphans import MAX_RUNS, resend_orphans

    made = await client.post(
        "/batches",
        headers=await login("planner"),
        json={"size": 5000, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    batch_no = made.json()["batch_no"]
    export_dir = tmp_path / "exports"
    settings = msgspec.structs.replace(app.state.settings, export_dir=str(export_dir))
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = 'planner'")
        ).fetchone()
        planner = await load_user(conn, row["id"])
        export = await create_unit_export(
            conn, planner, settings, app.state.scheme, batch_no,
            msgspec.convert(EXPORT, ExportIn),
        )  # fmt: skip
        await conn.commit()

    env = {**os.environ, "TRACECODE_EXPORT_DIR": str(export_dir)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _KILLED_RUN, export.id],
        cwd=ROOT, env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    folder = export_dir / export.id
    assert sorted(p.name for p in folder.iterdir()) == ["inner.tcpf.partial", "outer.tcpf.partial"]

    async with app.state.pool.connection() as conn:  # the runs died MAX_RUNS times in all
        await conn.execute(
            "UPDATE code_exports SET attempts = %s, started_at = now() - interval '1 hour' "
            "WHERE id = %s",
            (MAX_RUNS, export.id),
        )
        await conn.commit()
    if ends_it == "sweeper":
        async with app.state.pool.connection() as conn:
            await conn.set_autocommit(True)
            await resend_orphans(conn, lambda *job: None, settings.export_path, age=60)
            await conn.set_autocommit(False)
    else:
        ended = await asyncio.to_thread(
            exports.run_export, app.state.db_url, settings, app.state.scheme, export.id
        )
        assert ended == "failed"
    async with app.state.pool.connection() as conn:
        state = await (
            await conn.execute("SELECT state, error FROM code_exports WHERE id = %s", (export.id,))
        ).fetchone()
    assert state["state"] == "failed", state
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left == [], f"the failed export {export.id} still holds {left} on disk"


async def test_a_queued_export_resent_by_sweeps_does_not_park_worker_threads(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an export job waiting in the broker behind long exports (4 worker threads,
    exports of hours) is sent again by every orphan sweep (every 5 minutes) while it waits: the
    sweeper cannot tell a queued job from a lost one. When the original job ran, each of those
    copies waited on the export's run lock (``run_export``) for the whole run, so a few copies
    took every thread of the worker for hours and no SMS job, capture or other export ran
    (the module's promise: "the cost is a message, never work done twice"). A copy delivered
    while a live runner holds the export returns within ``RUN_LOCK_GRACE``, claiming nothing."""
    from app.codes import exports

    export_id = await _export(client, login, demo)
    settings = app.state.settings
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE code_exports SET state = 'queued', attempts = 0, started_at = NULL, "
            "created_at = now() - interval '20 minutes' WHERE id = %s",
            (export_id,),
        )
    # three sweeps five minutes apart while the job still waits in the broker's queue
    sent: list[tuple[str, ...]] = []
    async with app.state.pool.connection() as sweeper:
        await sweeper.set_autocommit(True)
        for _ in range(3):
            await resend_orphans(sweeper, lambda *job: sent.append(job), settings.export_path)
        await sweeper.set_autocommit(False)
    assert ("run_export_job", export_id) in sent  # a copy besides the original job
    # the original job runs now (a live runner holds the export's run lock) ...
    finished = threading.Event()
    ended: list[str] = []

    def copy() -> None:  # ... and a copy is taken by another worker thread
        try:
            ended.append(
                exports.run_export(app.state.db_url, settings, app.state.scheme, export_id)
            )
        finally:
            finished.set()

    async with app.state.pool.connection() as runner:
        await runner.set_autocommit(True)
        await runner.execute(*locks.acquire(Lock.EXPORT_RUN, export_id))
        try:
            started = time.monotonic()
            threading.Thread(target=copy, daemon=True).start()
            await asyncio.to_thread(finished.wait, 10.0)
            held = time.monotonic() - started
        finally:
            await runner.execute(*locks.release(Lock.EXPORT_RUN, export_id))
            await runner.set_autocommit(False)
        await asyncio.to_thread(finished.wait, 30.0)
        row = await (
            await runner.execute("SELECT attempts FROM code_exports WHERE id = %s", (export_id,))
        ).fetchone()
        # leave no export queued for later tests' orphan sweepers (its files were written)
        await runner.execute("UPDATE code_exports SET state = 'done' WHERE id = %s", (export_id,))
        await runner.commit()
    assert held < 5.0, f"a copy held its worker thread {held:.1f}s while the original ran"
    assert ended == ["running"] and row["attempts"] == 0, (ended, row)


async def test_a_copy_of_a_running_capture_leaves_it_to_its_runner(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: the same as an export's copy, for a capture: a copy of a queued capture job
    (sent again by a sweep while it waited) waited on the job row's lock for the whole run,
    holding its worker thread. It leaves the job to its runner within ``RUN_LOCK_GRACE``,
    without counting a run; a copy after the run finds the job finished."""
    from app.epcis import capture

    async with app.state.pool.connection() as conn:
        job = (
            await capture.accept(conn, await acting(conn, "partner"), json.dumps(DOCUMENT).encode())
        ).captureID
        await conn.commit()
    scheme = app.state.scheme
    async with app.state.pool.connection() as runner, app.state.pool.connection() as copy:
        async with runner.transaction():  # the runner holds the job row for its whole run
            await runner.execute("SELECT 1 FROM epcis_captures WHERE id = %s FOR UPDATE", (job,))
            started = time.monotonic()
            try:
                state = await asyncio.wait_for(capture.run(copy, scheme, job), 10)
            except TimeoutError:
                state = "waited"
            held = time.monotonic() - started
        await copy.commit()
        assert (state, held < 5.0) == ("running", True), (state, held)
        assert await capture.run(copy, scheme, job) == "success"
        await copy.commit()
        assert await capture.run(copy, scheme, job) == "success"
        row = await (
            await copy.execute("SELECT runs FROM epcis_captures WHERE id = %s", (job,))
        ).fetchone()
        await copy.commit()
    assert row["runs"] == 1, row


def _refill_hand_over_slots() -> None:
    """Give ``jobs._HANDING`` back every slot, whatever a failing test left taken."""
    from app import jobs

    while True:
        try:
            jobs._HANDING.release()
        except ValueError:  # a BoundedSemaphore full again
            return


async def test_a_stalled_executor_never_leaves_hand_overs_refusing_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A probe: ``jobs.hand_over`` takes a slot of ``_HANDING``, given back by the thread that
    sends. With the event loop's default executor busy past ``HAND_OVER_SECONDS`` (argon2
    log-ins, document parsing), ``wait_for`` cancelled the queued ``to_thread`` call before a
    thread ran it: no thread gave the slot back. Two such stalls and every later hand-over of
    the process answered False ("broker hung") with a healthy broker, leaving every export,
    capture and message to the sweepers until a restart. A hand-over whose send never started
    gives its slot back; one whose send started and hangs keeps it (a hung broker holds at most
    two threads)."""
    from app import jobs

    sent: list[str] = []
    monkeypatch.setattr(jobs, "send", lambda name, *args: sent.append(name))
    monkeypatch.setattr(jobs, "HAND_OVER_SECONDS", 0.2)
    loop = asyncio.get_running_loop()
    try:
        # the default executor busy for 1.5 s: more sleepers than it has threads
        sleepers = [loop.run_in_executor(None, time.sleep, 1.5) for _ in range(64)]
        await asyncio.sleep(0.05)
        stalled = await asyncio.gather(jobs.hand_over("stalled_a"), jobs.hand_over("stalled_b"))
        await asyncio.gather(*sleepers)  # free again: the broker was never down
        await asyncio.sleep(0.1)
        again = await jobs.hand_over("after_stall")
        assert stalled == [False, False] and "stalled_a" not in sent, (stalled, sent)
        assert again is True and "after_stall" in sent, (again, sent)
        # a hung broker: two sends started and hang, a third hand-over starts no thread
        hung, sending = threading.Event(), threading.Barrier(3)

        def hangs(name: str, *args: Any) -> None:
            sending.wait(5)
            hung.wait(10)
            sent.append(name)

        monkeypatch.setattr(jobs, "send", hangs)
        held = await asyncio.gather(jobs.hand_over("hung_a"), jobs.hand_over("hung_b"))
        await asyncio.to_thread(sending.wait, 5)  # both sends have started
        refused = await jobs.hand_over("hung_c")
        hung.set()
        await asyncio.sleep(0.2)  # the hung sends return, each giving its slot back
        monkeypatch.setattr(jobs, "send", lambda name, *args: sent.append(name))
        freed = await jobs.hand_over("after_hang")
    finally:
        _refill_hand_over_slots()
    assert held == [False, False] and refused is False and "hung_c" not in sent, sent
    assert freed is True and "after_hang" in sent, (freed, sent)
