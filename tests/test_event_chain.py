"""The tamper-evident event log (SPEC B7): events chained after commit in (xact, id) order under
concurrent and late-committing writers, tamper detection naming the altered row, an export
verified offline by the standalone verifier, signed anchors, brand scoping, concurrent chainers
and a record the chainer cannot process — on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.chain import anchors, chainer, check
from app.events import chainverify
from app.events.log import NewEvent, write_events
from tests.helpers import assert_error, onboarded_brand
from tests.test_logistics import confirm, document, pack

ROOT = Path(__file__).resolve().parent.parent


async def connect(settings: Any, autocommit: bool = True) -> Any:
    return await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=autocommit, row_factory=dict_row
    )


async def chain_now(settings: Any) -> chainer.Pass:
    async with await connect(settings) as conn:
        return await chainer.chain_all(conn)


def events_of(brand_id: int, count: int, tag: str, codes: int = 3) -> list[NewEvent]:
    """``count`` observation events of ``brand_id``, each naming ``codes`` unit codes."""
    base = random.SystemRandom().randrange(1 << 40, 1 << 50)
    return [
        NewEvent(
            brand_id=brand_id,
            event_type="ObjectEvent",
            action="OBSERVE",
            biz_step="inspecting",
            disposition=None,
            event_time=datetime(2026, 12, 1, 8, 0, i % 60, tzinfo=UTC),
            units=[base + i * 16 + k for k in range(codes)],
            read_point=f"{tag}-{i}",
            details={"tag": tag, "n": i, "ratio": 1.50},
        )
        for i in range(count)
    ]


async def write(settings: Any, events: list[NewEvent]) -> list[int]:
    async with await connect(settings, autocommit=False) as conn:
        ids = await write_events(conn, events)
        await conn.commit()
        return ids


async def chain_rows(conn: Any, brand_id: int) -> list[dict[str, Any]]:
    """Every event of the brand in (xact, id) order with its link, if any."""
    rows = await (
        await conn.execute(
            """SELECT e.id, e.xact::text AS xact, c.position, c.hash FROM events e
               LEFT JOIN event_chain c ON c.event_id = e.id
               WHERE e.brand_id = %s ORDER BY e.xact, e.id""",
            (brand_id,),
        )
    ).fetchall()
    await conn.commit()
    return rows


def assert_linear(rows: list[dict[str, Any]]) -> None:
    """Each event chained exactly once, positions 1..n in (xact, id) order."""
    assert [r["position"] for r in rows] == list(range(1, len(rows) + 1)), [
        (r["id"], r["position"]) for r in rows if r["position"] is None
    ][:5]


@pytest.fixture
async def tenant(client: Any, login: Any) -> tuple[int, dict[str, str]]:
    """A brand of its own (no event yet) and its administrator's headers."""
    brand, headers = await onboarded_brand(client, login)
    return brand["id"], headers


async def test_packing_and_logistics_events_are_chained(
    client: Any, login: Any, app: Any, demo: Any, settings: Any, conn: Any
) -> None:
    goods = await pack(client, login, app, demo, 2)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    brand_id = demo["BRAND-LUMI"]
    done = await chain_now(settings)
    assert brand_id not in done.failed
    rows = await chain_rows(conn, brand_id)
    assert_linear(rows)
    mine = await (
        await conn.execute(
            """SELECT DISTINCT x.event_id, e.biz_step FROM event_codes x
               JOIN events e ON e.id = x.event_id WHERE x.kind = 'c' AND x.code = %s""",
            (int(goods["cases"][0]),),
        )
    ).fetchall()
    await conn.commit()
    assert len(mine) >= 2  # packed, then received into the warehouse
    chained = {r["id"] for r in rows if r["position"] is not None}
    assert {r["event_id"] for r in mine} <= chained
    admin = await login("admin")
    head = (await client.get("/chain", headers=admin)).json()
    assert head["position"] == len(rows) and head["error"] is None
    assert head["public_key"] == anchors.public_key(settings).hex()
    report = await client.post("/chain/check", headers=admin, json={})
    assert report.status_code == 200, report.text
    assert report.json()["ok"] is True and report.json()["links_checked"] == len(rows)
    assert (await chain_now(settings)).appended == 0  # run again: nothing more


async def test_concurrent_writers_and_a_late_commit_chain_gapless_in_order(
    settings: Any, conn: Any, tenant: Any
) -> None:
    brand_id, _ = tenant
    before = await write(settings, events_of(brand_id, 5, "before"))
    async with await connect(settings, autocommit=False) as late:
        await write_events(late, events_of(brand_id, 3, "late"))  # xid taken, not committed
        late_xact = (
            await (await late.execute("SELECT pg_current_xact_id()::text AS x")).fetchone()
        )["x"]
        stop = asyncio.Event()

        async def chain_all_along() -> None:
            while not stop.is_set():
                await chain_now(settings)
                await asyncio.sleep(0.005)

        async def writer(n: int) -> None:
            async with await connect(settings, autocommit=False) as own:
                await write_events(own, events_of(brand_id, 4, f"w{n}"))
                await asyncio.sleep(random.random() * 0.05)  # commit in any order
                await own.commit()

        chaining = asyncio.ensure_future(chain_all_along())
        await asyncio.gather(*(writer(n) for n in range(16)))
        await chain_now(settings)
        # while the late transaction runs, nothing at or after its xid is chained
        rows = await chain_rows(conn, brand_id)
        assert len(rows) == 69
        # chained up to the late transaction: the events committed before it began
        assert {r["id"] for r in rows if r["position"] is not None} == set(before)
        assert all(int(r["xact"]) < int(late_xact) for r in rows if r["position"] is not None)
        await late.commit()
        await asyncio.sleep(0.05)
        stop.set()
        await chaining
    await chain_now(settings)
    rows = await chain_rows(conn, brand_id)
    assert len(rows) == 72
    assert_linear(rows)
    async with await connect(settings) as own:
        assert (await check.check_chain(own, settings, brand_id)).ok


async def test_two_chainers_at_once_chain_each_event_once(
    settings: Any, conn: Any, tenant: Any
) -> None:
    brand_id, _ = tenant
    await write(settings, events_of(brand_id, chainer.BATCH * 2 + 17, "twice", codes=1))
    async with await connect(settings) as one, await connect(settings) as two:
        first, second = await asyncio.gather(
            chainer.chain_all(one, [brand_id]), chainer.chain_all(two, [brand_id])
        )
    assert first.failed == {} and second.failed == {}
    await chain_now(settings)  # whatever one skipped while the other held the head
    rows = await chain_rows(conn, brand_id)
    assert len(rows) == chainer.BATCH * 2 + 17
    assert_linear(rows)


async def inserted_by_hand(settings: Any, brand_id: int, xact: str) -> tuple[int, Any]:
    """The id of an event a DBA inserts into the brand's log under transaction ``xact``, and the
    check's report with it (``tampered``: rolled back)."""
    async with await connect(settings) as own:
        new_id = (await (await own.execute("SELECT nextval('events_id_seq') AS id")).fetchone())[
            "id"
        ]
    report = await tampered(
        settings,
        brand_id,
        (
            """INSERT INTO events (id, event_uuid, brand_id, event_type, action, biz_step,
                   event_time, tz_offset, xact)
               VALUES (%s, gen_random_uuid(), %s, 'ObjectEvent', 'OBSERVE', 'inspecting', now(),
                   '+08:00', %s)""",
            (new_id, brand_id, xact),
        ),
    )
    return new_id, report


async def tampered(settings: Any, brand_id: int, *statements: tuple[str, tuple[Any, ...]]) -> Any:
    """The check's report with ``statements`` applied as a DBA would, then rolled back."""
    async with await connect(settings, autocommit=False) as dba:
        for sql, args in statements:
            await dba.execute(sql, args)
        report = await check.check_chain(dba, settings, brand_id)
        await dba.rollback()
        return report


async def test_tampering_names_the_altered_row(client: Any, settings: Any, tenant: Any) -> None:
    brand_id, headers = tenant
    ids = await write(settings, events_of(brand_id, 8, "tamper"))
    await chain_now(settings)
    assert (await client.post("/chain/anchors", headers=headers)).status_code == 201
    assert (await tampered(settings, brand_id)).ok

    def first(report: Any) -> tuple[str, int | None]:
        assert not report.ok
        return report.first_problem.problem, report.first_problem.event_id

    changed = await tampered(
        settings, brand_id, ("UPDATE events SET read_point = 'moved' WHERE id = %s", (ids[3],))
    )
    assert first(changed) == ("event_changed", ids[3]) and len(changed.problems) == 1
    gone = await tampered(settings, brand_id, ("DELETE FROM events WHERE id = %s", (ids[5],)))
    assert first(gone) == ("event_deleted", ids[5])
    new_id, backdated = await inserted_by_hand(settings, brand_id, "0")
    assert first(backdated) == ("event_unchained", new_id)
    code_changed = await tampered(
        settings,
        brand_id,
        (
            "UPDATE event_codes SET code = code + 7777777 WHERE event_id = %s AND kind = 'u'",
            (ids[2],),
        ),
    )
    assert first(code_changed) == ("event_changed", ids[2])
    code_deleted = await tampered(
        settings,
        brand_id,
        (
            "DELETE FROM event_codes WHERE (code, kind, event_id) IN "
            "(SELECT code, kind, event_id FROM event_codes WHERE event_id = %s LIMIT 1)",
            (ids[6],),
        ),
    )
    assert first(code_deleted) == ("event_changed", ids[6])
    code_added = await tampered(
        settings,
        brand_id,
        ("INSERT INTO event_codes (code, kind, event_id) VALUES (7, 'c', %s)", (ids[1],)),
    )
    assert first(code_added) == ("event_changed", ids[1])
    # A DBA who alters an event and recomputes every link after it (and the head) passes the
    # link checks, but not the anchor signed before
    async with await connect(settings, autocommit=False) as dba:
        await dba.execute("UPDATE events SET read_point = 'rewritten' WHERE id = %s", (ids[4],))
        rows = await (
            await dba.execute(
                f"SELECT {chainer.EVENT_TEXT} FROM events e WHERE e.brand_id = %s "
                "ORDER BY e.xact, e.id",
                (brand_id,),
            )
        ).fetchall()
        codes = await chainer.codes_of(dba, [int(r["id"]) for r in rows])
        previous = chainverify.genesis(brand_id)
        for position, row in enumerate(rows, 1):
            previous = chainverify.link(previous, chainer.event_bytes(row, codes[int(row["id"])]))
            await dba.execute(
                "UPDATE event_chain SET hash = %s WHERE brand_id = %s AND position = %s",
                (previous, brand_id, position),
            )
        await dba.execute(
            "UPDATE event_chain_heads SET hash = %s WHERE brand_id = %s", (previous, brand_id)
        )
        report = await check.check_chain(dba, settings, brand_id)
        await dba.rollback()
    assert [p.problem for p in report.problems] == ["anchor_mismatch"], report.problems
    assert (await tampered(settings, brand_id)).ok


async def test_an_export_verifies_offline_and_fails_after_one_byte(
    client: Any, settings: Any, tenant: Any, tmp_path: Path
) -> None:
    brand_id, headers = tenant
    ids = await write(settings, events_of(brand_id, 6, "export"))
    await chain_now(settings)
    anchor = (await client.post("/chain/anchors", headers=headers)).json()
    public = (await client.get("/chain", headers=headers)).json()["public_key"]
    exported = await client.get("/chain/export", headers=headers, params={"from": 1, "to": 6})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = exported.text.splitlines()
    assert len(lines) == 1 + 6 + 1 and json.loads(lines[-1])["anchor"]["id"] == anchor["id"]
    assert json.loads(lines[3])["event"]["details"] == '{"n": 2, "tag": "export", "ratio": 1.5}'

    # the verifier alone: a copy of the one file, run without site-packages
    verifier = tmp_path / "chainverify.py"
    shutil.copy(ROOT / "app" / "events" / "chainverify.py", verifier)

    def verify(text: str, *extra: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "export.jsonl").write_text(text, encoding="utf-8")
        command = [sys.executable, "-I", "-S", str(verifier), "--file", "export.jsonl", *extra]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)

    good = verify(exported.text, "--public-key", public)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "positions 1..6 (6 links), 1 anchors verified" in good.stdout
    one_byte = exported.text.replace('"read_point": "export-4"', '"read_point": "export-5"')
    bad = verify(one_byte, "--public-key", public)
    assert bad.returncode == 1 and f"position 5, event {ids[4]}" in bad.stdout, bad.stdout
    other_key = verify(exported.text, "--public-key", "11" * 32)
    assert other_key.returncode == 1 and "anchor signature" in other_key.stdout
    # a later range verifies on its own, from the link before it
    tail = await client.get("/chain/export", headers=headers, params={"from": 4})
    assert len(tail.text.splitlines()) == 1 + 3 + 1
    assert verify(tail.text, "--public-key", public).returncode == 0

    assert_error(
        await client.get("/chain/export", headers=headers, params={"from": 7}), 400, "bad_positions"
    )
    assert_error(
        await client.get("/chain/export", headers=headers, params={"from": 3, "to": 2}),
        400,
        "bad_positions",
    )
    assert_error(
        await client.get("/chain/export", headers=headers, params={"from": 0}),
        400,
        "validation_failed",
    )
    assert_error(
        await client.post("/chain/check", headers=headers, json={"from": "x"}),
        400,
        "validation_failed",
    )


async def test_anchors_are_signed_once_per_head(
    client: Any, settings: Any, conn: Any, tenant: Any
) -> None:
    brand_id, headers = tenant
    assert_error(await client.post("/chain/anchors", headers=headers), 409, "chain_empty")
    await write(settings, events_of(brand_id, 2, "anchor"))
    made = await client.post("/chain/anchors", headers=headers)  # chains first, then anchors
    assert made.status_code == 201, made.text
    anchor = made.json()
    assert anchor["position"] == 2 and anchor["brand_id"] == brand_id
    again = await client.post("/chain/anchors", headers=headers)
    assert again.status_code == 200 and again.json() == anchor
    public = bytes.fromhex((await client.get("/chain", headers=headers)).json()["public_key"])
    message = chainverify.anchor_message(
        brand_id, anchor["position"], anchor["hash"], anchor["anchored_at"]
    )
    assert chainverify.ed25519_verify(public, message, bytes.fromhex(anchor["signature"]))
    assert not chainverify.ed25519_verify(
        public, message + b"x", bytes.fromhex(anchor["signature"])
    )
    listed = (await client.get("/chain/anchors", headers=headers)).json()
    assert listed["total"] == 1 and listed["items"] == [anchor]
    # the workers' anchors: a moved head with no anchor is anchored, once however often asked
    await write(settings, events_of(brand_id, 1, "anchor2"))
    await chain_now(settings)
    async with await connect(settings) as one, await connect(settings) as two:
        await asyncio.gather(anchors.anchor_due(one, settings), anchors.anchor_due(two, settings))
        made_now = await anchors.anchor_due(one, settings)
    assert made_now == 0  # the last anchor is newer than TRACECODE_CHAIN_ANCHOR_SECONDS
    listed = (await client.get("/chain/anchors", headers=headers)).json()
    assert [a["position"] for a in listed["items"]] == [2]  # 3 waits for the interval
    async with await connect(settings) as own:
        await own.execute(
            "UPDATE event_chain_anchors SET anchored_at = anchored_at - interval '2 hours' "
            "WHERE brand_id = %s",
            (brand_id,),
        )
        made_now = await anchors.anchor_due(own, settings)
    assert made_now >= 1
    listed = (await client.get("/chain/anchors", headers=headers)).json()
    assert [a["position"] for a in listed["items"]] == [3, 2]


async def test_two_on_demand_anchors_at_once_both_anchor_what_was_committed(
    client: Any, settings: Any, tenant: Any
) -> None:
    """A probe: two ``POST /chain/anchors`` at once (an auditor's script and the console, a
    retry). The first chained the new events and anchored the new head; the second's chaining
    skipped the brand (``FOR UPDATE SKIP LOCKED``, meant for the background passes) and it
    anchored the head as last committed — 200 with the previous position's anchor, leaving
    events committed before it was sent outside the anchor it was handed. Now an on-demand
    anchor waits for the head row: both answer the committed head, one 201 and one 200."""
    brand_id, headers = tenant
    await write(settings, events_of(brand_id, 2, "ondemand-a"))
    await chain_now(settings)
    assert (await client.post("/chain/anchors", headers=headers)).status_code == 201
    for n in range(4):
        await write(settings, events_of(brand_id, 2, f"ondemand-b{n}"))
        answers = await asyncio.gather(
            *(client.post("/chain/anchors", headers=headers) for _ in range(2))
        )
        head = 2 + 2 * (n + 1)
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        assert [a.json()["position"] for a in answers] == [head, head], n
        assert answers[0].json() == answers[1].json()
    # a background pass at the same moment (it skips the head the request holds): one chain
    await write(settings, events_of(brand_id, 3, "ondemand-c"))
    async with await connect(settings) as own:
        made, done = await asyncio.gather(
            client.post("/chain/anchors", headers=headers), chainer.chain_all(own, [brand_id])
        )
    assert made.status_code == 201 and made.json()["position"] == 13 and done.failed == {}
    listed = (await client.get("/chain/anchors", headers=headers)).json()
    assert [a["position"] for a in listed["items"]] == [13, 10, 8, 6, 4, 2]


async def test_a_brand_reads_only_its_own_chain(
    client: Any, login: Any, settings: Any, demo: Any, tenant: Any
) -> None:
    brand_id, headers = tenant
    admin = await login("admin")
    await write(settings, events_of(demo["BRAND-LUMI"], 1, "scope"))
    assert (await client.post("/chain/anchors", headers=admin)).status_code in (200, 201)
    lumi = (await client.get("/chain/anchors", headers=admin)).json()["items"]
    mine = (await client.get("/chain", headers=headers)).json()
    assert mine["brand_id"] == brand_id and mine["position"] == 0
    assert (await client.get("/chain/anchors", headers=headers)).json()["total"] == 0
    assert_error(await client.get("/chain/export", headers=headers), 400, "bad_positions")
    report = (await client.post("/chain/check", headers=headers, json={})).json()
    assert report["brand_id"] == brand_id and report["links_checked"] == 0
    assert lumi[0]["brand_id"] == demo["BRAND-LUMI"]
    # below the brand, even with audit.read: refused; without audit.read: refused
    factory = await login("factory_admin")
    assert_error(await client.get("/chain", headers=factory), 403, "brand_staff_only")
    assert_error(await client.get("/chain/export", headers=factory), 403, "brand_staff_only")
    operator = await login("operator")
    assert_error(await client.post("/chain/anchors", headers=operator), 403, "permission_denied")
    assert_error(await client.get("/chain"), 401)


async def test_a_record_the_chainer_cannot_process_leaves_the_others_chained(
    client: Any, settings: Any, conn: Any, tenant: Any
) -> None:
    brand_id, headers = tenant
    vanished = random.SystemRandom().randrange(10**12, 10**13)  # a brand no organisation is
    await write(settings, events_of(brand_id, 3, "ok"))
    await write(settings, events_of(vanished, 2, "orphan"))
    done = await chain_now(settings)
    assert brand_id not in done.failed and vanished not in done.failed
    assert_linear(await chain_rows(conn, vanished))  # chained all the same
    # a DBA alters the brand's last link: the chain is not extended, the others go on
    link_3 = "FROM event_chain WHERE brand_id = %s AND position = 3"
    kept = (await (await conn.execute(f"SELECT hash {link_3}", (brand_id,))).fetchone())["hash"]
    await conn.execute(
        f"UPDATE event_chain SET hash = sha256(hash) WHERE event_id IN (SELECT event_id {link_3})",
        (brand_id,),
    )
    await conn.commit()
    await write(settings, events_of(brand_id, 1, "after"))
    await write(settings, events_of(vanished, 1, "after"))
    done = await chain_now(settings)
    assert set(done.failed) == {brand_id} and "altered" in done.failed[brand_id]
    assert_linear(await chain_rows(conn, vanished))
    head = (await client.get("/chain", headers=headers)).json()
    assert head["position"] == 3 and "altered" in head["error"]
    assert_error(await client.post("/chain/anchors", headers=headers), 409, "chain_broken")
    report = (await client.post("/chain/check", headers=headers, json={})).json()
    assert report["first_problem"]["problem"] == "event_changed"
    assert report["first_problem"]["position"] == 3
    # put back as it was and chained again by name (the workers' passes leave a broken brand
    # out), the chain goes on from where it stopped
    await conn.execute(
        f"UPDATE event_chain SET hash = %s WHERE event_id IN (SELECT event_id {link_3})",
        (kept, brand_id),
    )
    await conn.commit()
    async with await connect(settings) as own:
        assert brand_id not in (await chainer.chain_all(own, broken=True)).failed
    assert_linear(await chain_rows(conn, brand_id))
    assert (await client.get("/chain", headers=headers)).json()["error"] is None


def tracecode(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The ``tracecode`` command on this session's database (the environment conftest set),
    ``env`` over it."""
    command = [sys.executable, "-m", "app.cli", *args]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(ran: subprocess.CompletedProcess[str], says: str) -> None:
    """A refusal as the README's CLI section has it: one ``tracecode: …`` line, exit 2."""
    assert ran.returncode == 2, (ran.returncode, ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr, ran.stderr
    lines = [line for line in ran.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith(f"tracecode: {says}"), ran.stderr


async def test_the_cli_checks_exports_and_verifies(
    settings: Any, conn: Any, tenant: Any, tmp_path: Path
) -> None:
    brand_id, _ = tenant
    ids = await write(settings, events_of(brand_id, 4, "cli"))
    ran = await asyncio.to_thread(tracecode, "chain", "anchor", "--brand", str(brand_id))
    assert ran.returncode == 0 and f"brand {brand_id}: anchored position 4" in ran.stdout, ran
    out = tmp_path / "chain.jsonl"
    ran = await asyncio.to_thread(
        tracecode, "chain", "export", "--brand", str(brand_id), "--out", str(out)
    )
    assert ran.returncode == 0, ran.stderr
    public = anchors.public_key(settings).hex()
    ran = await asyncio.to_thread(
        tracecode, "chain", "verify", "--file", str(out), "--public-key", public
    )
    assert ran.returncode == 0 and "4 links), 1 anchors verified" in ran.stdout, ran
    ran = await asyncio.to_thread(tracecode, "chain", "check", "--brand", str(brand_id))
    assert ran.returncode == 0 and "ok" in ran.stdout, ran
    await conn.execute("UPDATE events SET tz_offset = '+09:00' WHERE id = %s", (ids[1],))
    await conn.commit()
    ran = await asyncio.to_thread(tracecode, "chain", "check", "--brand", str(brand_id))
    assert ran.returncode == 1, ran
    assert f"event_changed (position 2, event {ids[1]})" in ran.stdout, ran.stdout


async def anchors_of(conn: Any, brand_id: int) -> int:
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM event_chain_anchors WHERE brand_id = %s", (brand_id,)
        )
    ).fetchone()
    await conn.commit()
    return int(row["n"])


async def test_the_cli_runs_the_chain_only_under_the_databases_master_key(
    settings: Any, conn: Any, tenant: Any, tmp_path: Path
) -> None:
    """A probe: ``chain anchor`` ran under any master key and stored, for good (one anchor per
    position), an anchor signed by a key no verifier of the published public key accepts. Every
    action on the database is now refused first, in one line naming the key's variables; the
    offline ``verify`` needs no key."""
    brand_id, _ = tenant
    await write(settings, events_of(brand_id, 2, "cli-key"))
    other = "6b" * 32
    out = tmp_path / "other.jsonl"
    for action in (
        ["anchor", "--brand", str(brand_id)],
        ["anchor"],
        ["run"],
        ["check", "--brand", str(brand_id)],
        ["export", "--brand", str(brand_id), "--out", str(out)],
    ):
        ran = await asyncio.to_thread(tracecode, "chain", *action, TRACECODE_MASTER_KEY=other)
        one_line(ran, "configuration error: the master key (TRACECODE_MASTER_KEY")
        assert "chained" not in ran.stdout, (action, ran.stdout)
    assert await anchors_of(conn, brand_id) == 0
    assert not out.exists()
    unchained = await (
        await conn.execute("SELECT count(*) AS n FROM event_chain WHERE brand_id = %s", (brand_id,))
    ).fetchone()
    assert unchained["n"] == 0  # ``run`` chained nothing either
    await conn.commit()


async def test_the_clis_refusals_of_brands_and_positions_are_one_line(
    settings: Any, conn: Any, tenant: Any, tmp_path: Path
) -> None:
    """A probe: ``chain export`` of a brand with no link, or of positions not within the chain,
    was BadRequest's traceback (exit 1); ``chain check`` of an unknown brand answered "0 links
    … ok", exit 0, and ``chain anchor`` "no link yet"; ``--brand 0`` was taken as no
    ``--brand`` (every brand anchored and checked). Each is one ``tracecode: …`` line, exit 2,
    nothing anchored or written."""
    brand_id, _ = tenant
    out = tmp_path / "x.jsonl"
    ran = await asyncio.to_thread(
        tracecode, "chain", "export", "--brand", str(brand_id), "--out", str(out)
    )
    one_line(ran, "bad_positions: positions 1..0 are not within the chain (1..0)")
    for action in ("anchor", "check"):
        ran = await asyncio.to_thread(tracecode, "chain", action, "--brand", "999999999")
        one_line(ran, "not_found: no brand 999999999")
        assert " ok" not in ran.stdout, ran.stdout
    ran = await asyncio.to_thread(
        tracecode, "chain", "export", "--brand", "999999999", "--out", str(out)
    )
    one_line(ran, "not_found: no brand 999999999")
    await write(settings, events_of(brand_id, 3, "cli-range"))
    for first, last in (("0", "2"), ("2", "1"), ("1", "99")):
        ran = await asyncio.to_thread(
            tracecode, "chain", "export", "--brand", str(brand_id), "--from", first,
            "--to", last, "--out", str(out),
        )  # fmt: skip
        one_line(ran, f"bad_positions: positions {first}..{last} are not within the chain")
    assert not out.exists()
    for action in ("anchor", "check"):
        ran = await asyncio.to_thread(tracecode, "chain", action, "--brand", "0")
        assert ran.returncode == 2 and "a brand's id, a whole number from 1" in ran.stderr, ran
        assert "chained" not in ran.stdout, ran.stdout
    assert await anchors_of(conn, brand_id) == 0


# -- review fixes ------------------------------------------------------------------------------


class _CountingConn:
    """A connection that counts the rows its queries hand back (``fetchall``)."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.rows = conn, 0

    async def execute(self, query: Any, params: Any = None) -> Any:
        cursor = await self.conn.execute(query, params)
        outer = self

        class Counted:
            async def fetchall(self) -> list[Any]:
                rows = await cursor.fetchall()
                outer.rows += len(rows)
                return rows

        return Counted()


async def test_a_batchs_codes_are_read_without_the_other_brands_rows(
    settings: Any, tenant: Any
) -> None:
    """A review: the chainer's ``codes_of`` (the batch, the server check, the export) read
    every ``event_codes`` row of the id ranges spanning the batch, whatever the brand, and
    dropped the other brands' rows in Python — with several brands writing at once, tens of
    millions of rows a batch. Only the batch's events' rows leave the database now."""
    brand_id, _ = tenant
    other = random.SystemRandom().randrange(10**12, 10**13)
    mixed = [
        event
        for pair in zip(events_of(brand_id, 8, "mine"), events_of(other, 8, "theirs"), strict=True)
        for event in pair
    ]
    ids = await write(settings, mixed)  # one transaction: the two brands' ids interleaved
    mine = ids[0::2]
    async with await connect(settings) as conn:
        counting = _CountingConn(conn)
        codes = await chainer.codes_of(counting, mine)
    assert sorted(codes) == sorted(mine) and all(len(codes[i]) == 3 for i in mine)
    assert counting.rows == 3 * len(mine)  # not the 3 * 15 rows the ranges span


async def test_a_broken_chain_is_not_retried_every_pass(
    settings: Any, conn: Any, tenant: Any
) -> None:
    """A review: a brand whose chain could not be extended was tried again on every pass (every
    2 s in each worker) and logged an error each time — some 43,000 lines a day — though it was
    said to be skipped. Its head's error now keeps it out of the passes until it is cleared: a
    repair, then ``tracecode chain run`` (which tries broken chains too)."""
    import logging

    brand_id, _ = tenant
    other = random.SystemRandom().randrange(10**12, 10**13)
    await write(settings, events_of(brand_id, 2, "before") + events_of(other, 1, "before"))
    await chain_now(settings)
    link_2 = "WHERE brand_id = %s AND position = 2"
    kept = await (
        await conn.execute(f"SELECT hash FROM event_chain {link_2}", (brand_id,))
    ).fetchone()
    await conn.execute(f"UPDATE event_chain SET hash = sha256(hash) {link_2}", (brand_id,))
    await conn.commit()

    logged: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if str(brand_id) in record.getMessage():
                logged.append(record.getMessage())

    handler = Catch(logging.ERROR)
    chainer.log.addHandler(handler)
    try:
        await write(settings, events_of(brand_id, 1, "after") + events_of(other, 1, "after"))
        assert brand_id in (await chain_now(settings)).failed
        assert len(logged) == 1
        head = "SELECT error, error_at FROM event_chain_heads WHERE brand_id = %s"
        first = await (await conn.execute(head, (brand_id,))).fetchone()
        await conn.commit()
        assert "altered" in first["error"]
        for tag in ("next", "again"):  # the next passes: the broken brand is left out
            await write(settings, events_of(brand_id, 1, tag) + events_of(other, 1, tag))
            done = await chain_now(settings)
            assert brand_id not in done.failed and done.appended >= 1
        assert len(logged) == 1  # no new attempt, no new error line
        assert await (await conn.execute(head, (brand_id,))).fetchone() == first
        await conn.commit()
        assert_linear(await chain_rows(conn, other))  # the other brand went on
        async with await connect(settings) as own:
            assert brand_id not in await chainer.pending_brands(own)
            assert brand_id in await chainer.pending_brands(own, broken=True)
    finally:
        chainer.log.removeHandler(handler)
    # repaired, ``tracecode chain run`` tries it again: chained, the error cleared
    await conn.execute(f"UPDATE event_chain SET hash = %s {link_2}", (kept["hash"], brand_id))
    await conn.commit()
    ran = await asyncio.to_thread(tracecode, "chain", "run")
    assert f"brand {brand_id} not chained" not in ran.stderr, ran.stderr
    assert_linear(await chain_rows(conn, brand_id))
    assert (await (await conn.execute(head, (brand_id,))).fetchone())["error"] is None
    await conn.commit()


def _offline_export(brand_id: int = 7, links: int = 2) -> list[str]:
    """A small, valid export built by hand: its header, then ``links`` link lines."""
    header = {
        "format": chainverify.FORMAT,
        "brand_id": str(brand_id),
        "from": 1,
        "to": links,
        "previous_hash": chainverify.genesis(brand_id).hex(),
        "public_key": "",
    }
    lines, previous = [json.dumps(header)], chainverify.genesis(brand_id)
    for position in range(1, links + 1):
        event: dict[str, Any] = {name: None for name in chainverify.FIELDS}
        event.update(id=str(100 + position), brand_id=str(brand_id), codes=[f"u:{position}"])
        previous = chainverify.link(
            previous, chainverify.canonical(chainverify.event_values(event))
        )
        lines.append(json.dumps({"position": position, "hash": previous.hex(), "event": event}))
    return lines


def _verify_file(tmp_path: Path, lines: list[str], capsys: Any, *extra: str) -> tuple[int, str]:
    """``chainverify.main`` on the lines (``extra`` its options): its exit status and what it
    printed."""
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status = chainverify.main(["--file", str(path), *extra])
    out = capsys.readouterr()
    return status, out.out + out.err


def test_an_export_stripped_of_its_links_fails_offline(tmp_path: Path, capsys: Any) -> None:
    """A review: an export whose link lines were all removed verified ``ok`` (the check that
    the links reach the header's ``to`` ran only when there were links). Every position of the
    header's range must be there."""
    lines = _offline_export()
    assert _verify_file(tmp_path, lines, capsys)[0] == 0
    status, printed = _verify_file(tmp_path, lines[:1], capsys)
    assert status == 1 and "holds no link" in printed, printed
    status, printed = _verify_file(tmp_path, lines[:2], capsys)
    assert status == 1 and "ends at position 1, not at 2" in printed, printed


@pytest.mark.parametrize("position", [None, [2], {"n": 2}, True, 1.5, "two"])
def test_an_anchor_with_a_malformed_position_fails_cleanly(
    tmp_path: Path, capsys: Any, position: Any
) -> None:
    """A review: an anchor whose ``position`` is no integer (null, a list, an object) raised a
    TypeError out of the verifier — a traceback for the auditor. It fails as a malformed anchor,
    exit 1."""
    anchor = {"brand_id": 7, "position": position, "hash": "00" * 32,
              "anchored_at": "2026-01-01T00:00:00.000000Z", "signature": "00" * 64}  # fmt: skip
    status, printed = _verify_file(tmp_path, [*_offline_export(), json.dumps({"anchor": anchor})],
                                   capsys)  # fmt: skip
    assert status == 1 and "anchor fields are malformed" in printed, printed
    assert "Traceback" not in printed


@pytest.mark.parametrize("to", [[2], "x", None, {"to": 2}, 0])
def test_a_header_with_a_malformed_to_fails_cleanly(tmp_path: Path, capsys: Any, to: Any) -> None:
    """A review: the header's ``to`` was read (``int(str(...))``) after the links, outside any
    check — a list or a word there raised a ValueError out of the verifier. It fails as a
    malformed header, exit 1; a range that ends before it starts too."""
    lines = _offline_export()
    header = json.loads(lines[0])
    header["to"] = to
    status, printed = _verify_file(tmp_path, [json.dumps(header), *lines[1:]], capsys)
    assert status == 1 and "FAILED (line 1)" in printed and "header" in printed, printed
    del header["to"]
    status, printed = _verify_file(tmp_path, [json.dumps(header), *lines[1:]], capsys)
    assert status == 1 and "FAILED (line 1)" in printed, printed


# An anchor signed before the anchors' key moved to ``app.signing`` (the master key 00…07)
KAT_MASTER_KEY = "00" * 31 + "07"
KAT_ANCHOR_PUBLIC = "149d9c614ec0d5f3335cc33d1444dbf067fc5b7875fdf59d191c76aa10f8e28b"
KAT_ANCHOR_KEY_ID = "b32a2d9039ee0c8f"
KAT_ANCHOR_SIGNATURE = (
    "e3aa572b2b0f0e1033e422978db06cd4e66de4ef448ef9ba6bd5e4465854996e"
    "60f78f4c792eb728b4c4ae766c80bca26cd029199002b9d7fafb74fe6f0edd03"
)


def test_an_anchor_signed_before_the_shared_key_helper_still_verifies() -> None:
    """A review: the anchors derived their Ed25519 key on their own, beside the evidence packs'
    own copy of the same code. Both use ``app.signing`` now — with the same seed (the purpose
    ``event-chain-anchor``) and the same key id (16 hex digits, no prefix), so an anchor signed
    before verifies, under the same key id, and the key signs it again byte for byte."""
    from app.config import Settings
    from app.signing import ed25519_key

    fixed = Settings(master_key=KAT_MASTER_KEY)
    key = anchors.signing_key(fixed)
    assert key is ed25519_key(fixed, "event-chain-anchor")
    assert anchors.public_key(fixed).hex() == KAT_ANCHOR_PUBLIC
    assert key.key_id() == chainverify.key_id(key.public_raw) == KAT_ANCHOR_KEY_ID
    anchored_at = "2026-01-02T03:04:05.000006Z"
    old = anchors.Anchor(id=1, brand_id=42, position=7, hash="ab" * 32, anchored_at=anchored_at,
                         key_id=KAT_ANCHOR_KEY_ID, signature=KAT_ANCHOR_SIGNATURE)  # fmt: skip
    assert anchors.verifies(old, anchors.public_key(fixed))
    message = chainverify.anchor_message(42, 7, "ab" * 32, anchored_at)
    assert key.sign(message).hex() == KAT_ANCHOR_SIGNATURE


async def test_the_anchor_pass_survives_a_head_it_cannot_anchor(settings: Any, conn: Any) -> None:
    """A probe: the workers' anchoring anchored brand after brand with nothing catching a
    failure, so a head it could not anchor (a hash cut short: a hand edit, an old release)
    stopped the pass every time, and the brands after it were never anchored. Now that head
    keeps the error on its row, as a chain that cannot be extended does, and the others are
    anchored."""
    from workers.chain import chain_pass

    rng = random.SystemRandom()
    bad, good = rng.randrange(10**12, 10**13), rng.randrange(10**12, 10**13)
    await write(settings, events_of(bad, 2, "cut-head") + events_of(good, 2, "good-head"))
    async with await connect(settings) as own:
        await chainer.chain_all(own)
        await own.execute(
            "UPDATE event_chain_heads SET hash = substring(hash from 2) WHERE brand_id = %s",
            (bad,),
        )
        await chain_pass(own)  # raised CheckViolation
        anchored = await (
            await own.execute(
                "SELECT brand_id FROM event_chain_anchors WHERE brand_id = ANY(%s)", ([bad, good],)
            )
        ).fetchall()
        head = "SELECT error FROM event_chain_heads WHERE brand_id = %s"
        error = (await (await own.execute(head, (bad,))).fetchone())["error"]
        # put back, out of the other tests' passes' way
        await own.execute(
            """UPDATE event_chain_heads h SET error = NULL, error_at = NULL,
                      hash = (SELECT hash FROM event_chain c
                               WHERE c.brand_id = h.brand_id AND c.position = h.position)
                WHERE brand_id = %s""",
            (bad,),
        )
    assert [r["brand_id"] for r in anchored] == [good]
    assert error and "CheckViolation" in error


# -- a chain trimmed, rewound, range-checked; anchors on demand; the verifier's strictness -----

_TRIM_TAIL = (
    # a DBA trims events 5 and 6 (their codes, links and rows) and rewinds the head to link 4
    # as the chainer would have left it
    "DELETE FROM event_codes WHERE event_id = ANY(%(gone)s)",
    "DELETE FROM event_chain WHERE event_id = ANY(%(gone)s)",
    "DELETE FROM events WHERE id = ANY(%(gone)s)",
)
_REWIND = """UPDATE event_chain_heads h SET position = 4,
       hash = (SELECT hash FROM event_chain WHERE brand_id = h.brand_id AND position = 4),
       last_id = %(keep)s, last_xact = (SELECT xact FROM events WHERE id = %(keep)s)
 WHERE brand_id = %(brand)s"""


async def _trim_tail(settings: Any, brand_id: int, ids: list[int]) -> None:
    """Events 5 and 6 of ``ids`` trimmed from the chain and the head rewound to 4, committed."""
    async with await connect(settings) as dba, dba.transaction():
        args = {"gone": ids[4:], "keep": ids[3], "brand": brand_id}
        for sql in (*_TRIM_TAIL, _REWIND):
            await dba.execute(sql, args)


def _kinds(report: Any) -> list[tuple[str, int | None]]:
    return [(p["problem"], p["position"]) for p in report["problems"]]


async def test_a_tail_trimmed_under_a_signed_anchor_is_reported(
    client: Any, settings: Any, tenant: Any
) -> None:
    """A probe: a DBA deleted the last two events of a chain whose head (6) was anchored, with
    their codes and links, and rewound the head to 4. The check read the anchors up to the head
    only: ``ok``, ``anchors_checked`` 0, though a signed anchor says the chain reached 6. A check
    that reaches the head now names every anchor past it (``anchor_beyond_head``); one that stops
    before the head says nothing of it."""
    brand_id, headers = tenant
    ids = await write(settings, events_of(brand_id, 6, "trim"))
    await chain_now(settings)
    assert (await client.post("/chain/anchors", headers=headers)).json()["position"] == 6
    await _trim_tail(settings, brand_id, ids)
    answer = await client.post("/chain/check", headers=headers, json={})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["head_position"] == 4 and report["ok"] is False, report
    assert _kinds(report) == [("anchor_beyond_head", 6)] and report["anchors_checked"] == 1
    assert "beyond the head" in report["first_problem"]["message"]
    ranged = (await client.post("/chain/check", headers=headers, json={"to": 3})).json()
    assert ranged["ok"] is True and ranged["anchors_checked"] == 0
    ran = await asyncio.to_thread(tracecode, "chain", "check", "--brand", str(brand_id))
    assert ran.returncode == 1 and "anchor_beyond_head (position 6" in ran.stdout, ran.stdout


async def test_a_position_anchored_with_another_hash_is_never_answered_as_the_heads(
    client: Any, settings: Any, tenant: Any
) -> None:
    """A probe: after such a trimming, two new events brought the head back to 6, and ``POST
    /chain/anchors`` answered 200 with the old anchor of 6 — a signed hash that is not the head's
    (``ON CONFLICT DO NOTHING``, then the existing row unchecked). It is 409 ``chain_broken`` now
    (the new events chained all the same), and the workers' pass keeps the error on the head."""
    brand_id, headers = tenant
    ids = await write(settings, events_of(brand_id, 6, "refill"))
    await chain_now(settings)
    old = (await client.post("/chain/anchors", headers=headers)).json()
    await _trim_tail(settings, brand_id, ids)
    await write(settings, events_of(brand_id, 2, "refill-new"))
    again = await client.post("/chain/anchors", headers=headers)
    assert_error(again, 409, "chain_broken")
    head = (await client.get("/chain", headers=headers)).json()
    assert head["position"] == 6 and head["hash"] != old["hash"]  # chained, not anchored
    assert head["error"] and "another hash" in head["error"], head  # kept, as the workers keep it
    listed = (await client.get("/chain/anchors", headers=headers)).json()
    assert listed["items"] == [old]
    report = (await client.post("/chain/check", headers=headers, json={})).json()
    assert _kinds(report) == [("anchor_mismatch", 6)], report
    async with await connect(settings) as own:
        await own.execute(
            "UPDATE event_chain_anchors SET anchored_at = anchored_at - interval '2 hours' "
            "WHERE brand_id = %s",
            (brand_id,),
        )
        await anchors.anchor_due(own, settings)
    head = (await client.get("/chain", headers=headers)).json()
    assert head["error"] and "another hash" in head["error"], head
    assert (await client.get("/chain/anchors", headers=headers)).json()["total"] == 1


async def test_links_left_beyond_a_rewound_head_are_reported(settings: Any, tenant: Any) -> None:
    """A probe: a DBA rewound only the head (6 -> 4), leaving links 5 and 6 and their events: the
    check walked to the head and passed. The links past the head's position, or naming an event
    after its ``(xact, id)``, are ``link_beyond_head`` now."""
    brand_id, _ = tenant
    ids = await write(settings, events_of(brand_id, 6, "rewind"))
    await chain_now(settings)
    report = await tampered(settings, brand_id, (_REWIND, {"keep": ids[3], "brand": brand_id}))
    assert report.head_position == 4
    assert [(p.problem, p.position, p.event_id) for p in report.problems] == [
        ("link_beyond_head", 5, ids[4]),
        ("link_beyond_head", 6, ids[5]),
    ]
    # the head's (xact, id) rewound alone: the links it no longer covers
    only_id = await tampered(
        settings,
        brand_id,
        ("UPDATE event_chain_heads SET last_id = %s WHERE brand_id = %s", (ids[3], brand_id)),
    )
    assert [(p.problem, p.position) for p in only_id.problems] == [
        ("link_beyond_head", 5),
        ("link_beyond_head", 6),
    ]
    assert (await tampered(settings, brand_id)).ok


async def test_a_range_check_names_the_link_before_it_when_it_is_gone(
    client: Any, settings: Any, tenant: Any
) -> None:
    """A probe: ``POST /chain/check {"from": 4}`` with link 3 deleted and event 4 altered said
    ``ok``: the first event was re-hashed from nothing and its check skipped silently. The gone
    link is ``link_missing`` at 3 now."""
    brand_id, headers = tenant
    ids = await write(settings, events_of(brand_id, 6, "range"))
    await chain_now(settings)
    intact = (await client.post("/chain/check", headers=headers, json={"from": 4})).json()
    assert intact["ok"] is True and intact["links_checked"] == 3
    async with await connect(settings) as dba:
        await dba.execute("UPDATE events SET read_point = 'moved' WHERE id = %s", (ids[3],))
        await dba.execute("DELETE FROM event_chain WHERE event_id = %s", (ids[2],))
    report = (await client.post("/chain/check", headers=headers, json={"from": 4})).json()
    assert report["ok"] is False and report["first_problem"]["problem"] == "link_missing"
    assert report["first_problem"]["position"] == 3


async def test_an_on_demand_anchor_waits_for_the_transactions_open_before_it(
    client: Any, settings: Any, tenant: Any, monkeypatch: Any
) -> None:
    """A probe: any unrelated transaction open since before two events were committed held the
    horizon below them: ``POST /chain/anchors`` chained nothing and answered the previous
    anchor as if current. It waits for such a transaction to end now (a few seconds at most),
    then anchors the head with the events; past the wait it is 503 ``chain_behind`` — never the
    older anchor."""
    from app.chain import service

    brand_id, headers = tenant
    await write(settings, events_of(brand_id, 2, "horizon-a"))
    assert (await client.post("/chain/anchors", headers=headers)).json()["position"] == 2
    async with await connect(settings, autocommit=False) as other:
        await other.execute("SELECT pg_current_xact_id()")  # an unrelated open transaction
        await write(settings, events_of(brand_id, 2, "horizon-b"))
        made = asyncio.ensure_future(client.post("/chain/anchors", headers=headers))
        await asyncio.sleep(0.5)
        assert not made.done()  # waiting for ``other``
        await other.rollback()
        answer = await made
    assert answer.status_code == 201 and answer.json()["position"] == 4, answer.text
    monkeypatch.setattr(service, "HORIZON_WAIT_SECONDS", 0.3)
    async with await connect(settings, autocommit=False) as other:
        await other.execute("SELECT pg_current_xact_id()")
        await write(settings, events_of(brand_id, 2, "horizon-c"))
        behind = await client.post("/chain/anchors", headers=headers)
        await other.rollback()
    assert_error(behind, 503, "chain_behind")
    assert behind.headers["retry-after"] == "1"
    listed = (await client.get("/chain/anchors", headers=headers)).json()
    assert [a["position"] for a in listed["items"]] == [4, 2]
    assert (await client.post("/chain/anchors", headers=headers)).json()["position"] == 6


def _with_codes(lines: list[str], codes: list[str]) -> list[str]:
    """The export with its one event's ``codes`` replaced and its link's hash recomputed over
    them joined by ``,`` (what someone editing an export would do)."""
    item = json.loads(lines[1])
    item["event"]["codes"] = codes
    values = [item["event"][name] for name in chainverify.FIELDS[:-1]] + [",".join(codes)]
    previous = chainverify.genesis(7)
    item["hash"] = chainverify.link(previous, chainverify.canonical(values)).hex()
    return [lines[0], json.dumps(item)]


def test_the_offline_verifier_takes_each_code_as_one_kind_and_number(
    tmp_path: Path, capsys: Any
) -> None:
    """A probe: the verifier hashed ``",".join(codes)``, so an export whose event named one code
    ``u:1,u:2`` instead of units 1 and 2 (same bytes) verified ``ok``. Each element must be one
    ``u:N`` or ``c:N``."""
    lines = _offline_export(links=1)
    assert _verify_file(tmp_path, _with_codes(lines, ["u:1", "u:2", "c:3"]), capsys)[0] == 0
    for bad in (["u:1,u:2", "c:3"], ["u:1", "x:2"], ["u:1", "u:-2"], ["u:1 "], ["u:"], [""]):
        status, printed = _verify_file(tmp_path, _with_codes(lines, bad), capsys)
        assert status == 1 and "not one kind:code" in printed, (bad, printed)


def test_the_offline_verifier_refuses_what_no_hash_covers(tmp_path: Path, capsys: Any) -> None:
    """A probe: a key added to an exported event (``member_id``) or to its link line passed
    unverified, as the verifier hashed the 23 fields and ignored the rest. An event must hold
    exactly the ``FIELDS``, a link line ``position``, ``hash`` and ``event`` only."""
    lines = _offline_export(links=1)
    assert _verify_file(tmp_path, lines, capsys)[0] == 0
    added = json.loads(lines[1])
    added["event"]["member_id"] = "4242"
    status, printed = _verify_file(tmp_path, [lines[0], json.dumps(added)], capsys)
    assert status == 1 and "not hashed: member_id" in printed, printed
    dropped = json.loads(lines[1])
    del dropped["event"]["details"]  # hashed as null before
    status, printed = _verify_file(tmp_path, [lines[0], json.dumps(dropped)], capsys)
    assert status == 1 and "missing: details" in printed, printed
    extra = json.loads(lines[1])
    extra["verified_by"] = "auditor"
    status, printed = _verify_file(tmp_path, [lines[0], json.dumps(extra)], capsys)
    assert status == 1 and "keys no hash covers: verified_by" in printed, printed


# -- a head repaired, records that cannot be chained or read, events no check saw, the verifier's
# -- silence on unanchored links


async def test_a_repaired_head_loses_its_error_with_nothing_pending(
    client: Any, settings: Any
) -> None:
    """A probe: a head the workers could not anchor (its hash cut short), every event chained,
    kept its error after the repair and ``tracecode chain run``: ``run`` took only the brands
    with pending events, and a batch with nothing pending returned before clearing the error —
    the workers left the brand out for good. ``run`` takes every brand whose head holds an
    error now (``pending_brands(broken=True)``), and a head that checks out clears it. The
    reason kept is the error's first line: not PostgreSQL's DETAIL quoting the row."""
    from workers.chain import chain_pass

    bad = random.SystemRandom().randrange(10**12, 10**13)
    await write(settings, events_of(bad, 2, "cut-head"))
    head = "SELECT position, error FROM event_chain_heads WHERE brand_id = %s"
    async with await connect(settings) as own:
        await chainer.chain_all(own, [bad])
        await own.execute(
            "UPDATE event_chain_heads SET hash = substring(hash from 2) WHERE brand_id = %s",
            (bad,),
        )
        await chain_pass(own)  # the workers cannot anchor it: the error kept
        error = (await (await own.execute(head, (bad,))).fetchone())["error"]
        assert error.startswith("CheckViolation: new row"), error
        assert "DETAIL" not in error and "Failing row" not in error and "\n" not in error, error
        # the repair: the head's hash put back as its last link's
        await own.execute(
            """UPDATE event_chain_heads h SET hash = (SELECT hash FROM event_chain c
                   WHERE c.brand_id = h.brand_id AND c.position = h.position)
               WHERE brand_id = %s""",
            (bad,),
        )
        assert bad not in await chainer.pending_brands(own)  # nothing pending, error set
        assert bad in await chainer.pending_brands(own, broken=True)  # ``tracecode chain run``
        done = await chainer.chain_all(own, [bad])
        assert done.failed == {} and done.appended == 0
        assert (await (await own.execute(head, (bad,))).fetchone())["error"] is None
    await write(settings, events_of(bad, 1, "after-repair"))
    async with await connect(settings) as own:
        await chain_pass(own)  # the workers' pass takes the brand again
        row = await (await own.execute(head, (bad,))).fetchone()
    assert row == {"position": 3, "error": None}


async def test_a_head_checking_out_keeps_the_error_of_an_anchor_signed_with_another_hash(
    client: Any, settings: Any, tenant: Any
) -> None:
    """A review probe: a head that checks out cleared the error it held, nothing pending too — also
    the workers' "anchor N signed another hash at position P" (the chain trimmed and refilled: the
    one sign a consistent rewrite of the links cannot hide). The next ``POST /chain/anchors``
    wiped it (then answered 409), as did ``tracecode chain run``, and the workers chained the
    brand again. A batch keeps that error now (``ChainBroken``) while an anchor disagrees with
    the chain, and clears it once none does."""
    from workers.chain import chain_pass

    brand_id, headers = tenant
    ids = await write(settings, events_of(brand_id, 6, "kept"))
    await chain_now(settings)
    assert (await client.post("/chain/anchors", headers=headers)).status_code == 201
    await _trim_tail(settings, brand_id, ids)
    await write(settings, events_of(brand_id, 2, "kept-new"))
    async with await connect(settings) as own:
        await chainer.chain_all(own, [brand_id])  # back to 6, another hash
        await own.execute(
            "UPDATE event_chain_anchors SET anchored_at = anchored_at - interval '2 hours' "
            "WHERE brand_id = %s",
            (brand_id,),
        )
        await anchors.anchor_due(own, settings)
    head = (await client.get("/chain", headers=headers)).json()
    assert head["error"] and "another hash" in head["error"], head
    again = await client.post("/chain/anchors", headers=headers)  # nothing pending
    assert_error(again, 409, "chain_broken")
    assert "another hash" in (await client.get("/chain", headers=headers)).json()["error"]
    await write(settings, events_of(brand_id, 1, "kept-later"))
    async with await connect(settings) as own:
        assert brand_id in await chainer.pending_brands(own, broken=True)
        done = await chainer.chain_all(own, [brand_id])  # ``tracecode chain run``
        assert "another hash at position 6" in done.failed[brand_id], done
        await chain_pass(own)  # the workers leave the brand out
        head = (await client.get("/chain", headers=headers)).json()
        assert head["position"] == 6 and "another hash" in head["error"], head
        # no anchor disagrees any more (here: a DBA dropped it): the next batch clears the error
        await own.execute("DELETE FROM event_chain_anchors WHERE brand_id = %s", (brand_id,))
        done = await chainer.chain_all(own, [brand_id])
        assert done.failed == {} and done.appended == 1
    head = (await client.get("/chain", headers=headers)).json()
    assert head["position"] == 7 and head["error"] is None, head


async def test_an_on_demand_anchor_over_an_event_it_cannot_hash_is_chain_broken(
    client: Any, settings: Any, tenant: Any, monkeypatch: Any
) -> None:
    """A probe: an event the chainer could not hash (then its time ``infinity``: PostgreSQL's
    FeatureNotSupported, "cannot convert infinity to bigint") made ``POST /chain/anchors`` a
    500 — it caught ChainBroken and IntegrityError only — and nothing was kept on the head. Any
    error of PostgreSQL's but a lost connection, a lock or a cancelled statement is 409
    ``chain_broken`` now, its reason kept on the head as the workers' pass keeps it; the next
    request, the event hashable again, chains it and clears the error."""
    brand_id, headers = tenant
    await write(settings, events_of(brand_id, 2, "poison"))
    assert (await client.post("/chain/anchors", headers=headers)).status_code == 201
    await write(settings, events_of(brand_id, 1, "poison-next"))
    codes_of = chainer.codes_of

    async def unhashable(conn: Any, ids: Any) -> Any:
        await conn.execute("SELECT (extract(epoch FROM 'infinity'::timestamptz) * 1e6)::bigint")
        return await codes_of(conn, ids)

    monkeypatch.setattr(chainer, "codes_of", unhashable)
    answer = await client.post("/chain/anchors", headers=headers)
    monkeypatch.undo()
    error = assert_error(answer, 409, "chain_broken")
    assert error["details"]["reason"].startswith("FeatureNotSupported: cannot convert"), error
    head = (await client.get("/chain", headers=headers)).json()
    assert head["position"] == 2 and head["error"].startswith("FeatureNotSupported"), head
    made = await client.post("/chain/anchors", headers=headers)
    assert made.status_code == 201 and made.json()["position"] == 3, made.text
    assert (await client.get("/chain", headers=headers)).json()["error"] is None


def _micros(moment: str) -> str:
    """A time's canonical text as the algorithm has it: microseconds since the epoch."""
    since = datetime.fromisoformat(moment) - datetime(1970, 1, 1, tzinfo=UTC)
    return str(since // timedelta(microseconds=1))


async def test_an_event_whose_time_is_infinity_is_named_and_finite_times_hash_as_before(
    settings: Any, tenant: Any
) -> None:
    """A probe: a chained event's time set to ``infinity`` by hand made ``POST /chain/check``
    (and ``tracecode chain check``) a 500: ``EVENT_TEXT`` cast its epoch to ``bigint``. Such a
    time is hashed as PostgreSQL's text of it now, so the check names the event
    ``event_changed`` — and a finite time's text is byte for byte what it was (every chain
    stored verifies unchanged), before 1970, at year 1 and 9999 too."""
    brand_id, _ = tenant
    ids = await write(settings, events_of(brand_id, 3, "inf"))
    await chain_now(settings)
    before = "((extract(epoch FROM e.{0}) * 1000000)::bigint)::text"  # the text chains hold
    async with await connect(settings, autocommit=False) as dba:
        for moment in (
            "1969-12-31 23:59:59.999999+00:00",
            "1970-01-01 00:00:00+00:00",
            "2026-12-01 08:00:00.000123+08:00",
            "0001-01-01 00:00:00.000001+00:00",
            "9999-12-31 23:59:59.999999+00:00",
        ):
            await dba.execute(
                "UPDATE events SET event_time = %s, record_time = %s WHERE id = %s",
                (moment, moment, ids[0]),
            )
            row = await (
                await dba.execute(
                    f"""SELECT {chainer.EVENT_TEXT}, {before.format("event_time")} AS was_event,
                               {before.format("record_time")} AS was_record
                        FROM events e WHERE e.id = %s""",
                    (ids[0],),
                )
            ).fetchone()
            assert row["event_time"] == row["was_event"] == _micros(moment), moment
            assert row["record_time"] == row["was_record"] == _micros(moment), moment
        await dba.rollback()
    report = await tampered(
        settings,
        brand_id,
        ("UPDATE events SET event_time = 'infinity' WHERE id = %s", (ids[1],)),
        ("UPDATE events SET record_time = '-infinity' WHERE id = %s", (ids[2],)),
    )
    assert [(p.problem, p.position, p.event_id) for p in report.problems] == [
        ("event_changed", 2, ids[1]),
        ("event_changed", 3, ids[2]),
    ]
    assert (await tampered(settings, brand_id)).ok


async def test_an_anchor_whose_time_was_moved_past_9999_is_named(
    client: Any, settings: Any, tenant: Any
) -> None:
    """A probe: an anchor's ``anchored_at`` moved to year 10000 (a valid PostgreSQL time) could
    not be loaded as a Python datetime: ``POST /chain/check`` and ``GET /chain/anchors`` were
    400 ``validation_failed``. Anchors are read as the text their signature covers now, made by
    PostgreSQL: such an anchor is listed and the check names it ``anchor_signature``."""
    brand_id, headers = tenant
    await write(settings, events_of(brand_id, 3, "anchor-time"))
    made = (await client.post("/chain/anchors", headers=headers)).json()
    listed = (await client.get("/chain/anchors", headers=headers)).json()
    assert listed["items"] == [made]  # an ordinary time reads back as the signed text
    moved = "UPDATE event_chain_anchors SET anchored_at = %s WHERE brand_id = %s"
    for moment, text in (
        ("10000-01-01 00:00:00+00", "10000-01-01T00:00:00.000000Z"),
        ("infinity", "infinity"),
    ):
        async with await connect(settings, autocommit=False) as dba:
            await dba.execute(moved, (moment, brand_id))
            report = await check.check_chain(dba, settings, brand_id)
            found, _ = await anchors.list_anchors(dba, brand_id, 1, 50)
            await dba.rollback()
        assert [(p.problem, p.position) for p in report.problems] == [("anchor_signature", 3)]
        assert [a.anchored_at for a in found] == [text]


async def test_an_event_moved_into_another_brand_is_unchained_there(
    settings: Any, tenant: Any
) -> None:
    """A probe: one of brand A's chained events moved by hand into brand B, whose chain was past
    it: B's check said ``ok`` — ``_unchained`` took a link of any brand's chain as naming it.
    Only a link of B's chain does now: the event is ``event_unchained`` in B."""
    a_id, _ = tenant
    b_id = random.SystemRandom().randrange(10**12, 10**13)
    moved = (await write(settings, events_of(a_id, 2, "from-a")))[0]
    await write(settings, events_of(b_id, 2, "b-own"))
    await chain_now(settings)
    assert (await tampered(settings, b_id)).ok
    report = await tampered(
        settings, b_id, ("UPDATE events SET brand_id = %s WHERE id = %s", (b_id, moved))
    )
    assert [(p.problem, p.event_id) for p in report.problems] == [("event_unchained", moved)]


async def test_an_event_naming_a_transaction_not_begun_is_named(settings: Any, tenant: Any) -> None:
    """A probe: an event inserted by hand with an ``xact`` no transaction has reached is never
    chained (the chainer waits for the horizon to pass it), holds nothing back, and was served
    by every read of the log while the check said ``ok``. It is ``event_unchained`` now."""
    brand_id, _ = tenant
    await write(settings, events_of(brand_id, 2, "future"))
    await chain_now(settings)
    new_id, report = await inserted_by_hand(settings, brand_id, "999999999999")
    assert [(p.problem, p.event_id) for p in report.problems] == [("event_unchained", new_id)]
    assert "has not begun" in report.problems[0].message


def _rehashed(lines: list[str]) -> list[str]:
    """The export's link lines with every hash recomputed and its anchor lines dropped: what
    someone who edited an event hands over."""
    out, previous = [lines[0]], bytes.fromhex(json.loads(lines[0])["previous_hash"])
    for text in lines[1:]:
        item = json.loads(text)
        if "anchor" in item:
            continue
        values = chainverify.event_values(item["event"])
        previous = chainverify.link(previous, chainverify.canonical(values))
        item["hash"] = previous.hex()
        out.append(json.dumps(item, ensure_ascii=False))
    return out


async def test_the_offline_verifier_names_the_links_no_anchor_covers(
    client: Any, settings: Any, tenant: Any, tmp_path: Path, capsys: Any
) -> None:
    """A probe: an export with an event altered, every hash after it recomputed and the anchor
    line dropped verified ``ok … 0 anchors verified``, exit 0, under the real public key —
    nothing said that no signature covered the links. The positions after the last verified
    anchor (all, without one) are named now, in a warning and on the ``ok`` line, and
    ``--require-anchor`` (with ``--public-key``) fails on them."""
    brand_id, headers = tenant
    await write(settings, events_of(brand_id, 6, "cover"))
    assert (await client.post("/chain/anchors", headers=headers)).json()["position"] == 6
    await write(settings, events_of(brand_id, 2, "cover-tail"))
    await chain_now(settings)
    public = (await client.get("/chain", headers=headers)).json()["public_key"]
    lines = (await client.get("/chain/export", headers=headers)).text.splitlines()
    key = ("--public-key", public)
    status, printed = _verify_file(tmp_path, lines, capsys, *key)
    assert status == 0 and "1 anchors verified" in printed, printed
    assert "warning: no verified anchor covers positions 7..8" in printed, printed
    assert "NOT ANCHORED: positions 7..8" in printed, printed
    status, printed = _verify_file(tmp_path, lines, capsys, *key, "--require-anchor")
    assert status == 1 and "no verified anchor covers positions 7..8" in printed, printed
    anchored = (await client.get("/chain/export", headers=headers, params={"to": 6})).text
    status, printed = _verify_file(
        tmp_path, anchored.splitlines(), capsys, *key, "--require-anchor"
    )
    assert status == 0 and "NOT ANCHORED" not in printed and "warning" not in printed, printed
    forged = _rehashed([line.replace('"cover-2"', '"forged"') for line in lines])
    status, printed = _verify_file(tmp_path, forged, capsys, *key)
    assert status == 0 and "NOT ANCHORED: positions 1..8" in printed, printed
    status, printed = _verify_file(tmp_path, forged, capsys, *key, "--require-anchor")
    assert status == 1 and "FAILED (line 0, position 1)" in printed, printed
    with pytest.raises(SystemExit) as refused:  # the export's own key proves nothing
        _verify_file(tmp_path, forged, capsys, "--require-anchor")
    assert refused.value.code == 2 and "needs --public-key" in capsys.readouterr().err


def test_the_offline_verifier_names_a_link_whose_event_is_gone(tmp_path: Path, capsys: Any) -> None:
    """A probe: the export of a link whose event row was deleted (``"event": null``) failed as
    ``expected the link at position 3``, with no position in its location — the link is there,
    its event is what is missing. It is ``event missing`` at its position now."""
    lines = _offline_export(links=3)
    gone = json.loads(lines[3])
    gone["event"] = None
    status, printed = _verify_file(tmp_path, [*lines[:3], json.dumps(gone)], capsys)
    assert status == 1 and "FAILED (line 4, position 3): event missing" in printed, printed
