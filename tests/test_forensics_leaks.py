"""Leaked print files and code packs (B5): suspicious verifications attributed to the export or
allocation whose range held the code, one deduplicated alert per source, the listing, runs
twice and at once, a record the detector cannot attribute, scoping and bad input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row

from tests.helpers import assert_error, issue_units, onboarded_brand
from tests.points_support import shipped_goods
from tests.race_support import lock_waiters

PASS = {"outer": {"passphrase": "outer-pass-123456"}, "inner": {"passphrase": "inner-pass-12345"}}


async def _export(client: Any, planner: dict[str, str], batch_no: int, start: int, end: int) -> str:
    made = await client.post(
        f"/batches/{batch_no}/exports", headers=planner, json={"start": start, "end": end, **PASS}
    )
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "done"
    return str(made.json()["id"])


async def _verified(
    conn: Any, brand: int, batch_no: int, index: int, serial: str, province: str, pin: bool = True
) -> None:
    """A consumer's verification record, as the flusher stores it."""
    await conn.execute(
        """INSERT INTO verifications (at, record_key, code_id, serial, brand_id, result, reason,
                                      queries, pin_given, client_ip, province)
           VALUES (%s, %s, %s, %s, %s, 'genuine', 'first_query', 1, %s, '192.0.2.7', %s)""",
        (datetime.now(UTC), uuid.uuid4(), batch_no << 32 | index, serial, brand, pin, province),
    )


async def _autocommit(app: Any) -> Any:
    return await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, autocommit=True, row_factory=dict_row
    )


async def _alerts(conn: Any, source_id: str) -> list[dict[str, Any]]:
    return await (  # type: ignore[no-any-return]
        await conn.execute(
            "SELECT severity, occurrences, details, message, acknowledged_at FROM alerts "
            "WHERE kind = 'leaked_file' AND dedup_key LIKE %s ORDER BY id",
            (f"%:{source_id}",),
        )
    ).fetchall()


async def test_suspicious_verifications_point_at_the_leaked_file_and_pack(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, settings: Any
) -> None:
    from app.forensics.leaks import detect_leaks

    brand = demo["BRAND-LUMI"]
    scheme = app.state.scheme
    planner = await login("planner")
    # units 0-19 shipped to AGENT-ZJ (Zhejiang), 20-29 still at the factory
    goods = await shipped_goods(client, login, app, demo)
    batch = goods["batch_no"]
    clean = await _export(client, planner, batch, 0, 15)
    leaked = await _export(client, planner, batch, 15, 30)
    # a code pack of codes never activated, allocated to a partner
    pack_batch, _ = await issue_units(client, login, demo, 10)
    pack = uuid.uuid4()
    await conn.execute(
        """INSERT INTO code_allocations (id, brand_id, recipient_org_id, requested, total, format,
                                         with_pins) VALUES (%s, %s, %s, 10, 10, 'text', true)""",
        (pack, brand, demo["AGENT-GD"]),
    )
    await conn.execute(
        "INSERT INTO code_allocation_ranges (batch_no, first_index, last_index, allocation_id, "
        "position) VALUES (%s, 0, 9, %s, 0)",
        (pack_batch, pack),
    )
    # a batch in no file and no pack: its verification has nothing to point at
    loose_batch, _ = await issue_units(client, login, demo, 5)

    def serial(b: int, i: int) -> str:
        return str(scheme.serial(b, i))

    for i in range(0, 5):  # the clean file's codes, where they were shipped
        await _verified(conn, brand, batch, i, serial(batch, i), "浙江省")
    for i in range(15, 20):  # the leaked file's shipped codes, at home too
        await _verified(conn, brand, batch, i, serial(batch, i), "浙江省")
    for i in range(20, 25):  # never shipped, verified by consumers (outer print only)
        await _verified(conn, brand, batch, i, serial(batch, i), "浙江省", pin=False)
    for i in (15, 16):  # verified far from where the batch ever went
        await _verified(conn, brand, batch, i, serial(batch, i), "广东省")
    for i in range(3):  # never activated
        await _verified(conn, brand, pack_batch, i, serial(pack_batch, i), "四川省")
    await _verified(conn, brand, loose_batch, 0, serial(loose_batch, 0), "四川省")
    await conn.commit()

    tuned = msgspec.structs.replace(settings, leak_min_findings=3, leak_critical_findings=6)
    async with await _autocommit(app) as c:
        run = await detect_leaks(c, tuned, wait=True)
    assert run.ran and run.failed == 0
    assert run.findings >= 10 and run.unattributed >= 1

    assert await _alerts(conn, clean) == []
    (alert,) = await _alerts(conn, leaked)
    details = alert["details"]
    assert alert["severity"] == "critical"
    assert (details["findings"], details["never_shipped"], details["out_of_region"]) == (7, 5, 2)
    assert details["with_pin"] == 2 and details["inner_leaked"] is True
    assert details["batch_no"] == batch and details["range"] == [15, 30]
    assert {r["part"]: r["org_id"] for r in details["recipients"]} == {
        "outer": demo["PRINTER-SH"],
        "inner": demo["PRINTER-SH"],
    }
    assert set(details["samples"]) <= {serial(batch, i) for i in range(15, 25)}
    assert len(details["samples"]) == 5
    (pack_alert,) = await _alerts(conn, str(pack))
    assert pack_alert["severity"] == "warning"
    assert pack_alert["details"]["not_activated"] == 3
    assert pack_alert["details"]["recipients"] == [
        {"part": "pack", "org_id": demo["AGENT-GD"], "name": "Guangdong Agent 广东代理"}
    ]

    listed = await client.get("/forensics/leaks", headers=await login("admin"))
    assert listed.status_code == 200, listed.text
    by_id = {item["source_id"]: item for item in listed.json()["items"]}
    assert clean not in by_id
    assert by_id[leaked]["findings"] == 7 and by_id[leaked]["source_kind"] == "export"
    assert by_id[str(pack)]["source_kind"] == "allocation"
    assert by_id[leaked]["alert_id"] is not None
    only = await client.get(
        "/forensics/leaks", headers=await login("analyst"), params={"source_kind": "allocation"}
    )
    assert only.status_code == 200 and {i["source_kind"] for i in only.json()["items"]} == {
        "allocation"
    }

    # run again, and twice at once: nothing found twice, the alerts not raised again
    async def again() -> Any:
        async with await _autocommit(app) as c:
            return await detect_leaks(c, tuned, wait=True)

    runs = [await again(), *(await asyncio.gather(again(), again()))]
    assert all(r.ran for r in runs)
    assert [await _alerts(conn, s) for s in (leaked, str(pack))] == [[alert], [pack_alert]]

    # a record it cannot name: the file's parts garbled; one more finding updates the one alert
    await conn.execute(
        "UPDATE code_exports SET parts = '[]'::jsonb WHERE id = %s", (uuid.UUID(leaked),)
    )
    await _verified(conn, brand, batch, 25, serial(batch, 25), "浙江省")
    await conn.commit()
    last = await again()
    assert last.ran and last.failed == 0
    (updated,) = await _alerts(conn, leaked)
    assert updated["occurrences"] == 2 and updated["details"]["findings"] == 8
    assert updated["details"]["recipients"] == []


async def test_leaks_are_the_brands_and_bad_input_is_refused(client: Any, login: Any) -> None:
    _, tenant_admin = await onboarded_brand(client, login)
    listed = await client.get("/forensics/leaks", headers=tenant_admin)
    assert listed.status_code == 200 and listed.json()["total"] == 0
    # below the brand (the agent's admin reads its own alerts, not the brand's files)
    assert_error(
        await client.get("/forensics/leaks", headers=await login("agent_admin")),
        403,
        "brand_staff_only",
    )
    assert_error(await client.get("/forensics/leaks", headers=await login("store_clerk")), 403)
    admin = await login("admin")
    for params in ({"source_kind": "printer"}, {"page": 0}, {"per_page": 201}):
        assert_error(await client.get("/forensics/leaks", headers=admin, params=params), 400)
    assert_error(await client.get("/forensics/leaks"), 401)


async def test_the_leak_detector_run_by_another_process_is_not_run_twice(
    client: Any, app: Any, settings: Any
) -> None:
    from app.forensics.leaks import detect_leaks
    from app.locks import Lock, acquire, release

    async with await _autocommit(app) as holder, await _autocommit(app) as c:
        await holder.execute(*acquire(Lock.FORENSICS_LEAKS))
        busy = await detect_leaks(c, settings)
        await holder.execute(*release(Lock.FORENSICS_LEAKS))
        free = await detect_leaks(c, settings)
    assert not busy.ran and free.ran


async def test_a_record_flushed_after_the_detector_passed_its_time_is_judged(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: the workers down an hour and a half while the API answered, the detector ran
    before the backlog was flushed and its mark passed the records' time by more than the
    overlap — they were never judged. The flusher's statement moves the mark back to them."""
    import json

    import redis as redis_sync

    from app.forensics.leaks import detect_leaks
    from app.verify import records

    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 2)
    export_id = await _export(client, planner, batch_no, 0, 2)
    serial = str(app.state.scheme.serial(batch_no, 1))
    record = {  # a consumer's check of a code never activated, as the API queued it
        "at": (datetime.now(UTC) - timedelta(minutes=90)).isoformat(),
        "record_key": uuid.uuid4().hex,
        "code_id": batch_no << 32 | 1,
        "serial": serial,
        "brand_id": demo["BRAND-LUMI"],
        "result": "unconfirmed",
        "reason": "first_query",
        "queries": 1,
        "pin_given": False,
        "client_ip": "192.0.2.9",
        "province": "四川省",
    }
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    async with await _autocommit(app) as c:
        assert (await detect_leaks(c, settings, wait=True)).ran  # its mark: now
        sync_redis.lpush(f"{settings.redis_namespace}:verif:queue", json.dumps(record))
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            while records.flush(sync_redis, pg, settings.redis_namespace):
                pass
        assert (await detect_leaks(c, settings, wait=True)).ran
        rows = await (
            await c.execute(
                "SELECT serial FROM leak_findings WHERE source_kind = 'export' AND source_id = %s",
                (export_id,),
            )
        ).fetchall()
    assert [r["serial"] for r in rows] == [serial]


async def test_a_run_keeps_the_mark_the_flusher_moved_back_meanwhile(
    client: Any, app: Any, settings: Any
) -> None:
    """The flusher moves the mark back (records stored late) while a run is under way, whose
    statement did not see them: the run's own mark does not overwrite it."""
    from app.forensics.leaks import MARK, detect_leaks

    back = datetime.now(UTC) - timedelta(hours=3)
    async with (
        await _autocommit(app) as c,
        await _autocommit(app) as flusher,
        await _autocommit(app) as watch,
    ):
        assert (await detect_leaks(c, settings, wait=True)).ran  # a mark: now
        async with flusher.transaction():  # the flusher's statement, not committed yet
            await flusher.execute(
                "UPDATE forensics_marks SET scanned_to = %s WHERE name = %s", (back, MARK)
            )
            run = asyncio.ensure_future(detect_leaks(c, settings, wait=True))
            assert await lock_waiters(watch, 1), "the run should wait to write its mark"
        assert (await run).ran
        row = await (
            await c.execute("SELECT scanned_to FROM forensics_marks WHERE name = %s", (MARK,))
        ).fetchone()
    assert row["scanned_to"] == back


async def test_the_periodic_queries_read_by_an_index_on_their_time(client: Any, conn: Any) -> None:
    """A review: the ring rules read point_claims and rebate_claims by claimed_at and
    rebate_refusals by at, and the leak detector a source's newest alert by its dedup key, with
    no index leading on them (a whole table, or a whole index of the brand or store, each run);
    and it counted every finding of every source each run to find the sources due an alert.
    Now an index leads on each, and the sources' counts are kept (``leak_sources``)."""
    from app.forensics import leaks

    for table, columns in (
        ("point_claims", ["claimed_at"]),
        ("rebate_claims", ["claimed_at"]),
        ("rebate_refusals", ["at"]),
        ("alerts", ["dedup_key", "id"]),
    ):
        found = await (
            await conn.execute(
                """SELECT i.indexrelid::regclass::text AS name FROM pg_index i
                    WHERE i.indrelid = %s::regclass AND i.indpred IS NULL AND i.indisvalid
                      AND (SELECT array_agg(a.attname::text ORDER BY k.n)
                             FROM unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
                             JOIN pg_attribute a ON a.attrelid = i.indrelid
                              AND a.attnum = k.attnum
                            WHERE k.n <= %s) = %s""",
                (table, len(columns), columns),
            )
        ).fetchall()
        assert found, (table, columns)
    plan = await (await conn.execute("EXPLAIN " + leaks._DUE, {"min": 3})).fetchall()
    assert "leak_findings" not in " ".join(r["QUERY PLAN"] for r in plan)
