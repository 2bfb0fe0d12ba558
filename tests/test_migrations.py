"""Numbered plain-SQL migrations: applied once, concurrency-safe, same schema either way."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app import db, embedded
from app.processes import server_command
from tests.conftest import ROOT, SESSION
from tests.servers import free_port

SCHEMA_SQL = """
SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
  FROM information_schema.columns WHERE table_schema = 'public'
 UNION ALL
SELECT tablename, indexname, indexdef, '', '' FROM pg_indexes WHERE schemaname = 'public'
 UNION ALL
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), '', ''
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
 ORDER BY 1, 2, 3
"""


def _schema(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(SCHEMA_SQL).fetchall()


@pytest.fixture
def fresh_db(settings: Any) -> Any:
    name = f"tracecode_mig_{SESSION}"
    url = embedded.ensure_database(settings.database_url, name)
    yield url
    embedded.drop_database(settings.database_url, name)


def migrate_to(url: str, last: int) -> None:
    """Apply the shipped migrations up to ``last`` as the runner does: an older release's
    database (the same files, checksummed, each in its own transaction)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for version, name, text in db.migrations():
            if version > last:
                break
            with conn.transaction():
                conn.execute(text)  # type: ignore[arg-type]
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (version, name, hashlib.sha256(text.encode()).hexdigest()),
                )


def _tracecode_db(url: str, action: str) -> subprocess.CompletedProcess[str]:
    """``tracecode db <action>`` on the database ``url``, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "db", action],
        env={**os.environ, "TRACECODE_DATABASE_URL": url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fresh_and_up_to_date_databases_end_in_the_same_schema(
    fresh_db: str, settings: Any, client: Any
) -> None:
    """``client`` started the app, which migrated the session database at start-up."""
    applied = db.migrate(fresh_db)
    assert applied == [name for _, name, _ in db.migrations()]
    assert db.migrate(fresh_db) == []  # nothing is re-run
    assert db.migrate(settings.database_url) == []  # the session database is up to date
    fresh = _schema(fresh_db)
    assert fresh and fresh == _schema(settings.database_url)


def test_concurrent_migrators_apply_each_migration_once(fresh_db: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(db.migrate(fresh_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, len(db.migrations())]
    with psycopg.connect(fresh_db) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(db.migrations()),)


def test_an_edited_applied_migration_is_refused(fresh_db: str) -> None:
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        db.migrate(fresh_db)


def test_the_status_of_a_database_against_the_release(
    fresh_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Probe Y: an operator had no way to see what a release would apply, and old code started
    against a newer schema said nothing (``tracecode db status``)."""
    shipped = [name for _, name, _ in db.migrations()]
    before = db.migration_status(fresh_db)
    assert (before.applied, before.pending, before.unknown) == ([], shipped, [])
    db.migrate(fresh_db)
    now = db.migration_status(fresh_db)
    assert [name for name, _ in now.applied] == shipped
    assert (now.pending, now.unknown, now.changed) == ([], [], [])
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute("SELECT checksum FROM schema_migrations WHERE version = 1").fetchone()
        before_sum = row[0] if row else ""
        conn.execute("INSERT INTO schema_migrations VALUES (9999, '9999_next_release.sql', 'x')")
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    later = db.migration_status(fresh_db)
    assert (later.unknown, later.changed) == (["9999_next_release.sql"], [shipped[0]])
    backfill = "0057_api_key_makers_from_audit.sql"  # an UPDATE: it may run again
    with psycopg.connect(fresh_db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 1", (before_sum,))
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (backfill,))
    with caplog.at_level("WARNING", logger="tracecode.db"):
        assert db.migrate(fresh_db) == [backfill]
    assert "9999_next_release.sql" in caplog.text


def test_db_migrate_over_an_edited_migration_is_one_line_not_a_traceback(fresh_db: str) -> None:
    """A probe: an operator whose database ran a migration since edited (a hot-fixed release, a
    rebuilt package) got a Python traceback from `tracecode db migrate` (and every command that
    migrates first): the error of app/db.py:migrate was not among those app/cli.py:main turns
    into one `tracecode: …` line. Now one line naming the migration (as `tracecode db status`
    does), a non-zero exit, no traceback."""
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    done = _tracecode_db(fresh_db, "migrate")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("tracecode: ")]
    assert "0001_init.sql" in line, line
    # and the API server run on its own (granian's factory), where it was a traceback too
    served = subprocess.run(
        server_command("127.0.0.1", free_port(), 1),
        env={**os.environ, "TRACECODE_DATABASE_URL": fresh_db},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = served.stdout + served.stderr
    assert served.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert "tracecode: migration 0001_init.sql" in output, output[-3000:]


def test_db_migrate_does_not_call_a_newer_releases_database_up_to_date(fresh_db: str) -> None:
    """A probe: after a rollback (a newer release migrated the database), `tracecode db migrate`
    printed "database is up to date", while `tracecode db status` on the same database said
    "differs from this release" (exit 1); the only hint was a log warning on stderr. Now it
    names the migrations the release does not ship and never calls the database up to date;
    exit 0 all the same (README "Start-up": running an older release on a newer schema is a
    rollback, allowed with a warning; deploy scripts go on)."""
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) "
            "VALUES (9999, '9999_next_release.sql', 'x')"
        )
    status = _tracecode_db(fresh_db, "status")
    assert status.returncode == 1 and "9999_next_release.sql" in status.stdout
    done = _tracecode_db(fresh_db, "migrate")
    assert done.returncode == 0, done.stderr
    assert "up to date" not in done.stdout, done.stdout
    assert "ahead of this release" in done.stdout and "9999_next_release.sql" in done.stdout


def test_migration_0096_leaves_a_long_prefix_brand_room_for_its_pallets(fresh_db: str) -> None:
    """A probe: migration 0096 (SSCC serial references per prefix, for a long prefix's brand
    that the shared sequence had run out of room) started every prefix in use at the shared
    sequence's value — a 10-digit prefix (room up to 999,999) at 1,500,000: its case batches
    422 ``sscc_range_exhausted`` for good, as before. A prefix the sequence had run past goes
    on from its own batches' last reference; one it had not, from the sequence (a restore may
    have moved it past batches no row records)."""
    from app.codes.cases import sscc_capacity

    long_prefix, short_prefix = "6912345678", "6901234"
    migrate_to(fresh_db, 95)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for name, prefix in (("Long", long_prefix), ("Short", short_prefix)):
            conn.execute(
                "INSERT INTO orgs (kind, name, erp_code, gs1_company_prefix) "
                "VALUES ('brand', %s, %s, %s)",
                (f"{name} prefix", name.upper(), prefix),
            )
        conn.execute("SELECT setval('sscc_serial_ref_seq', 1500000)")  # other brands' pallets
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        counts = dict(conn.execute("SELECT company_prefix, last_ref FROM sscc_refs").fetchall())
    assert counts[long_prefix] < sscc_capacity(long_prefix), counts
    assert counts[short_prefix] == 1500000, counts  # its room reaches past the sequence


async def test_migration_0127_takes_claim_retries_already_counted_out_of_the_analytics(
    fresh_db: str,
) -> None:
    """A probe: every retry of a claim (reason ``claim_retry``: checked, not a new query of the
    code) was counted as one more verification by A7 and the dashboard. Migration 0127 stops
    counting them and takes out those already folded: the kept dashboard day holding them is
    dropped (counted again when asked), A7 falls back to the one claim and equals its recount,
    and a retry written after it is not queued."""
    from psycopg.rows import dict_row

    from app.analytics.people import recount, rollup_alone

    migrate_to(fresh_db, 126)
    day_sql = "((now() - interval '2 days') AT TIME ZONE 'Asia/Shanghai')::date"
    insert = """INSERT INTO verifications (at, record_key, brand_id, result, reason, pin_given)
        SELECT now() - interval '2 days', gen_random_uuid(), %s, 'genuine', r, true
        FROM unnest(%s::text[]) AS r"""
    async with await psycopg.AsyncConnection.connect(
        fresh_db, autocommit=True, row_factory=dict_row
    ) as conn:
        brand = await (
            await conn.execute(
                "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'Retried', 'RTRY') "
                "RETURNING id"
            )
        ).fetchone()
        assert brand is not None
        await conn.execute(insert, (brand["id"], ["first_query", "claim_retry", "claim_retry"]))
        await conn.execute(
            f"INSERT INTO dashboard_days (brand_id, day, verifications, counterfeits, activations)"
            f" VALUES (%s, {day_sql}, 3, 0, 0)",
            (brand["id"],),
        )
        await rollup_alone(conn, wait=True)

        async def a7() -> Any:
            row = await (
                await conn.execute(
                    "SELECT sum(total) AS total FROM analytics_verifications "
                    "WHERE brand_id = %s AND product_id = 0 AND level = 0",
                    (brand["id"],),
                )
            ).fetchone()
            return row and row["total"]

        assert await a7() == 3  # as counted before the migration
        db.migrate(fresh_db)
        await conn.execute(insert, (brand["id"], ["claim_retry"]))  # after it: not queued
        await rollup_alone(conn, wait=True)
        assert await a7() == 1
        kept = await (
            await conn.execute("SELECT * FROM dashboard_days WHERE brand_id = %s", (brand["id"],))
        ).fetchall()
        assert kept == []
        assert await recount(conn) == []


def test_migration_0128_names_the_key_maker_where_the_audit_log_is_sure(fresh_db: str) -> None:
    """A probe: changes made through an API key recorded nobody (the key has no user): a manual
    fraud hold read as the ring detector's (``created_by`` null), released by nobody, a member
    frozen by nobody, a draw campaign and an alert closed by nobody. Migration 0128 fills those
    from the audit log's row of that very change (same entity, id and action, in the same
    transaction) with the key's maker; a system key's (no maker), the ring detector's, a user's
    and a change the audit log does not match keep what they had."""
    migrate_to(fresh_db, 127)

    def audited(
        conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...], audit: tuple[Any, ...]
    ) -> int:
        """``sql`` (returning an id) and the audit row of it, (user, key, action, entity), in
        one transaction as ``audit.record`` writes it: the id."""
        with conn.transaction():
            row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
            assert row is not None
            user, key, action, entity = audit
            conn.execute(
                "INSERT INTO audit_log (actor_user, actor_key, action, entity, entity_id) "
                "VALUES (%s, %s, %s, %s, %s)",
                (user, key, action, entity, str(row[0])),
            )
        return int(row[0])

    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def new_id(sql: str, *args: Any) -> int:
            row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
            assert row is not None
            return int(row[0])

        brand = new_id(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'K', 'K') RETURNING id"
        )
        maker = new_id(
            "INSERT INTO users (org_id, username, password_hash) VALUES (%s, 'crm_maker', 'x') "
            "RETURNING id",
            brand,
        )
        api_key = "INSERT INTO api_keys (org_id, name, prefix, secret_hash, permissions, "
        api_key += "created_by) VALUES (%s, %s, %s, '\\x00', '{}', %s) RETURNING id"
        made = new_id(api_key, brand, "crm", "crm", maker)
        system = new_id(api_key, brand, "sys", "sys", None)
        member = "INSERT INTO members (brand_id, phone) VALUES (%s, %s) RETURNING id"
        members = [new_id(member, brand, f"1390000000{i}") for i in range(5)]
        hold = "INSERT INTO fraud_holds (brand_id, party_kind, party_id, rule, created_by) "
        hold += "VALUES (%s, 'member', %s, %s, %s) RETURNING id"
        by_key = audited(conn, hold, (brand, members[0], "manual", None),
                         (None, made, "create", "fraud_hold"))  # fmt: skip
        by_system = audited(conn, hold, (brand, members[1], "manual", None),
                            (None, system, "create", "fraud_hold"))  # fmt: skip
        by_user = audited(conn, hold, (brand, members[2], "manual", maker),
                          (maker, None, "create", "fraud_hold"))  # fmt: skip
        detector = new_id(hold, brand, members[3], "shared_device", None)
        decide = "UPDATE fraud_holds SET state = %s, decided_at = now() WHERE id = %s RETURNING id"
        audited(conn, decide, ("released", by_key), (None, made, "release", "fraud_hold"))
        audited(conn, decide, ("confirmed", detector), (None, made, "confirm", "fraud_hold"))
        freeze = "UPDATE members SET status = 'frozen', frozen_at = now() WHERE id = %s "
        freeze += "RETURNING id"
        audited(conn, freeze, (members[0],), (None, made, "freeze", "member"))
        # frozen again later, by hand in the database: the key's freeze is not this one
        conn.execute(
            "INSERT INTO audit_log (actor_key, action, entity, entity_id, at) "
            "VALUES (%s, 'freeze', 'member', %s, now() - interval '1 day')",
            (made, str(members[4])),
        )
        conn.execute(
            "UPDATE members SET status = 'frozen', frozen_at = now() WHERE id = %s", (members[4],)
        )
        campaign = audited(
            conn,
            "INSERT INTO draw_campaigns (brand_id, name, starts_at, ends_at, product_ids, "
            "no_prize_weight) VALUES (%s, 'Key draw', now(), now() + interval '1 day', '{1}', 1) "
            "RETURNING id",
            (brand,),
            (None, made, "create", "draw_campaign"),
        )
        alert = audited(
            conn,
            "INSERT INTO alerts (brand_id, org_id, kind, severity, message, dedup_key, "
            "acknowledged_at) VALUES (%s, %s, 'probe', 'warning', 'm', 'k', now()) RETURNING id",
            (brand, brand),
            (None, made, "acknowledge", "alert"),
        )
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        holds = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT id, created_by, decided_by FROM fraud_holds WHERE brand_id = %s", (brand,)
            )
        }
        frozen = dict(
            conn.execute(
                "SELECT id, frozen_by FROM members WHERE id = ANY(%s)", ([members[0], members[4]],)
            ).fetchall()
        )
        others = conn.execute(
            "SELECT (SELECT created_by FROM draw_campaigns WHERE id = %s), "
            "(SELECT acknowledged_by FROM alerts WHERE id = %s)",
            (campaign, alert),
        ).fetchone()
    assert holds[by_key] == (maker, maker)
    assert holds[by_system] == (None, None) and holds[by_user] == (maker, None)
    assert holds[detector] == (None, maker)  # the detector's hold, confirmed through the key
    assert frozen == {members[0]: maker, members[4]: None}
    assert others == (maker, maker)


def test_migration_0130_keeps_one_brand_per_wechat_app_id_and_brand_name(fresh_db: str) -> None:
    """Probes: brand B saved brand A's WeChat app id and sent as A's account; a tenant renamed
    its brand to another brand's name. Migration 0130 makes both one brand's: an app id stored
    twice stays the oldest account's — the later ones removed, each with an audit row —, and
    brand names (blanks at either end aside, any case) get a unique index that leaves out, by
    id, the brands that shared an older brand's name already (not renamed)."""
    migrate_to(fresh_db, 129)
    app_id = "wx" + "ab" * 8
    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def brand(name: str, age: str) -> int:
            row = conn.execute(
                "INSERT INTO orgs (kind, name, erp_code, created_at) "
                "VALUES ('brand', %s, %s, now() - %s::interval) RETURNING id",
                (name, f"E-{name.strip()}-{age}", age),
            ).fetchone()
            assert row is not None
            return int(row[0])

        older, later, other = (
            brand("Twin", "2 days"),
            brand(" twin\u3000", "1 day"),
            brand("Solo", "0"),
        )
        for brand_id, age in ((later, "1 day"), (older, "2 days"), (other, "0")):
            conn.execute(
                "INSERT INTO wechat_accounts (brand_id, app_id, secret_sealed, enabled, created_at)"
                " VALUES (%s, %s, '\\x00', true, now() - %s::interval)",
                (brand_id, app_id if brand_id != other else "wx" + "cd" * 8, age),
            )
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        kept = conn.execute("SELECT brand_id FROM wechat_accounts ORDER BY brand_id").fetchall()
        assert [r[0] for r in kept] == [older, other]
        audited = conn.execute(
            "SELECT org_id, action, before ->> 'app_id', after ->> 'by' FROM audit_log "
            "WHERE entity = 'wechat_account'"
        ).fetchall()
        assert audited == [(later, "delete", app_id, "migration 0130")]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO wechat_accounts (brand_id, app_id, secret_sealed) VALUES (%s, %s, '')",
                (later, app_id),
            )
        names = conn.execute("SELECT name FROM orgs WHERE id = %s", (later,)).fetchone()
        assert names == (" twin\u3000",)  # not renamed
        for taken in ("TWIN", "solo "):
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(
                    "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', %s, %s)",
                    (taken, f"N-{taken.strip()}"),
                )
        conn.execute(  # a brand's name, not any organisation's
            "INSERT INTO orgs (kind, name, erp_code, parent_id) VALUES ('store', 'Solo', 'S', %s)",
            (other,),
        )


def test_migration_0131_names_more_key_makers_where_the_audit_log_is_sure(fresh_db: str) -> None:
    """A probe: more changes made through an API key recorded nobody: a batch voided, a code
    pool, a printer-file export, a webhook subscription, an order and a catalogue medium made,
    a packing line set and a till's sale handled, all by nobody. Migration 0131 fills those
    from the audit log's row of that very change (as 0128: same entity, id and action, in the
    same transaction) with the key's maker, and a sale's handler from the key its row names; a
    system key's (no maker), a user's, a change the audit log does not match and a sale of no
    key keep what they had."""
    migrate_to(fresh_db, 130)

    def audited(
        conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...], audit: tuple[Any, ...]
    ) -> Any:
        """``sql`` (returning an id) and the audit row of it, (user, key, action, entity), in
        one transaction as ``audit.record`` writes it: the id."""
        with conn.transaction():
            row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
            assert row is not None
            user, key, action, entity = audit
            conn.execute(
                "INSERT INTO audit_log (actor_user, actor_key, action, entity, entity_id) "
                "VALUES (%s, %s, %s, %s, %s)",
                (user, key, action, entity, str(row[0])),
            )
        return row[0]

    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def new_id(sql: str, *args: Any) -> Any:
            row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
            assert row is not None
            return row[0]

        brand = new_id(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'Makers', 'MK') RETURNING id"
        )
        store = new_id(
            "INSERT INTO orgs (kind, name, erp_code, parent_id) VALUES ('store', 'Till', 'MK-T', "
            "%s) RETURNING id",
            brand,
        )
        maker = new_id(
            "INSERT INTO users (org_id, username, password_hash) VALUES (%s, 'key_maker', 'x') "
            "RETURNING id",
            brand,
        )
        api_key = "INSERT INTO api_keys (org_id, name, prefix, secret_hash, permissions, "
        api_key += "created_by) VALUES (%s, %s, %s, '\\x00', '{}', %s) RETURNING id"
        made = new_id(api_key, brand, "erp", "erp", maker)
        system = new_id(api_key, brand, "sys", "sys", None)
        key_by, system_by = (None, made), (None, system)

        batch = "INSERT INTO code_batches (batch_no, brand_id, printer_id, size, key_version) "
        batch += "VALUES (%s, %s, %s, 10, 1) RETURNING batch_no"
        batches = [new_id(batch, n, brand, brand) for n in (1, 2, 3, 4)]
        void = "UPDATE code_batches SET state = 'void', voided_at = now(), voided_by = %s "
        void += "WHERE batch_no = %s RETURNING batch_no"
        audited(conn, void, (None, batches[0]), (*key_by, "void", "code_batch"))
        audited(conn, void, (None, batches[1]), (*system_by, "void", "code_batch"))
        audited(conn, void, (maker, batches[2]), (maker, None, "void", "code_batch"))
        conn.execute(  # voided again by hand later: the key's void is not this one
            "INSERT INTO audit_log (actor_key, action, entity, entity_id, at) "
            "VALUES (%s, 'void', 'code_batch', %s, now() - interval '1 day')",
            (made, str(batches[3])),
        )
        conn.execute(void, (None, batches[3]))

        pool = audited(
            conn,
            "INSERT INTO code_pools (brand_id, name) VALUES (%s, 'key pool') RETURNING id",
            (brand,),
            (*key_by, "create", "code_pool"),
        )
        export = audited(
            conn,
            "INSERT INTO code_exports (id, brand_id, batch_no, range_start, range_end, "
            "key_version, url_prefix, parts) VALUES (gen_random_uuid(), %s, %s, 0, 10, 1, "
            "'https://x', '{}') RETURNING id",
            (brand, batches[0]),
            (*key_by, "create", "code_export"),
        )
        hook = "INSERT INTO webhook_subscriptions (brand_id, org_id, owner_org_id, url, "
        hook += "event_kinds, secret_sealed) VALUES (%s, %s, %s, 'https://hook.invalid', "
        hook += "'{x}', '\\x00') RETURNING id"
        args = (brand, brand, brand)
        hooks = [
            audited(conn, hook, args, (*key_by, "create", "webhook_subscription")),
            audited(conn, hook, args, (*system_by, "create", "webhook_subscription")),
        ]
        order = audited(
            conn,
            "INSERT INTO orders (brand_id, erp_no, kind, from_org_id, to_org_id) "
            "VALUES (%s, 'SO-1', 'sales', %s, %s) RETURNING id",
            (brand, brand, store),
            (*key_by, "create", "order"),
        )
        line = "INSERT INTO lines (org_id, code) VALUES (%s, %s) RETURNING id"
        lines = [
            audited(conn, line, (brand, "L1"), (*key_by, "set_context", "line")),
            audited(conn, line, (brand, "L2"), (*key_by, "set_context", "line")),
        ]
        conn.execute(  # L2 changed since, and not by the key (its context is no longer the key's)
            "UPDATE lines SET lot = 'B', updated_at = now() + interval '1 minute' WHERE id = %s",
            (lines[1],),
        )
        medium = audited(
            conn,
            "INSERT INTO catalog_media (id, brand_id, kind, content_type, size_bytes, sha256, "
            "storage_key) VALUES (gen_random_uuid(), %s, 'image', 'image/png', 1, '\\x01', 'k') "
            "RETURNING id",
            (brand,),
            (*key_by, "upload", "catalog_media"),
        )
        sale = "INSERT INTO documents (brand_id, doc_no, direction, kind, org_id, api_key_id) "
        sale += "VALUES (%s, %s, 'outbound', 'sale', %s, %s) RETURNING id"
        sales = [
            new_id(sale, brand, "S1", store, made),
            new_id(sale, brand, "S2", store, system),
            new_id(sale, brand, "S3", store, None),  # a claim's sale: no key, no handler
        ]
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def by(sql: str, ids: list[Any]) -> list[Any]:
            found = dict(conn.execute(sql, (ids,)).fetchall())  # type: ignore[arg-type]
            return [found[i] for i in ids]

        voided = by(
            "SELECT batch_no, voided_by FROM code_batches WHERE batch_no = ANY(%s)", batches
        )
        made_by = [
            by("SELECT id, created_by FROM code_pools WHERE id = ANY(%s)", [pool]),
            by("SELECT id, created_by FROM code_exports WHERE id = ANY(%s)", [export]),
            by("SELECT id, created_by FROM orders WHERE id = ANY(%s)", [order]),
            by("SELECT id, created_by FROM catalog_media WHERE id = ANY(%s)", [medium]),
        ]
        hooked = by("SELECT id, created_by FROM webhook_subscriptions WHERE id = ANY(%s)", hooks)
        set_by = by("SELECT id, updated_by FROM lines WHERE id = ANY(%s)", lines)
        handlers = by("SELECT id, handler_id FROM documents WHERE id = ANY(%s)", sales)
    assert voided == [maker, None, maker, None]
    assert made_by == [[maker]] * 4
    assert hooked == [maker, None]
    assert set_by == [maker, None]
    assert handlers == [maker, None, None]


def test_migration_0132_takes_the_quoted_record_and_the_erased_hash_out_of_dead_letters(
    fresh_db: str,
) -> None:
    """A probe: a dead letter's reason was PostgreSQL's whole error, its DETAIL and CONTEXT
    lines quoting the refused record, which the retention and the erasure kept when they
    cleared the payload; and a failed SMS's copy held the keyed hash of an erased member's
    phone for ever. New letters are made without either; migration 0132 cuts the old reasons
    of the two queues the retention clears to their first line (the sweep's or the erasure's
    note kept) and nulls the hash in the old copies, their text in row_to_json's form."""
    migrate_to(fresh_db, 131)
    quoted = 'DataError: refused\nCONTEXT:  JSON data, line 1: ..."client_ip":"10.9.8.7"'
    swept = " (personal data cleared: past its retention)"
    copy = '{"id":42,"phone":"000000000000042","phone_hash":"\\\\xabcd","variables":{}}'
    letters = [
        ("verifications", b"{}", quoted + swept),
        ("verifications", b"{}", quoted.replace("\n", " ") + swept),  # breaks made spaces
        ("verifications", b"{}", "DataError: refused" + swept),
        ("sms_outbox", copy.encode(), "out of attempts: boom\nDETAIL:  13912345678"),
        ("sms_outbox", b'{"id":43,"phone_hash":null}', "out of attempts"),
        ("stock_deltas", b"{}", quoted),  # no personal data: the retention's queues only
    ]
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        ids = [
            conn.execute(
                "INSERT INTO dead_letters (queue, payload, reason) VALUES (%s, %s, %s) "
                "RETURNING id",
                letter,
            ).fetchone()[0]  # type: ignore[index]
            for letter in letters
        ]
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT payload, reason FROM dead_letters WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
    assert [r[1] for r in rows] == [
        "DataError: refused" + swept,
        "DataError: refused" + swept,
        "DataError: refused" + swept,
        "out of attempts: boom",
        "out of attempts",
        quoted,
    ]
    assert bytes(rows[3][0]) == (
        b'{"id":42,"phone":"000000000000042","phone_hash":null,"variables":{}}'
    )
    assert bytes(rows[4][0]) == b'{"id":43,"phone_hash":null}'


def test_migration_0134_takes_the_freeze_reasons_out_of_the_members_audit(fresh_db: str) -> None:
    """A probe: a member's ``freeze``/``unfreeze`` audit rows kept the reasons staff wrote (a
    phone rung, a name), which the erasure never reaches. Migration 0134 replaces them in the
    old rows by whether one was given (``reasoned``), the rest of each row kept; other
    entities' and actions' rows stay as they were."""
    migrate_to(fresh_db, 133)
    rows = [
        ("freeze", "member", {"status": "active", "reason": None},
         {"status": "frozen", "reason": "rang 13912345678"}),
        ("unfreeze", "member", {"status": "frozen", "reason": "rang 13912345678",
                                "carried_over": True}, {"status": "active", "reason": None}),
        ("freeze", "member", None, {"status": "frozen", "reason": "幸福路", "carried_over": True}),
        ("freeze", "member", {"status": "active", "reasoned": False}, "not an object"),
        ("release", "fraud_hold", None, {"reason": "kept"}),
        ("update", "member", {"reason": "kept"}, None),
    ]  # fmt: skip
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        ids = [
            conn.execute(
                "INSERT INTO audit_log (action, entity, entity_id, before, after) "
                "VALUES (%s, %s, '1', %s, %s) RETURNING id",
                (action, entity, Jsonb(before) if before is not None else None, Jsonb(after)),
            ).fetchone()[0]  # type: ignore[index]
            for action, entity, before, after in rows
        ]
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        got = conn.execute(
            "SELECT before, after FROM audit_log WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
    assert [tuple(r) for r in got] == [
        ({"status": "active", "reasoned": False}, {"status": "frozen", "reasoned": True}),
        ({"status": "frozen", "reasoned": True, "carried_over": True},
         {"status": "active", "reasoned": False}),
        (None, {"status": "frozen", "reasoned": True, "carried_over": True}),
        ({"status": "active", "reasoned": False}, "not an object"),
        (None, {"reason": "kept"}),
        ({"reason": "kept"}, None),
    ]  # fmt: skip


def test_migration_0135_lets_only_the_erasure_replace_an_erased_member_s_reasons(
    fresh_db: str,
) -> None:
    """The ledger stays append-only (0016) but for the erasure's one change (0135): inside an
    erasure (``tracecode.erasing`` set for the transaction) the reason of an erased member's
    entry may become "membership erased", nothing else; DELETE and TRUNCATE never."""
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def one(sql: str, *args: Any) -> Any:
            return conn.execute(sql, args).fetchone()[0]  # type: ignore[index,arg-type]

        brand = one(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'L', 'L') RETURNING id"
        )
        member = "INSERT INTO members (brand_id, phone, status, erased_at) "
        member += "VALUES (%s, %s, %s, CASE WHEN %s THEN now() END) RETURNING id"
        erased, living = (
            one(member, brand, "000000000000001", "erased", True),
            one(member, brand, "13900000002", "active", False),
        )
        entry = "INSERT INTO points_ledger (member_id, brand_id, kind, points, reason) "
        entry += "VALUES (%s, %s, 'adjustment', 5, 'rang 13912345678') RETURNING id"
        mine, theirs = one(entry, erased, brand), one(entry, living, brand)
        on = "SELECT set_config('tracecode.erasing', 'on', true)"
        erase = "UPDATE points_ledger SET reason = 'membership erased'"
        for statements in [
            [erase + " WHERE id = %(mine)s"],
            [on, erase + ", points = 6 WHERE id = %(mine)s"],
            [on, erase + ", at = at - interval '1 day' WHERE id = %(mine)s"],
            [on, "UPDATE points_ledger SET reason = 'x' WHERE id = %(mine)s"],
            [on, erase + " WHERE id = %(theirs)s"],
            [on, "DELETE FROM points_ledger WHERE id = %(mine)s"],
            [on, "TRUNCATE points_ledger CASCADE"],
        ]:
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                with conn.transaction():
                    for sql in statements:
                        conn.execute(sql, {"mine": mine, "theirs": theirs})  # type: ignore[arg-type]
        with conn.transaction():
            conn.execute(on)
            conn.execute(erase + " WHERE id = %s", (mine,))
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):  # set locally
            conn.execute(erase + " WHERE id = %s", (mine,))
        got = conn.execute(
            "SELECT id, points, reason FROM points_ledger WHERE id = ANY(%s) ORDER BY id",
            ([mine, theirs],),
        ).fetchall()
    assert got == [(mine, 5, "membership erased"), (theirs, 5, "rang 13912345678")]


def test_migration_0136_makes_an_adjustment_s_client_id_its_caller_s(fresh_db: str) -> None:
    """A probe: a points adjustment's client id was the member's, shared by every caller of the
    brand (the CRM key's "welcome-1" answered with a person's entry). Migration 0136 keys it by
    its caller (``client_owner``): the entries kept before are attributed from the audit row of
    their creation — a key's to the key, a user's to the user's organisation —, one the audit
    log does not name stays the brand's; the ledger stays append-only."""
    migrate_to(fresh_db, 135)
    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def one(sql: str, *args: Any) -> Any:
            return conn.execute(sql, args).fetchone()[0]  # type: ignore[index,arg-type]

        brand = one(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'M', 'M') RETURNING id"
        )
        admin = one(
            "INSERT INTO users (org_id, username, password_hash) VALUES (%s, 'pts_admin', 'x') "
            "RETURNING id",
            brand,
        )
        key = one(
            "INSERT INTO api_keys (org_id, name, prefix, secret_hash, permissions, created_by) "
            "VALUES (%s, 'crm', 'crm', '\\x00', '{}', %s) RETURNING id",
            brand,
            admin,
        )
        member = one("INSERT INTO members (brand_id, phone) VALUES (%s, '13900000009') "
                     "RETURNING id", brand)  # fmt: skip
        entry = "INSERT INTO points_ledger (member_id, brand_id, kind, points, reason, "
        entry += "recorded_by, client_id) VALUES (%s, %s, 'adjustment', 5, 'r', %s, %s) "
        entry += "RETURNING id"
        audit = "INSERT INTO audit_log (actor_user, actor_key, org_id, action, entity, entity_id) "
        audit += "VALUES (%s, %s, %s, 'create', 'points_entry', %s)"
        by_key = one(entry, member, brand, admin, "k-1")
        conn.execute(audit, (None, key, brand, str(by_key)))
        by_user = one(entry, member, brand, admin, "u-1")
        conn.execute(audit, (admin, None, brand, str(by_user)))
        unknown = one(entry, member, brand, None, "x-1")
        plain = one(entry, member, brand, admin, None)
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        owners = dict(
            conn.execute(
                "SELECT id, client_owner FROM points_ledger WHERE member_id = %s", (member,)
            ).fetchall()
        )
        assert owners == {
            by_key: f"key:{key}",
            by_user: f"org:{brand}",
            unknown: "brand",
            plain: None,
        }
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE points_ledger SET client_owner = 'x' WHERE id = %s", (by_key,))
        again = "INSERT INTO points_ledger (member_id, brand_id, kind, points, reason, client_id, "
        again += "client_owner) VALUES (%s, %s, 'adjustment', 5, 'r', 'k-1', %s)"
        conn.execute(again, (member, brand, f"org:{brand}"))  # another caller's same id
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(again, (member, brand, f"key:{key}"))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(again.replace("'k-1'", "NULL"), (member, brand, f"key:{key}"))


def test_migration_0133_names_a_product_s_media_by_their_paths(fresh_db: str) -> None:
    """A probe: a product naming its brand's catalogue medium by the upload's ``absolute_url``
    was not seen as showing it (the in-use check and the unused list look for the path), and
    the medium was deleted from under it. The catalogue keeps such a URL as the path now;
    migration 0133 did the same for the products saved before — only where the medium is of the
    product's brand and of the field's kind (another brand's, or a video as an image, is left
    as it was, as is any other URL)."""
    import hashlib
    import uuid

    migrate_to(fresh_db, 132)
    image, video = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def new_id(sql: str, *args: Any) -> Any:
            row = conn.execute(sql, args).fetchone()
            assert row is not None
            return row[0]

        brand = new_id(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'B', 'B') RETURNING id"
        )
        other = new_id(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'O', 'O') RETURNING id"
        )
        conn.execute("UPDATE orgs SET path = '/' || id || '/' WHERE id IN (%s, %s)", (brand, other))
        for medium, kind in ((image, "image"), (video, "video")):
            conn.execute(
                """INSERT INTO catalog_media (id, brand_id, kind, content_type, size_bytes, sha256,
                                              storage_key)
                   VALUES (%s, %s, %s, 'image/png', 1, %s, %s)""",
                (medium, brand, kind, hashlib.sha256(medium.bytes).digest(), str(medium)),
            )
        urls = [
            (
                brand,
                f"http://127.0.0.1:8000/media/catalog/{image}",
                f"https://h/media/catalog/{video}",
            ),
            (brand, f"https://cdn.example.com/media/catalog/{str(image).upper()}?v=2", None),
            (other, f"https://h/media/catalog/{image}", None),  # another brand's: as it was
            (brand, f"https://h/media/catalog/{video}", f"https://h/media/catalog/{image}"),
            (brand, f"https://h/media/catalog/{image}/x", "https://img.example.com/a.mp4"),
        ]
        products = [
            new_id(
                "INSERT INTO products (org_id, name, product_no, image_url, video_url) "
                "VALUES (%s, 'p', %s, %s, %s) RETURNING id",
                org,
                f"P-{n}",
                image_url,
                video_url,
            )
            for n, (org, image_url, video_url) in enumerate(urls)
        ]
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        found = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT id, image_url, video_url FROM products WHERE id = ANY(%s)", (products,)
            ).fetchall()
        }
    path = f"/media/catalog/{image}"
    assert [found[p] for p in products] == [
        (path, f"/media/catalog/{video}"),
        (path, None),
        urls[2][1:],
        urls[3][1:],
        urls[4][1:],
    ]


def test_migration_0137_keeps_product_numbers_and_category_names_in_nfc(fresh_db: str) -> None:
    """A review: numbers and category names are kept in NFC since the API and the ERP import
    normalise them, but rows stored before kept the form they were typed in — a re-import of
    the same file, now in NFC, met a decomposed category as ``unknown_category`` and made a
    second product of a decomposed number. Migration 0137 stores them in NFC, except where that
    would collide on the unique key (an NFC twin in the organisation, or two rows alike once
    normalised: all left) or pass the column's length limit."""
    import unicodedata

    def nfd(text: str) -> str:
        return unicodedata.normalize("NFD", text)

    cafe, creme, s_dots = "CAF\u00c9-1", "CR\u00c8ME", "\u1e68-1"  # each in NFC
    reordered = "S\u0307\u0323-1"  # another non-NFC form of s_dots (its marks out of order)
    long_no = "\u0958" * 33  # 33 characters; NFC: 66, over products.product_no's 64
    assert nfd(s_dots) != reordered
    assert unicodedata.normalize("NFC", reordered) == s_dots
    migrate_to(fresh_db, 136)
    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def new_id(sql: str, *args: Any) -> Any:
            row = conn.execute(sql, args).fetchone()
            assert row is not None
            return row[0]

        brand, other = (
            new_id(
                "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', %s, %s) RETURNING id",
                n,
                n,
            )
            for n in ("B", "O")
        )
        conn.execute("UPDATE orgs SET path = '/' || id || '/' WHERE id IN (%s, %s)", (brand, other))
        numbers = [
            (brand, nfd(cafe)),  # alone: NFC
            (brand, creme),
            (brand, nfd(creme)),  # its NFC twin exists: left
            (other, nfd(creme)),  # another organisation's: NFC
            (brand, nfd(s_dots)),  # two rows alike once normalised: both left
            (brand, reordered),
            (brand, long_no),  # too long in NFC: left
        ]
        products = [
            new_id(
                "INSERT INTO products (org_id, name, product_no) VALUES (%s, 'p', %s) RETURNING id",
                org,
                number,
            )
            for org, number in numbers
        ]
        names = [
            (brand, nfd(creme)),  # alone: NFC
            (brand, cafe),
            (brand, nfd(cafe)),  # its NFC twin exists: left
            (other, nfd(cafe)),  # another organisation's: NFC
            (brand, "\u0958" * 51),  # NFC: 102 characters, over categories.name's 100: left
        ]
        categories = [
            new_id("INSERT INTO categories (org_id, name) VALUES (%s, %s) RETURNING id", org, name)
            for org, name in names
        ]
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        stored = dict(
            conn.execute(
                "SELECT id, product_no FROM products WHERE id = ANY(%s)", (products,)
            ).fetchall()
        )
        named = dict(
            conn.execute(
                "SELECT id, name FROM categories WHERE id = ANY(%s)", (categories,)
            ).fetchall()
        )
    kept = [n for _, n in numbers]
    assert [stored[p] for p in products] == [cafe, creme, kept[2], creme, *kept[4:]]
    assert [named[c] for c in categories] == [creme, cafe, names[2][1], cafe, names[4][1]]


async def test_migration_0141_takes_members_erased_before_out_of_the_member_counts(
    fresh_db: str,
) -> None:
    """A probe: an erased membership was still counted by A4 and A6, under an unknown region
    and band (the erasure clears them). Migration 0141 queues the members erased before, so
    the next roll-up takes them out of the member counts, their points staying where they were
    counted; the recount called the old figures wrong and agrees after the roll-up. The state
    before it is made here as the roll-up before it left an erasure: the member counted with
    its profile cleared, its status changed unseen by the trigger."""
    from pathlib import Path

    from psycopg.rows import dict_row

    from app import migrations
    from app.analytics.people import recount, rollup_alone

    db.migrate(fresh_db)
    async with await psycopg.AsyncConnection.connect(
        fresh_db, autocommit=True, row_factory=dict_row
    ) as conn:

        async def one(sql: str, *args: Any) -> Any:
            return await (await conn.execute(sql, args)).fetchone()  # type: ignore[arg-type]

        brand = (
            await one(
                "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'E', 'E') RETURNING id"
            )
        )["id"]
        member = "INSERT INTO members (brand_id, phone, province, birthday) VALUES (%s, %s, "
        member += "'浙江省', '1990-05-05') RETURNING id"
        gone = (await one(member, brand, "13900000001"))["id"]
        await one(member, brand, "13900000002")
        await conn.execute(
            "INSERT INTO points_ledger (member_id, brand_id, kind, points, reason) "
            "VALUES (%s, %s, 'adjustment', 50, 'grant')",
            (gone, brand),
        )
        await conn.execute(
            "UPDATE members SET province = NULL, birthday = NULL WHERE id = %s", (gone,)
        )
        await rollup_alone(conn, wait=True)  # counted, as before 0141, under '' with its points
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # no trigger
            await conn.execute(
                "UPDATE members SET status = 'erased', erased_at = now() WHERE id = %s", (gone,)
            )

        async def members() -> list[tuple[Any, ...]]:
            rows = await (
                await conn.execute(
                    "SELECT province, members FROM analytics_member_regions "
                    "WHERE brand_id = %s AND level = 1 AND members <> 0 ORDER BY 1",
                    (brand,),
                )
            ).fetchall()
            return [(r["province"], r["members"]) for r in rows]

        assert await members() == [("", 1), ("浙江省", 1)]
        assert {m.table for m in await recount(conn)} == {
            "analytics_member_regions",
            "analytics_member_regions_m",
            "analytics_points_ages",
            "analytics_points_ages_m",
        }
        sql = Path(migrations.__file__).parent / "0141_analytics_erased_members.sql"
        await conn.execute(sql.read_text())  # as applied to that database (it may run again)
        await rollup_alone(conn, wait=True)
        assert await members() == [("浙江省", 1)]
        ages = await (
            await conn.execute(
                "SELECT birthday::text, age_band, members, adjusted FROM analytics_points_ages "
                "WHERE brand_id = %s ORDER BY 1",
                (brand,),
            )
        ).fetchall()
        assert [tuple(r.values()) for r in ages] == [
            ("1990-05-05", "", 1, 0),
            ("infinity", "", 0, 50),
        ]
        assert await recount(conn) == []


async def test_migration_0146_leaves_members_erased_before_no_birthday_day_nor_region(
    fresh_db: str,
) -> None:
    """A probe: the erasure clears the profile, and the people analytics' facts kept the erased
    member's exact birthday, province and city under its id. Migration 0146 leaves the facts of
    the members erased before the birthday's month and no region, their points moved from the
    birthday's cell to the month's first day (the month cells as they were); the recount, which
    counts an erased member at its birthday's month, called the old state wrong and agrees
    after it. The state before it is made here as the roll-up before it left an erasure."""
    from datetime import date
    from pathlib import Path

    from psycopg.rows import dict_row

    from app import migrations
    from app.analytics.people import recount, rollup_alone

    db.migrate(fresh_db)
    born, first = date(1987, 3, 14), date(1987, 3, 1)
    async with await psycopg.AsyncConnection.connect(
        fresh_db, autocommit=True, row_factory=dict_row
    ) as conn:

        async def rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
            found = await (await conn.execute(sql, args)).fetchall()  # type: ignore[arg-type]
            return [tuple(r.values()) for r in found]

        [(brand,)] = await rows(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'E', 'E') RETURNING id"
        )
        [(gone,)] = await rows(
            "INSERT INTO members (brand_id, phone, province, city, birthday) "
            "VALUES (%s, '13900000001', '浙江省', '杭州市', %s) RETURNING id",
            brand,
            born,
        )
        await conn.execute(
            "INSERT INTO points_ledger (member_id, brand_id, kind, points, reason) "
            "VALUES (%s, %s, 'adjustment', 50, 'grant')",
            (gone, brand),
        )
        await rollup_alone(conn, wait=True)
        await conn.execute(
            "UPDATE members SET status = 'erased', erased_at = now(), province = NULL, "
            "city = NULL, birthday = NULL WHERE id = %s",
            (gone,),
        )
        await rollup_alone(conn, wait=True)
        async with conn.transaction():  # as the roll-up before 0146 left it: the place kept
            await conn.execute(
                "UPDATE analytics_member_facts SET birthday = %s, province = '浙江省', "
                "city = '杭州市' WHERE member_id = %s",
                (born, gone),
            )
            await conn.execute(
                "UPDATE analytics_points_ages SET adjusted = adjusted + 50 * (CASE WHEN "
                "birthday = %s THEN 1 ELSE -1 END), balance = balance + 50 * (CASE WHEN "
                "birthday = %s THEN 1 ELSE -1 END) WHERE brand_id = %s AND birthday IN (%s, %s)",
                (born, born, brand, born, first),
            )
        facts = "SELECT birthday, province, city, erased FROM analytics_member_facts "
        facts += "WHERE member_id = %s"
        cells = "SELECT birthday, members, adjusted, balance FROM analytics_points_ages "
        cells += "WHERE brand_id = %s AND (members, adjusted, balance) <> (0, 0, 0) ORDER BY 1"
        months = "SELECT month, members, adjusted, balance FROM analytics_points_ages_m "
        months += "WHERE brand_id = %s AND (members, adjusted, balance) <> (0, 0, 0)"
        assert await rows(facts, gone) == [(born, "浙江省", "杭州市", True)]
        assert await rows(cells, brand) == [(born, 0, 50, 50)]
        assert {m.table for m in await recount(conn)} == {"analytics_points_ages"}
        sql = Path(migrations.__file__).parent / "0146_analytics_erased_members_keep_no_profile.sql"
        for _ in range(2):  # as applied to that database (it may run again)
            async with conn.transaction():
                await conn.execute(sql.read_text())  # type: ignore[arg-type]
            assert await rows(facts, gone) == [(first, "", "", True)]
            assert await rows(cells, brand) == [(first, 0, 50, 50)]
            assert await rows(months, brand) == [(first, 0, 50, 50)]
            assert await recount(conn) == []


def test_migration_0142_compares_brand_names_as_they_show(fresh_db: str) -> None:
    """A probe: brands were made with the demo brand's name written another way that shows the
    same (a decomposed accent, a zero-width space inside, a no-break space between the words).
    Migration 0142 indexes the names as they show (``brand_name_key``) and, brands that share
    such a name already being kept as they are, leaves out by id each but the oldest of it: the
    migration does not fail on them, and the oldest's name is held against every new brand."""
    migrate_to(fresh_db, 141)
    with psycopg.connect(fresh_db, autocommit=True) as conn:

        def brand(name: str, erp: str, age: str) -> int:
            row = conn.execute(
                "INSERT INTO orgs (kind, name, erp_code, created_at) "
                "VALUES ('brand', %s, %s, now() - %s::interval) RETURNING id",
                (name, erp, age),
            ).fetchone()
            assert row is not None
            return int(row[0])

        older = brand("Lumière Cosmetics", "E-1", "3 days")
        nfd = brand("Lumie\u0300re\u00a0cosmetics", "E-2", "2 days")  # a look-alike before 0142
        spaced = brand("LUMI\u200bÈRE  COSMETICS", "E-3", "1 day")
        other = brand("Solo", "E-4", "0")
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        names = conn.execute(
            "SELECT id, name FROM orgs WHERE id = ANY(%s) ORDER BY id", ([nfd, spaced],)
        ).fetchall()
        assert names == [
            (nfd, "Lumie\u0300re\u00a0cosmetics"),
            (spaced, "LUMI\u200bÈRE  COSMETICS"),
        ]
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'orgs_brand_name_uq'"
        ).fetchone()
        assert index is not None and "brand_name_key(name)" in index[0], index
        assert f"{{{nfd},{spaced}}}" in index[0], index  # left out, by id
        for n, taken in enumerate(("lumière\u3000cosmetics", "So\u200blo\ufe0f", " ＳＯＬＯ")):
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(
                    "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', %s, %s)",
                    (taken, f"N-{n}"),
                )
        # the ones left out can be renamed (and the older keeps its name)
        conn.execute("UPDATE orgs SET name = 'Lumen' WHERE id = %s", (nfd,))
        conn.execute(  # a brand's name, not any organisation's
            "INSERT INTO orgs (kind, name, erp_code, parent_id) VALUES ('store', 'Solo', 'S', %s)",
            (other,),
        )
        assert older < nfd


def test_migration_0147_stores_org_provinces_by_their_full_names(fresh_db: str) -> None:
    """A probe: an organisation's province name was kept as typed ("Zhejiang" beside 330000, or
    alone), and the SMS audiences, the draws, the leak and ring detectors, which compare it with
    the full name, put the store in no province. Migration 0147 stores the rows kept before as
    the API now does (``app.provinces.province_named``: every spelling it reads, blanks around
    it): a known code's full name; a name alone that is a province's, its full name and code;
    a code of no province and a name alone that is none's left as they were. The stores' sales
    region groups follow (migration 0036's trigger)."""
    from app.provinces import CODE_OF, PROVINCES, province_named

    alone = [*PROVINCES, "ZheJiang", "HONG KONG", "\u3000浙江\t", " 330000 ", "440000"]
    rows: list[tuple[str | None, str | None, str | None, str | None]] = [
        ("330000", "Zhejiang", "330000", "浙江省"),
        ("330000", " 浙江 ", "330000", "浙江省"),
        ("330000", "广东省", "330000", "浙江省"),  # named another's before that was refused
        ("440000", None, "440000", "广东省"),
        ("990000", "Zhejiang", "990000", "Zhejiang"),  # no province's code: left
        (None, "Atlantis", None, "Atlantis"),  # no province's name: left
        (None, "330100", None, "330100"),  # a city's code: none
        (None, None, None, None),
    ]
    for name in alone:
        full = province_named(name)
        assert full is not None, name
        rows.append((None, name, CODE_OF[full], full))
    migrate_to(fresh_db, 146)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        found = conn.execute(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'B', 'B') RETURNING id"
        ).fetchone()
        assert found is not None
        brand = found[0]
        conn.execute("UPDATE orgs SET path = '/' || id || '/' WHERE id = %s", (brand,))
        ids = []
        for n, (code, name, _, _) in enumerate(rows):
            found = conn.execute(
                "INSERT INTO orgs (kind, name, erp_code, parent_id, province_code, province_name)"
                " VALUES ('store', 's', %s, %s, %s, %s) RETURNING id",
                (f"S-{n}", brand, code, name),
            ).fetchone()
            assert found is not None
            ids.append(found[0])
            conn.execute(
                "UPDATE orgs SET path = %s WHERE id = %s", (f"/{brand}/{found[0]}/", found[0])
            )
    db.migrate(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        stored = conn.execute(
            """SELECT o.province_code, o.province_name, g.province_code, g.province_name
                 FROM orgs o
                 JOIN sales_org_regions r ON r.org_id = o.id
                 JOIN sales_region_groups g ON g.id = r.province_group
                WHERE o.id = ANY(%s) ORDER BY o.id""",
            (ids,),
        ).fetchall()
    assert [(code, name) for code, name, _, _ in stored] == [(c, n) for _, _, c, n in rows]
    assert all((code, name) == (g_code, g_name) for code, name, g_code, g_name in stored)


async def test_an_events_partition_made_in_a_transaction_rolled_back_is_made_again(
    fresh_db: str,
) -> None:
    """A review: the process's cache of the partitions of ``events`` took the bound of one made
    in a transaction that then rolled back (an EPCIS declared event's dry run is one), so the
    process no longer made it, and its inserts past the old bound would fail. The cache holds
    the partitions there were; the next ids near the end make it again, for good."""
    from psycopg.rows import dict_row

    from app.events import log

    db.migrate(fresh_db)
    bound_sql = """SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'events'::regclass"""
    cached = log._partition_limit
    try:
        async with await psycopg.AsyncConnection.connect(
            fresh_db, autocommit=True, row_factory=dict_row
        ) as conn:
            before = (await (await conn.execute(bound_sql)).fetchone())["n"]  # type: ignore[index]
            log._partition_limit = 0
            await log.ensure_partitions(conn)  # the cache of this database's partitions
            last = log._partition_limit
            await conn.execute("SELECT setval('events_id_seq', %s)", (last - 1000,))
            async with conn.transaction(force_rollback=True):
                await log.allocate_ids(conn, 1)  # makes the next partition, rolled back
                made = (await (await conn.execute(bound_sql)).fetchone())["n"]  # type: ignore[index]
                assert made == before + 1
            assert log._partition_limit == last  # not the bound of the partition rolled back
            await log.allocate_ids(conn, 1)  # made again, kept
            kept = (await (await conn.execute(bound_sql)).fetchone())["n"]  # type: ignore[index]
            assert kept == before + 1
    finally:
        log._partition_limit = cached
