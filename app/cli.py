"""The ``tracecode`` command: run the stack, manage embedded services, migrate, demo data."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from app import embedded
from app.config import (
    PREFIX,
    Settings,
    SettingsError,
    load_settings,
    redact_url,
    unknown_variables,
)
from app.processes import server_command as server_command
from app.processes import worker_command as worker_command
from app.restore import ALLOCATIONS as RESTORE_ALLOCATIONS
from app.restore import IDS_MARGIN as RESTORE_IDS_MARGIN
from app.restore import SEQUENCES as RESTORE_SEQUENCES
from app.restore import SSCCS as RESTORE_SSCCS


def _fail(message: str) -> int:
    print(f"tracecode: {message}", file=sys.stderr)
    return 2


# Arguments naming files: a path need not be UTF-8 text (``open`` takes its bytes back).
_PATH_ARGUMENTS = frozenset(
    {"file", "out", "key", "passphrase_file", "inner_passphrase_file", "password_file"}
)


def _is_utf8(value: str) -> bool:
    """Whether ``value`` is UTF-8 text: bytes that are not reach Python as lone surrogates
    (surrogateescape), which nothing downstream can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_argument(args: argparse.Namespace) -> str | None:
    """Why the command line is refused before any command runs, or ``None``: every argument
    other than a file's name becomes text in the database or an API request, so it must be
    UTF-8 without control characters, as the API's edge takes text (``app.textguard``). A
    probe: ``--note`` typed in a GBK terminal reached Python as lone surrogates
    (surrogateescape) and psycopg's ``UnicodeEncodeError`` was a traceback."""
    from app.textguard import has_control

    for name, value in vars(args).items():
        if not isinstance(value, str) or name in _PATH_ARGUMENTS:
            continue
        option = "--as" if name == "as_user" else f"--{name.replace('_', '-')}"
        if not _is_utf8(value):
            return f"bad_encoding: {option} is not UTF-8 text (is the terminal set to UTF-8?)"
        if has_control(value):  # as the API's edge (a probe: the direct path stored an escape)
            return f"invalid_character: {option} has a control character"
    return None


def _urls(settings: Settings) -> tuple[str, str]:
    return embedded.resolve_urls(settings.database_url, settings.redis_url, settings.var_path)


def batch_scheduling() -> None:
    """``preexec_fn`` of an API server: SCHED_BATCH, inherited by its workers and their threads
    (``TRACECODE_SCHED_BATCH``). A woken SCHED_BATCH thread does not preempt the running one, so
    granian's I/O thread stops interrupting the Python thread at every socket wake-up and hands
    over in batches instead: with a core of its own, one worker served ~15-30% more requests/s
    at a lower p99. Sharing its cores with PostgreSQL, the API waits longer for its database
    replies instead (bulk packing uploads were slower): hence off by default. Both measured in
    bench/RESULTS.md (issue 7). Where the system refuses, the server runs as before."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed here
        pass


def _die_with(parent: int) -> None:
    """In a supervised child, before it runs: SIGTERM when the supervisor dies (Linux's
    parent-death signal). A supervisor killed with -9 left its API server and workers running,
    in process groups of their own, and the next ``tracecode run`` found its port taken (probe
    J). Elsewhere, or where the system refuses, the child runs as before."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        return
    if os.getppid() != parent:  # the supervisor died before the signal was set
        os._exit(1)


def ensure_dev_master_key(settings: Settings, create: bool = True) -> Settings:
    """For local runs only: with no key configured, use ``var/master.key`` (the one ``tracecode
    run`` made), creating it once when ``create``."""
    if settings.master_key or settings.master_key_file:
        return settings
    path = settings.var_path / "master.key"
    if not create and not path.exists():
        return settings  # the command fails with "no master key", naming the variables
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        print(  # on stderr: stdout may be a file of codes (a probe: its first line was this)
            f"Created a development master key in {path} (keep it; printed codes depend on it)",
            file=sys.stderr,
        )
    os.environ[PREFIX + "MASTER_KEY_FILE"] = str(path)
    return load_settings()


async def _load_demo(url: str) -> None:
    import psycopg
    from psycopg.rows import dict_row

    from app.demo import load_demo

    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        await load_demo(conn)


def cmd_migrate(settings: Settings) -> int:
    """Apply the pending migrations. A database holding migrations this release does not ship
    is named as ahead, never "up to date" (a probe: after a rollback only a log line told);
    exit 0 all the same: an older release on a newer schema is a rollback, allowed with a
    warning (README "Start-up"), and deploy scripts go on."""
    from app.db import migrate, migration_status

    db_url, _ = _urls(settings)
    applied = migrate(db_url)
    unknown = migration_status(db_url).unknown
    if applied:
        print("applied: " + ", ".join(applied))
    if unknown:
        print(
            f"database is ahead of this release: it holds {', '.join(unknown)} "
            "(a newer release migrated it)"
        )
    elif not applied:
        print("database is up to date")
    return 0


def cmd_db_status(settings: Settings) -> int:
    """The database's migrations against this release's; 1 when they differ."""
    from app.db import migration_status

    db_url, _ = _urls(settings)
    status = migration_status(db_url)
    last = status.applied[-1] if status.applied else None
    print(f"applied: {len(status.applied)}" + (f" (last {last[0]} at {last[1]})" if last else ""))
    for label, names in (
        ("pending (tracecode db migrate applies them)", status.pending),
        ("unknown to this release (a newer release migrated the database)", status.unknown),
        ("edited after they were applied (write a new migration instead)", status.changed),
    ):
        if names:
            print(f"{label}: {', '.join(names)}")
    differs = status.pending or status.unknown or status.changed
    print("differs from this release" if differs else "up to date with this release")
    return 1 if differs else 0


def _per_page(text: str) -> int:
    """A page size as the API takes it: 1 to 200 (probe P: -1 printed PostgreSQL's error in
    direct mode, past 2^63 "bigint out of range")."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number from 1 to 200")
    return value


def _margin(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, 0 or more")
    return value


def cmd_after_restore(
    settings: Settings, margins: dict[str, int], allocations: int = RESTORE_ALLOCATIONS
) -> int:
    """after-restore: move the sequences that name things outside the database (batch numbers,
    SSCC serial references, document numbers, member and organisation ids, and the ids the API
    and webhooks hand out: ``margins["ids"]``) and every batch's allocation cursor past whatever
    was issued after a restore's target point, and list the printer files whose export the
    restore lost (``app.restore``). The lost exports are found first: a batch's cursor moves
    past the codes its lost printer files hold, whatever the margin. Pending migrations are
    applied first: a backup of an older release is brought to this release's schema before its
    sequences and ``sscc_refs`` are moved (the old schema may lack some of them)."""
    import psycopg

    from app.db import migrate
    from app.restore import advance, advance_allocations, advance_ssccs, lost_exports

    db_url, _ = _urls(settings)
    applied = migrate(db_url)
    if applied:
        print("applied: " + ", ".join(applied))
    with psycopg.connect(db_url, autocommit=True) as conn:
        prefixes = [
            settings.gs1_company_prefix,
            *(
                p
                for (p,) in conn.execute(
                    "SELECT gs1_company_prefix FROM orgs WHERE gs1_company_prefix IS NOT NULL"
                )
            ),
        ]
        lost = lost_exports(conn, settings.export_path)
        moved = advance(conn, margins)
        moved += advance_ssccs(conn, margins.get("ssccs", RESTORE_SSCCS), prefixes)
        for each in moved:
            capped = " (half of the room its range has left)" if each.capped else ""
            print(f"{each.name}: last {each.before} -> {each.after}{capped}")
        batches = advance_allocations(conn, allocations, lost)
        for batch in batches:
            full = " (the whole batch: nothing left)" if batch.after == batch.size else ""
            past = (
                ""
                if batch.lost_end is None
                else f"; lost printer files' codes end at {batch.lost_end}"
            )
            print(
                f"batch {batch.batch_no}: allocated {batch.before} -> {batch.after} "
                f"of {batch.size}{full}{past}"
            )
        print(
            f"allocations: {len(batches)} batches moved on by up to {allocations}, "
            "and past every lost printer file's codes"
        )
        for export in lost:
            if export.start is None:
                what = "no readable printer file in it"
            elif export.batch_no is not None:
                what = f"batch {export.batch_no} codes [{export.start}, {export.end})"
            else:
                what = f"case batch {export.case_batch_id} cases [{export.start}, {export.end})"
            print(
                f"export {export.export_id}: {what}: its files are on disk, its record was lost "
                "by the restore; maybe printed: do not export these codes again"
            )
    return 0


def cmd_demo(settings: Settings) -> int:
    from app.db import migrate
    from app.demo import describe

    db_url, _ = _urls(settings)
    migrate(db_url)
    asyncio.run(_load_demo(db_url))
    print(describe())
    return 0


def _new_password() -> str | None:
    """The first administrator's password: typed twice at a terminal, else the first line of
    standard input (``… < file``, a secret store's pipe); never an argument (``ps`` shows those)."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("password for the new administrator: ")
        if getpass.getpass("the same again: ") != first:
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_brand_create(settings: Settings, args: argparse.Namespace) -> int:
    """A brand (a tenant) and its first administrator, by the system: how a platform starts
    without the demo (a probe: ``tracecode run --no-demo`` left a platform nobody could sign in
    to; the API's brand creation needs a platform operator, and only the demo had one).
    ``--platform-operator`` makes the administrator the platform's operator too
    (``platform_admin``), who then onboards further brands through the API. Audited as done by
    the system; the password is read as ``_new_password`` says, and checked as the API checks it."""
    import msgspec
    import psycopg
    from psycopg.rows import dict_row

    from app.db import migrate
    from app.orgs.schemas import OrgIn
    from app.orgs.service import create_org
    from app.users.schemas import UserIn
    from app.users.service import create_user, sync_builtin_roles

    not_utf8 = "bad_encoding: the password is not UTF-8 text"
    try:  # a probe: bytes that are not UTF-8 were argon2's UnicodeEncodeError, mid-transaction
        password = _new_password()
    except UnicodeDecodeError:  # a standard input decoded strictly
        return _fail(not_utf8)
    if password and not _is_utf8(password):
        return _fail(not_utf8)
    if not password:
        return _fail("no password given (or the two typed differ): nothing created")
    roles = ["brand_admin", *(["platform_admin"] if args.platform_operator else [])]
    try:
        org = {"kind": "brand", "name": args.name, "erp_code": args.erp_code}
        if args.gs1_company_prefix:
            org["gs1_company_prefix"] = args.gs1_company_prefix
        org_in = msgspec.convert(org, OrgIn)
        user = {
            "org_id": 0,
            "username": args.admin,
            "password": password,
            "roles": roles,
            # a tenant's administrator replaces the password the operator typed at its first
            # sign-in; the platform's own operator, who typed it, keeps it
            "must_change_password": not args.platform_operator,
        }
        msgspec.convert(user, UserIn)  # a refused password or name before anything is written
    except msgspec.ValidationError as exc:
        return _fail(f"invalid value: {exc}")
    db_url, _ = _urls(settings)
    migrate(db_url)

    async def create() -> tuple[Any, Any]:
        async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
            await sync_builtin_roles(conn)  # as the API's start does: a new database has none
            async with conn.transaction():  # both or neither
                brand = await create_org(conn, None, org_in)
                admin = await create_user(
                    conn, None, msgspec.convert({**user, "org_id": brand.id}, UserIn)
                )
        return brand, admin

    brand, admin = asyncio.run(create())  # a name, ERP code or username taken: AppError, main
    change = (
        "; the password is to be changed at the first sign-in" if admin.must_change_password else ""
    )
    print(
        f"brand {brand.id} {brand.name!r} ({brand.erp_code}); administrator {admin.username!r}"
        f" ({', '.join(roles)}): sign in at /console{change}"
    )
    return 0


def cmd_demo_codes(settings: Settings, count: int, out: str | None) -> int:
    """Activated demo units to try verification with: one ``serial,pin,url,story`` line each,
    the story ``shipped:STORE-HZ-01`` (genuine) or ``never_shipped`` (suspicious)."""
    from app.codes import keycheck
    from app.db import migrate
    from app.demo import DEMO_BATCH_SIZE, demo_codes

    if not 1 <= count <= DEMO_BATCH_SIZE:  # the demo batch's size (a probe: capped silently)
        return _fail(f"--count must be from 1 to {DEMO_BATCH_SIZE:,}")
    settings = ensure_dev_master_key(settings)
    db_url, _ = _urls(settings)
    migrate(db_url)
    keycheck.check(db_url, settings)  # first: "no user" below loads the demo data

    async def work(conn: Any, principal: Any, scheme: Any) -> list[Any]:
        return await demo_codes(conn, scheme, settings, count)

    try:
        codes = asyncio.run(_direct(settings, "operator", work))
    except SettingsError:
        asyncio.run(_load_demo(db_url))
        codes = asyncio.run(_direct(settings, "operator", work))
    lines = "".join(",".join(code) + "\n" for code in codes)
    if out:
        Path(out).write_text(lines, encoding="utf-8")
        print(f"wrote {count} codes to {out}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0


async def _stock(url: str, action: str) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from app.logistics.rollup import recount, rollup_alone

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        moved = await rollup_alone(conn, wait=True)
        print(f"rolled up {moved} stock deltas")
        if action == "rollup":
            return 0
        mismatches = await recount(conn)
    for m in mismatches:
        print(
            f"mismatch org {m.org_id} product {m.product_id} lot {m.lot!r}: "
            f"stock on_hand {m.on_hand} in_transit {m.in_transit}, code state on_hand "
            f"{m.expected_on_hand} in_transit {m.expected_in_transit}"
        )
    print(f"{len(mismatches)} mismatches" if mismatches else "stock equals the recount")
    return 1 if mismatches else 0


def cmd_stock(settings: Settings, action: str) -> int:
    """rollup: fold pending stock deltas now; check: roll up, then recount from the code state."""
    from app.db import migrate

    db_url, _ = _urls(settings)
    migrate(db_url)
    return asyncio.run(_stock(db_url, action))


async def _points_check(url: str) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from app.members.points import check_balances

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        mismatches = await check_balances(conn)
    for m in mismatches:
        print(f"mismatch member {m.member_id}: balance {m.balance}, ledger sum {m.ledger}")
    print(f"{len(mismatches)} mismatches" if mismatches else "every balance equals its ledger")
    return 1 if mismatches else 0


async def _rebates(url: str, action: str) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from app.rebates.ranking import recount, rollup_alone

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        moved = await rollup_alone(conn, wait=True)
        print(f"rolled up {moved} rebate claims")
        if action == "rollup":
            return 0
        mismatches = await recount(conn)
    for m in mismatches:
        print(
            f"mismatch brand {m.brand_id} month {m.month:%Y-%m} store {m.store_id} "
            + (f"clerk {m.clerk_id}" if m.clerk_id is not None else "(store total)")
            + f": totals {m.claims} claims {m.amount} yuan, claims say "
            f"{m.expected_claims} claims {m.expected_amount} yuan"
        )
    print(f"{len(mismatches)} mismatches" if mismatches else "rebate totals equal the recount")
    return 1 if mismatches else 0


def cmd_rebates(settings: Settings, action: str) -> int:
    """rollup: fold queued rebate claims into the ranking totals now; recount: roll up, then
    recount the totals from the claims (1 on any mismatch)."""
    from app.db import migrate

    db_url, _ = _urls(settings)
    migrate(db_url)
    return asyncio.run(_rebates(db_url, action))


async def _forensics(url: str, settings: Settings, action: str) -> int:
    import msgspec
    import psycopg
    from psycopg.rows import dict_row

    from app.forensics.leaks import detect_leaks
    from app.forensics.rings import detect_rings

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        detect = detect_leaks if action == "leaks" else detect_rings
        out = await detect(conn, settings, wait=True)
    print(msgspec.json.encode(out).decode())
    return 0


def cmd_forensics(settings: Settings, action: str) -> int:
    """leaks: run the leak detector now; rings: run the ring detector now (B5; each waits for a
    run already under way, then runs). Prints the run's counts as JSON."""
    from app.db import migrate

    db_url, _ = _urls(settings)
    migrate(db_url)
    return asyncio.run(_forensics(db_url, settings, action))


async def _analytics(url: str, action: str) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from app.analytics import people, sales

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        moved = await sales.rollup_alone(conn, wait=True)
        print(f"rolled up {moved} sales")
        folded = await people.rollup_alone(conn, wait=True)
        print(f"rolled up people: {folded}")
        if action == "rollup":
            return 0
        mismatches = await sales.recount(conn)
        missed = await people.recount(conn)
        drift = await sales.region_drift(conn)
    for m in mismatches:
        print(f"mismatch {m.table} brand {m.brand_id} {m.key}: {m.units} units, sold {m.expected}")
    print(f"{len(mismatches)} sales mismatches" if mismatches else "sales equal the recount")
    for p in missed:
        print(f"mismatch {p.table} {p.key}: recorded {p.recorded}, recount {p.expected}")
    print(f"{len(missed)} people mismatches" if missed else "people summaries equal the recount")
    if drift:
        print(f"regions out of date for organisations {drift}")
    return 1 if mismatches or missed or drift else 0


def cmd_analytics(settings: Settings, action: str) -> int:
    """rollup: fold the queued analytics facts into their summaries now; recount: roll up, then
    recount every summary from its source (1 on any mismatch)."""
    from app.db import migrate

    db_url, _ = _urls(settings)
    migrate(db_url)
    return asyncio.run(_analytics(db_url, action))


def cmd_points(settings: Settings) -> int:
    """check: recompute every member's balance from the points ledger; 1 on any mismatch."""
    from app.db import migrate

    db_url, _ = _urls(settings)
    migrate(db_url)
    return asyncio.run(_points_check(db_url))


def cmd_redis(settings: Settings, jobs: bool, drain_timeout: float) -> int:
    """rebuild: give back every Redis-held state PostgreSQL can (``app.ops.rebuild``): drain the
    verification queue, restore query counters, wrong-PIN counts and lockouts, re-send the jobs
    of unfinished exports and EPCIS captures."""
    import dramatiq
    import psycopg
    import redis

    from app.db import migrate
    from app.errors import AppError
    from app.ops.rebuild import rebuild
    from app.redisconn import connect_sync

    if not drain_timeout >= 0:
        return _fail("--drain-timeout must be a number of seconds, 0 or more")
    try:
        db_url, redis_url = _urls(settings)
        migrate(db_url)
        client = connect_sync(redis_url, socket_timeout=30, socket_connect_timeout=5)
        send = None
        if jobs:
            from app import jobs as job_queue

            send = job_queue.send
        with client, psycopg.connect(db_url, autocommit=True) as conn:
            report = rebuild(client, conn, settings, send, drain_timeout)
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        return _fail(f"Redis unavailable: {exc}")
    except psycopg.Error as exc:
        return _fail(f"PostgreSQL unavailable: {exc}")
    except dramatiq.errors.DramatiqError as exc:  # RabbitMQ (TRACECODE_BROKER_URL) unreachable
        return _fail(f"job broker unavailable: {exc}")
    except AppError as exc:
        return _fail(str(exc))
    print("\n".join(report.lines()))
    return 0


def cmd_chain(settings: Settings, args: argparse.Namespace) -> int:
    """The event chain (app/chain/cli.py); ``verify`` needs no database. Every other action
    runs only under the database's master key (``app.codes.keycheck``: ``SettingsError``, one
    line from ``main``): an anchor is signed by a key derived from it, one per position, and a
    probe's ``chain anchor`` under another key stored for good an anchor no verifier of the
    published public key accepts."""
    from app.chain.cli import run

    if args.action == "verify":
        return run(settings, args, "")
    from app.codes import keycheck
    from app.db import migrate

    db_url, _ = _urls(settings)
    migrate(db_url)
    keycheck.check(db_url, settings)
    return run(settings, args, db_url)


def cmd_openapi(settings: Settings, out: str | None) -> int:
    """Print (or write to ``out``) the app's OpenAPI document as JSON, as ``/schema/openapi.json``
    serves it: the console's typed client is generated from it (``npm run gen-api``). Needs no
    database; without a configured master key a throwaway one builds the app (the document
    does not depend on it)."""
    import msgspec
    from litestar.serialization import encode_json

    from app.main import create_app

    if not (settings.master_key or settings.master_key_file):
        settings = msgspec.structs.replace(settings, master_key=secrets.token_hex(32))
    schema = msgspec.json.decode(encode_json(create_app(settings).openapi_schema.to_schema()))
    document = msgspec.json.encode(schema, order="sorted") + b"\n"  # the same bytes every run
    if out:
        Path(out).write_bytes(document)
    else:
        sys.stdout.buffer.write(document)
    return 0


def cmd_services(settings: Settings, action: str) -> int:
    var = settings.var_path
    if action == "up":
        db_url, redis_url = _urls(settings)
        # passwords as ***, as everywhere settings are shown (the embedded servers have none)
        print(
            f"{PREFIX}DATABASE_URL={redact_url(db_url)}\n{PREFIX}REDIS_URL={redact_url(redis_url)}"
        )
    elif action == "down":
        embedded.stop(var)
        print("embedded services stopped")
    return 0


# Supervision of `tracecode run`'s children (issue 13, item 19): a child that exits is started
# again after a back-off that doubles with each consecutive fast crash (one that lived less than
# FAST_CRASH_SECONDS); after MAX_FAST_CRASHES of them in a row `tracecode run` gives up and stops.
FAST_CRASH_SECONDS = 10.0
MAX_FAST_CRASHES = 5
MAX_BACKOFF_SECONDS = 30.0


class _Child:
    """One supervised command, in a process group of its own (so leftovers of a dead child, such
    as a dramatiq worker process whose main process was killed, can be cleaned up)."""

    def __init__(self, name: str, command: list[str], batch: bool = False) -> None:
        self.name, self.command, self.batch = name, command, batch
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.fast_crashes = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        supervisor, batch = os.getpid(), self.batch

        def prepare() -> None:
            _die_with(supervisor)
            if batch:
                batch_scheduling()

        self.process = subprocess.Popen(self.command, process_group=0, preexec_fn=prepare)
        self.started, self.restart_at = time.monotonic(), None

    def exited(self) -> int | None:
        """The exit code once the child has exited (its group's leftovers killed), else None."""
        if self.process is None or self.restart_at is not None:
            return None
        code = self.process.poll()
        if code is not None:
            self._kill_group()
        return code

    def schedule_restart(self, code: int) -> bool:
        """Log the exit and plan the restart; False when it crashed fast too often."""
        lived = time.monotonic() - self.started
        self.fast_crashes = self.fast_crashes + 1 if lived < FAST_CRASH_SECONDS else 0
        if self.fast_crashes >= MAX_FAST_CRASHES:
            _log(f"the {self.name} exited {MAX_FAST_CRASHES} times within seconds; giving up")
            return False
        delay = min(MAX_BACKOFF_SECONDS, 2.0**self.fast_crashes)
        _log(
            f"the {self.name} (pid {self.process.pid if self.process else '?'}) exited with code "
            f"{code} after {lived:.1f} s; restarting it in {delay:.0f} s"
        )
        self.restart_at = time.monotonic() + delay
        return True

    def interrupt(self) -> None:
        """Ask the child to stop (once: a second SIGINT makes dramatiq kill its workers)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def wait(self) -> None:
        """Wait for the interrupted child (killed after 15 s), then clear its group."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._kill_group()

    def _kill_group(self) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # nothing left in the group
            pass


def _log(message: str) -> None:
    print(f"tracecode: {message}", file=sys.stderr, flush=True)


def _claim_var_dir(var: Path) -> Any:
    """An exclusive lock on ``var/run.lock`` for this `tracecode run`; None when another one
    holds it. The lock goes with the process, however it ends."""
    import fcntl

    var.mkdir(parents=True, exist_ok=True)
    handle = open(var / "run.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise SettingsError(
            f"another `tracecode run` (pid {holder}) uses {var}; stop it first, "
            f"or give this one another {PREFIX}VAR_DIR and {PREFIX}PORT"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _check_port(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SettingsError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another server running "
                f"there? Set {PREFIX}PORT to use another port"
            ) from None


def cmd_run(
    settings: Settings,
    demo: bool,
    worker: bool,
    api_workers: int | None = None,
    worker_processes: int = 1,
) -> int:
    """Everything a newcomer needs: services, migrations, demo data, API and workers, with
    the API and each worker process supervised (restarted when they die). ``api_workers``
    granian processes (default ``TRACECODE_HTTP_WORKERS``), ``worker_processes`` dramatiq
    worker processes."""
    from app.codes import keycheck
    from app.db import migrate
    from app.demo import describe

    if api_workers is not None and not 1 <= api_workers <= 64:
        return _fail("--api-workers must be from 1 to 64")
    if not 1 <= worker_processes <= 64:
        return _fail("--worker-processes must be from 1 to 64")
    try:
        lock = _claim_var_dir(settings.var_path)  # noqa: F841 (held until the process ends)
        _check_port(settings.host, settings.port)
    except SettingsError as exc:
        return _fail(str(exc))
    settings = ensure_dev_master_key(settings)
    try:
        settings.check_serving()  # before any child starts: a bad key is one message, not a loop
    except SettingsError as exc:
        return _fail(f"configuration error: {exc}")
    embedded_services = not (settings.database_url and settings.redis_url)
    # Embedded servers that were already running (`tracecode services up`, or a run that was
    # killed) are left running at the end; the ones this run starts are stopped.
    stop_services = embedded_services and not embedded.running(settings.var_path)
    db_url, redis_url = _urls(settings)
    os.environ[PREFIX + "DATABASE_URL"] = db_url
    os.environ[PREFIX + "REDIS_URL"] = redis_url
    if settings.broker_url:  # the workers take their jobs from RabbitMQ, the API sends them there
        os.environ[PREFIX + "BROKER_URL"] = settings.broker_url
    migrate(db_url)
    try:  # another master key than the database's: one message, no child started
        keycheck.check(db_url, settings)
    except SettingsError as exc:
        if stop_services:
            embedded.stop(settings.var_path)
        return _fail(f"configuration error: {exc}")
    samples: list[Any] = []
    if demo:
        from app.demo import demo_samples

        async def work(conn: Any, principal: Any, scheme: Any) -> list[Any]:
            return await demo_samples(conn, scheme, settings)

        asyncio.run(_load_demo(db_url))
        samples = asyncio.run(_direct(settings, "operator", work))
    children = [
        _Child(
            "API server",
            [
                *server_command(settings.host, settings.port, api_workers or settings.http_workers),
                # granian replaces a worker process that dies; this loop replaces granian
                "--respawn-failed-workers",
                "--respawn-interval",
                "1",
            ],
            batch=settings.sched_batch,
        )
    ]
    if worker:  # one supervised child per dramatiq worker process, restarted on its own
        children.extend(
            _Child("worker" if worker_processes == 1 else f"worker {n}", worker_command())
            for n in range(1, worker_processes + 1)
        )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        for child in children:
            child.start()
        base = f"http://{settings.host}:{settings.port}"
        print(
            f"\nTracecode is starting.\n  API:      {base}\n  OpenAPI:  {base}/schema "
            f"(JSON: {base}/schema/openapi.json)\n  Health:   {base}/health\n"
            f"  Console:  {base}/console/\n"
            f"  Database: {redact_url(db_url)}\n  Redis:    {redact_url(redis_url)}\n"
            f"  Jobs:     {redact_url(settings.broker_url) or 'on the Redis above'}\n"
        )
        if demo:
            from app.demo import describe_codes

            print(describe())
            print("\nDemo units (open the URL, enter the PIN; more: tracecode demo codes):")
            print(describe_codes(samples))
            served = f"{settings.host}:{settings.port}"
            if settings.resolver_host != served:  # printed codes carry the resolver host
                print(
                    f"  (their URLs name {PREFIX}RESOLVER_HOST={settings.resolver_host}; "
                    f"this server listens on {served})"
                )
        print("\nPress Ctrl-C to stop.\n", flush=True)
        while not stopping:
            now = time.monotonic()
            for child in children:
                if child.restart_at is not None and now >= child.restart_at:
                    child.start()
                    _log(f"the {child.name} restarted (pid {child.process.pid})")  # type: ignore[union-attr]
                exit_code = child.exited()
                if exit_code is not None and not stopping and not child.schedule_restart(exit_code):
                    stopping, code = True, 1
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        for child in children:
            child.interrupt()
        for child in children:
            child.wait()
        if stop_services:
            embedded.stop(settings.var_path)
        elif embedded_services:
            print("The embedded servers keep running (`tracecode services down` stops them).")
        print("Tracecode stopped.")
    return code


def _secret(path: str | None, env: str | None) -> str | None:
    """A passphrase from a file or an environment variable, never from the command line. The
    file is read as UTF-8 without a byte-order mark: PowerShell's ``Out-File -Encoding utf8``
    and Notepad write one, and the right passphrase was tried with it (a probe: "wrong
    passphrase" for the printer holding the right one)."""
    if path:
        try:
            return Path(path).read_text(encoding="utf-8-sig").strip()
        except UnicodeDecodeError:  # a probe: a traceback for a binary file
            raise SettingsError(f"{path}: not a text file (a passphrase in UTF-8)") from None
    if env:
        value = os.environ.get(env)
        if not value:
            raise SettingsError(f"the environment variable {env} is empty")
        return value
    return None


def cmd_decrypt(args: argparse.Namespace) -> int:
    """Decrypt a printer file. The plain text (serials, PINs) appears only once the whole file
    has authenticated: it is written to a new file beside ``--out`` (mode 0600) and renamed onto
    it at the end, or copied to stdout at the end; a damaged file or a wrong key writes nothing,
    and an existing file is never touched by a failure."""
    import shutil
    import tempfile

    from app.codes.printfile import PrintFileError, decrypt

    passphrase = _secret(args.passphrase_file, args.passphrase_env)
    try:
        key = Path(args.key).read_text() if args.key else None
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"{args.key}: not a PEM key file ({exc})")
    if (passphrase is None) == (key is None):
        return _fail("give one of --passphrase-file, --passphrase-env or --key")
    source = Path(args.file)
    target = Path(args.out) if args.out else None
    if target is not None and target.exists() and source.exists() and target.samefile(source):
        return _fail("--out is the encrypted file itself: name another file")
    # --out a symlink: its file is replaced, the link kept; a device or a pipe (/dev/null, say):
    # written into, never replaced by a file (a probe's --out /dev/null, run as root, left the
    # machine's /dev/null a regular file, and every program writing to it failed)
    real = target.resolve() if target is not None else None
    special = real is not None and real.exists() and not real.is_file() and not real.is_dir()
    folder = real.parent if real is not None and not special else None
    try:
        with (
            open(source, "rb") as src,
            tempfile.NamedTemporaryFile(
                dir=folder, prefix=".tracecode-", suffix=".part", delete=False
            ) as plain,
        ):  # mode 0600 (mkstemp)
            try:
                for chunk in decrypt(src, passphrase=passphrase, private_key_pem=key):
                    plain.write(chunk)
            except BaseException:
                Path(plain.name).unlink(missing_ok=True)
                raise
    except PrintFileError as exc:
        return _fail(f"cannot decrypt {args.file}: {exc}")
    except OSError as exc:
        return _fail(f"{exc.filename or args.file}: {exc.strerror}")
    if real is not None and not special:
        try:
            os.replace(plain.name, real)
        except OSError as exc:  # a probe: --out a folder left the whole plain text beside it
            Path(plain.name).unlink(missing_ok=True)
            return _fail(f"{args.out}: {exc.strerror}")
        return 0
    try:
        with open(plain.name, "rb") as done:
            if real is None:
                shutil.copyfileobj(done, sys.stdout.buffer)
            else:
                with open(real, "wb") as device:
                    shutil.copyfileobj(done, device)
    except OSError as exc:
        return _fail(f"{args.out}: {exc.strerror}")
    finally:
        Path(plain.name).unlink(missing_ok=True)
    return 0


class _Api:
    """The CLI's client of the HTTP API (for planners working through a running server)."""

    def __init__(self, base: str, user: str, password: str) -> None:
        import httpx

        self.base = base.rstrip("/")
        try:
            self.http = httpx.Client(base_url=self.base, timeout=60)
            response = self.http.post("/auth/login", json={"username": user, "password": password})
        except (httpx.InvalidURL, ValueError) as exc:  # a bracket left open, a port no number
            # one line, not a traceback (a probe); the URL's password left out
            raise SettingsError(
                f"--api {redact_url(self.base)} is not a valid URL: {redact_url(str(exc))}"
            ) from None
        self._check(response)
        answer = self._json(response)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise self._not_the_api(response, "without an access token")
        self.http.headers["Authorization"] = f"Bearer {token}"

    def _not_the_api(self, response: Any, what: str) -> SettingsError:
        """A server that answers, but not as the API does (a mistyped port, a proxy's page: a
        probe, a JSONDecodeError traceback)."""
        asked = f"{response.request.method} {response.request.url.path}"
        return SettingsError(
            f"{redact_url(self.base)} is not the Tracecode API: {asked} answered "
            f"{response.status_code} {what}"
        )

    def _json(self, response: Any) -> object:
        try:
            return response.json()
        except ValueError:  # not JSON, or not UTF-8 text
            kind = response.headers.get("content-type") or "no content type"
            raise self._not_the_api(response, f"with {kind}, not JSON") from None

    def _check(self, response: Any) -> None:
        status = response.status_code
        if status >= 400:
            response.read()  # a download's streamed answer too
            try:
                error = response.json()["error"]
                message = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):  # a proxy's error page, say
                kind = response.headers.get("content-type") or "no content type"
                raise self._not_the_api(response, f"with {kind}") from None
            raise SettingsError(f"the API answered {status}: {message}")

    def call(self, method: str, path: str, **kwargs: object) -> object:
        response = self.http.request(method, path, **kwargs)  # type: ignore[arg-type]
        self._check(response)
        return self._json(response) if response.content else None

    def items(self, path: str) -> list[dict[str, object]]:
        """Every item of a paged list (``{items, page, per_page, total}``), page by page."""
        found: list[dict[str, object]] = []
        page = 1
        while True:
            answer = self.call("GET", path, params={"page": page, "per_page": 200})
            assert isinstance(answer, dict)
            found.extend(answer["items"])
            if not answer["items"] or len(found) >= answer["total"]:
                return found
            page += 1

    def download(self, path: str, target: Path) -> None:
        with self.http.stream("GET", path) as response:
            self._check(response)
            with open(target, "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)


def _api(args: argparse.Namespace) -> _Api:
    password = _secret(args.password_file, args.password_env or "TRACECODE_API_PASSWORD")
    if not args.user or not password:
        raise SettingsError("--api needs --user and a password (--password-file, --password-env)")
    return _Api(args.api, args.user, password)


_T = TypeVar("_T")


async def _direct(
    settings: Settings, username: str, work: Callable[[Any, Any, Any], Awaitable[_T]]
) -> _T:
    """Run ``work(conn, principal, scheme)`` as a user, straight on the database, once the
    master key is known to be the database's (``app.codes.keycheck``: ``SettingsError``)."""
    import psycopg
    from psycopg.rows import dict_row

    from app.auth.service import load_user
    from app.codes import keycheck
    from app.codes.scheme import scheme_from_settings

    db_url, _ = _urls(settings)
    scheme = scheme_from_settings(settings)
    await asyncio.to_thread(keycheck.check, db_url, settings)
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = %s", (username,))
        ).fetchone()
        if row is None:
            raise SettingsError(f"no user {username}")
        principal = await load_user(conn, row["id"])
        result = await work(conn, principal, scheme)
        await conn.commit()
        return result


def _org_id(settings: Settings, erp_code: str, username: str) -> int:
    import psycopg

    db_url, _ = _urls(settings)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(  # ERP codes are per brand: the acting user's
            """SELECT o.id FROM orgs o
               JOIN orgs home ON split_part(home.path, '/', 2) = split_part(o.path, '/', 2)
               JOIN users u ON u.org_id = home.id
               WHERE o.erp_code = %s AND lower(u.username) = lower(%s)""",
            (erp_code, username),
        ).fetchone()
    if row is None:
        raise SettingsError(f"no organisation with ERP code {erp_code} in {username}'s brand")
    return int(row[0])


def cmd_codes(settings: Settings, args: argparse.Namespace) -> int:
    """Batches for planners: issue, list, show, void, export — directly or through the API.
    Directly, pending migrations are applied first, as every command that opens the database
    does (a probe: ``codes list`` read an unmigrated schema, ``relation "users" does not
    exist``)."""
    import msgspec

    from app.codes import exports, service
    from app.codes.schemas import BatchIn, VoidIn
    from app.db import migrate

    if not args.api:
        migrate(_urls(settings)[0])
    if args.action == "export":  # its arguments were checked as read (``_bad_argument``)
        return _export(settings, args)  # an AppError: one line from ``main``, as below
    result: Any
    try:
        if args.api:
            api = _api(args)
            if args.action == "issue":
                printers = api.items("/printers")
                match = [p for p in printers if p["erp_code"] == args.printer]
                if not match:
                    return _fail(f"no printer {args.printer}")
                body = {
                    "size": args.size,
                    "note": args.note or "",
                    "request_key": args.request_key,
                    "printer_id": match[0]["id"],
                }
                result = api.call("POST", "/batches", json=body)
            elif args.action == "list":
                result = api.call("GET", "/batches", params={"per_page": args.limit})
            elif args.action == "show":
                result = api.call("GET", f"/batches/{args.batch}")
            else:
                result = api.call(
                    "POST", f"/batches/{args.batch}/void", json={"reason": args.reason}
                )
        else:
            printer_id = (
                _org_id(settings, args.printer, args.as_user) if args.action == "issue" else 0
            )

            async def work(conn: Any, principal: Any, scheme: Any) -> Any:
                if args.action == "issue":
                    data = msgspec.convert(
                        {
                            "size": args.size,
                            "note": args.note or "",
                            "printer_id": printer_id,
                            "request_key": args.request_key,
                        },
                        BatchIn,
                    )
                    return (await service.create_batch(conn, principal, settings, data))[0]
                if args.action == "list":
                    page = await service.list_batches(
                        conn,
                        principal,
                        state=None,
                        printer_id=None,
                        product_id=None,
                        page=1,
                        per_page=args.limit,
                    )
                    return page
                if args.action == "show":
                    batch = await service.get_batch(conn, principal, args.batch)
                    # as GET /batches/{no}: a printer its own files only (a probe: refused)
                    found = await exports.list_exports(conn, principal, args.batch)
                    return {**msgspec.to_builtins(batch), "exports": msgspec.to_builtins(found)}
                reason = msgspec.convert({"reason": args.reason}, VoidIn).reason  # as the API
                return await service.void_batch(conn, principal, args.batch, reason)

            result = msgspec.to_builtins(asyncio.run(_direct(settings, args.as_user, work)))
    except msgspec.ValidationError as exc:  # as the API answers it
        return _fail(f"validation_failed: {exc}")
    print(msgspec.json.encode(result).decode())
    return 0


def _put_files(folder: Path, writers: dict[str, Any]) -> None:
    """Write each file by ``writers[name](temporary path)`` under a temporary name in
    ``folder``, then rename them all onto their names: a file already there is replaced, never
    written into — it may be another export's, or a link to the server's stored file (a probe:
    a second export into the same folder wrote batch B2's codes through the first export's
    hard link into the server's file of export 1) — and a failure leaves the folder's files as
    they were."""
    import tempfile

    staged: list[tuple[str, str]] = []
    try:
        for name, write in writers.items():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
            os.close(fd)
            staged.append((tmp, name))
            write(Path(tmp))
        for tmp, name in staged:
            os.replace(tmp, folder / name)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def _export(settings: Settings, args: argparse.Namespace) -> int:
    import shutil
    from functools import partial

    import msgspec

    from app.codes.schemas import ExportIn, ExportOut
    from app.progress import Progress

    outer = _secret(args.passphrase_file, args.passphrase_env)
    inner = _secret(args.inner_passphrase_file, None) or outer
    body = {
        "start": args.start,
        "end": args.end,
        "outer": {"passphrase": outer},
        "inner": {"passphrase": inner},
    }
    target = Path(args.out)  # made once there are files (a probe: a refusal left it empty)
    if target.exists() and not target.is_dir():  # a probe: found after the downloads were audited
        return _fail(f"--out {target}: not a folder (the files are put in a folder)")
    if args.api:
        api = _api(args)
        made = api.call("POST", f"/batches/{args.batch}/exports", json=body)
        bar = Progress(made["total"], "export")  # type: ignore[index]
        while made["state"] in ("queued", "running"):  # type: ignore[index]
            bar.update(made["progress"])  # type: ignore[index]
            time.sleep(0.5)
            made = api.call("GET", f"/exports/{made['id']}")  # type: ignore[index]
        bar.finish(made["progress"])  # type: ignore[index]
        if made["state"] != "done":  # type: ignore[index]
            return _fail(f"export {made['id']} {made['state']}: {made['error']}")  # type: ignore[index]
        target.mkdir(parents=True, exist_ok=True)
        _put_files(
            target,
            {
                f"{part}.tcpf": partial(api.download, f"/exports/{made['id']}/files/{part}")  # type: ignore[index]
                for part in made["parts"]  # type: ignore[index]
            },
        )
        export_id = made["id"]  # type: ignore[index]
    else:
        from app.codes.exports import (
            create_unit_export,
            file_for_download,
            get_export,
            run_export,
        )

        data = msgspec.convert(body, ExportIn)

        async def work(conn: Any, principal: Any, scheme: Any) -> tuple[ExportOut, Any]:
            made = await create_unit_export(conn, principal, settings, scheme, args.batch, data)
            return made, scheme

        created, scheme = asyncio.run(_direct(settings, args.as_user, work))
        db_url, _ = _urls(settings)
        bar = Progress(created.total, "export")
        written = [0]  # the codes written: a run that stops (its batch voided) ends the bar there

        def progress(done: int, total: int) -> None:
            written[0] = done
            bar.update(done, total)

        state = run_export(db_url, settings, scheme, created.id, on_progress=progress)
        if state != "done":  # a probe: the bar showed 100% and the error "not done"
            bar.finish(written[0])

            async def stopped(conn: Any, principal: Any, _: Any) -> Any:
                return await get_export(conn, principal, str(created.id))

            export = asyncio.run(_direct(settings, args.as_user, stopped))
            return _fail(f"export {created.id} {export.state}: {export.error}")
        bar.finish()

        async def files(conn: Any, principal: Any, _: Any) -> list[tuple[str, Path]]:
            # checked and audited as the API's downloads are (a probe: no download rows)
            return [
                (part, await file_for_download(conn, principal, settings, str(created.id), part))
                for part in created.parts
            ]

        ready = asyncio.run(_direct(settings, args.as_user, files))
        target.mkdir(parents=True, exist_ok=True)
        # copies, never hard links to the server's stored files: anything later written into
        # the folder's file would change the stored export every printer downloads
        _put_files(
            target,
            {f"{part}.tcpf": partial(shutil.copyfile, source) for part, source in ready},
        )
        export_id = created.id
    print(f"export {export_id}: files in {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracecode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start services, migrate, load demo data, run API + worker")
    run.add_argument("--no-demo", action="store_true", help="do not load demo data")
    run.add_argument("--no-worker", action="store_true", help="do not start a dramatiq worker")
    run.add_argument(
        "--api-workers", type=int, help="API (granian) worker processes (TRACECODE_HTTP_WORKERS)"
    )
    run.add_argument(
        "--worker-processes", type=int, default=1, help="dramatiq worker processes (default 1)"
    )
    rehearse = sub.add_parser(
        "rehearse", help="the many-hosts layout on this machine under the locust scenario"
    )
    rehearse.add_argument("--seconds", type=int, default=20, help="load time (default 20)")
    rehearse.add_argument("--users", type=int, default=10, help="locust users per API process")
    rehearse.add_argument("--api-processes", type=int, default=2, help="API processes (2)")
    rehearse.add_argument("--codes", type=int, default=400, help="activated demo codes (400)")
    services = sub.add_parser("services", help="embedded PostgreSQL and Redis under var/")
    services.add_argument("action", choices=["up", "down"])
    db = sub.add_parser("db", help="database")
    db.add_argument(
        "action",
        choices=["migrate", "status", "after-restore"],
        help="status: applied, pending and unknown migrations (exit 1 when any differ)",
    )
    for name, (_, margin) in RESTORE_SEQUENCES.items():
        db.add_argument(
            f"--{name}",
            type=_margin,
            default=margin,
            help=f"after-restore: {name} skipped ({margin})",
        )
    db.add_argument(
        "--ssccs",
        type=_margin,
        default=RESTORE_SSCCS,
        help="after-restore: SSCC serial references each GS1 company prefix skips, at most half "
        f"of the room it has left ({RESTORE_SSCCS})",
    )
    db.add_argument(
        "--allocations",
        type=_margin,
        default=RESTORE_ALLOCATIONS,
        help="after-restore: codes each batch not exported skips before its next allocation "
        "(and at least past the codes of its lost printer files), at most its size "
        f"({RESTORE_ALLOCATIONS})",
    )
    db.add_argument(
        "--ids",
        type=_margin,
        default=RESTORE_IDS_MARGIN,
        help="after-restore: ids skipped by each table whose ids the API or webhooks hand out "
        f"(orders, documents, claims, statements, users, …) ({RESTORE_IDS_MARGIN})",
    )
    brand = sub.add_parser("brand", help="brands (tenants)")
    brand_sub = brand.add_subparsers(dest="action", required=True)
    brand_create = brand_sub.add_parser(
        "create",
        help="a brand and its first administrator (the password from the terminal or stdin)",
    )
    brand_create.add_argument("--name", required=True, help="the brand's name")
    brand_create.add_argument("--erp-code", required=True, help="the brand's ERP code")
    brand_create.add_argument("--admin", required=True, help="the administrator's username")
    brand_create.add_argument(
        "--gs1-company-prefix", help="the brand's GS1 company prefix (its case codes carry it)"
    )
    brand_create.add_argument(
        "--platform-operator",
        action="store_true",
        help="the administrator operates the platform too (creates further brands)",
    )
    demo = sub.add_parser("demo", help="demo data")
    demo.add_argument(
        "action",
        choices=["load", "codes"],
        help="load: the demo data; codes: print serial,pin,url,story of activated demo units "
        "(story: shipped:STORE-HZ-01 or never_shipped)",
    )
    demo.add_argument("--count", type=int, default=20, help="codes: how many (default 20)")
    demo.add_argument("--out", help="codes: write the CSV to this file instead of stdout")
    sub.add_parser("keygen", help="print a new random 32-byte master key (hex)")
    openapi = sub.add_parser("openapi", help="print the API's OpenAPI document (JSON)")
    openapi.add_argument("--out", help="write it to this file instead of standard output")
    stock = sub.add_parser("stock", help="stock roll-up and recount (SPEC L9)")
    stock.add_argument(
        "action",
        choices=["rollup", "check"],
        help="rollup: fold pending deltas now; check: roll up, recount, exit 1 on a mismatch",
    )

    points = sub.add_parser("points", help="members' points ledger (SPEC M2)")
    points.add_argument(
        "action",
        choices=["check"],
        help="check: recompute balances from the ledger, exit 1 on a mismatch",
    )

    rebates = sub.add_parser("rebates", help="rebate ranking roll-up and recount (SPEC R3)")
    rebates.add_argument(
        "action",
        choices=["rollup", "recount"],
        help="rollup: fold queued claims now; recount: roll up, recount, exit 1 on a mismatch",
    )

    forensics = sub.add_parser("forensics", help="leak and fraud-ring detection (SPEC B5)")
    forensics.add_argument(
        "action",
        choices=["leaks", "rings"],
        help="leaks: attribute suspicious verifications to print files and code packs, alert; "
        "rings: put the parties of reward-fraud rings on hold",
    )

    analytics = sub.add_parser("analytics", help="analytics roll-ups and recounts (SPEC A1-A7)")
    analytics.add_argument(
        "action",
        choices=["rollup", "recount"],
        help="rollup: fold queued facts now; recount: roll up, recount, exit 1 on a mismatch",
    )

    from app.chain.cli import add_parser as add_chain_parser

    add_chain_parser(sub)

    redis_cmd = sub.add_parser("redis", help="Redis-held state (counters, lockouts, job queues)")
    redis_cmd.add_argument(
        "action",
        choices=["rebuild"],
        help="rebuild: drain the verification queue, restore counters and lockouts from "
        "PostgreSQL, re-send unfinished exports and EPCIS captures",
    )
    redis_cmd.add_argument("--no-jobs", action="store_true", help="leave the job queues alone")
    redis_cmd.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the verification records queued now to be written (by "
        "this or a running worker's flusher) before the rebuild (default 120)",
    )

    def auth_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--as",
            dest="as_user",
            default="planner",
            help="direct mode: act as this user on the database (default: planner)",
        )
        p.add_argument("--api", help="API mode: base URL of a running server")
        p.add_argument("--user", help="API mode: username")
        p.add_argument("--password-file", help="API mode: file holding the password")
        p.add_argument(
            "--password-env",
            help="API mode: variable holding the password (default TRACECODE_API_PASSWORD)",
        )

    codes = sub.add_parser("codes", help="issue and export code batches (planners)")
    codes_sub = codes.add_subparsers(dest="action", required=True)
    issue = codes_sub.add_parser("issue", help="issue a batch of unit codes")
    issue.add_argument("--size", type=int, required=True)
    issue.add_argument("--printer", required=True, help="ERP code of the printer organisation")
    issue.add_argument("--note")
    issue.add_argument("--request-key", help="idempotency key: a retry returns the same batch")
    auth_options(issue)
    export = codes_sub.add_parser("export", help="write the encrypted printer files of a batch")
    export.add_argument("batch", type=int)
    export.add_argument("--out", required=True, help="directory for outer.tcpf and inner.tcpf")
    export.add_argument("--start", type=int)
    export.add_argument("--end", type=int)
    export.add_argument("--passphrase-file", help="file holding the passphrase")
    export.add_argument("--passphrase-env", help="variable holding the passphrase")
    export.add_argument("--inner-passphrase-file", help="a different passphrase for the PIN file")
    auth_options(export)
    listing = codes_sub.add_parser("list", help="the newest batches of your brand")
    listing.add_argument("--limit", type=_per_page, default=50, help="1 to 200 (50)")
    auth_options(listing)
    show = codes_sub.add_parser("show", help="one batch with its exports")
    show.add_argument("batch", type=int)
    auth_options(show)
    void = codes_sub.add_parser("void", help="void a batch: its codes verify as void")
    void.add_argument("batch", type=int)
    void.add_argument("--reason", required=True)
    auth_options(void)

    exp = sub.add_parser("export", help="printer files")
    exp_sub = exp.add_subparsers(dest="action", required=True)
    dec = exp_sub.add_parser("decrypt", help="decrypt a printer file to CSV")
    dec.add_argument("file")
    dec.add_argument("--out", help="plain CSV file (default: standard output)")
    dec.add_argument("--passphrase-file")
    dec.add_argument("--passphrase-env")
    dec.add_argument("--key", help="the printer's RSA private key (PEM file)")
    args = parser.parse_args(argv)
    refused = _bad_argument(args)
    if refused is not None:
        return _fail(refused)

    if args.command == "keygen":
        print(secrets.token_hex(32))
        return 0
    try:
        if args.command == "export":
            return cmd_decrypt(args)
        settings = load_settings()
        for name in unknown_variables() if args.command != "run" else ():  # the API logs them
            print(f"warning: {name} is not a setting of Tracecode: ignored", file=sys.stderr)
        if args.command == "openapi":
            return cmd_openapi(settings, args.out)
        if args.command == "run":
            return cmd_run(
                settings,
                demo=not args.no_demo,
                worker=not args.no_worker,
                api_workers=args.api_workers,
                worker_processes=args.worker_processes,
            )
        if args.command == "rehearse":
            from app.ops.rehearsal import cmd_rehearse

            return cmd_rehearse(args.seconds, args.users, args.api_processes, args.codes)
        if args.command == "services":
            return cmd_services(settings, args.action)
        if args.command == "db" and args.action == "after-restore":
            margins = {n: getattr(args, n) for n in [*RESTORE_SEQUENCES, "ssccs", "ids"]}
            return cmd_after_restore(settings, margins, args.allocations)
        if args.command == "db" and args.action == "status":
            return cmd_db_status(settings)
        if args.command == "db":
            return cmd_migrate(settings)
        if args.command == "brand":
            return cmd_brand_create(settings, args)
        if args.command == "demo" and args.action == "codes":
            return cmd_demo_codes(settings, args.count, args.out)
        if args.command == "demo":
            return cmd_demo(settings)
        if args.command == "codes":
            if not args.api:  # direct mode: the development key of `tracecode run`, if any
                settings = ensure_dev_master_key(settings, create=False)
            return cmd_codes(settings, args)
        if args.command == "stock":
            return cmd_stock(settings, args.action)
        if args.command == "points":
            return cmd_points(settings)
        if args.command == "rebates":
            return cmd_rebates(settings, args.action)
        if args.command == "forensics":
            return cmd_forensics(settings, args.action)
        if args.command == "analytics":
            return cmd_analytics(settings, args.action)
        if args.command == "redis":
            return cmd_redis(settings, not args.no_jobs, args.drain_timeout)
        if args.command == "chain":  # the development key of `tracecode run`, as `codes`
            return cmd_chain(ensure_dev_master_key(settings, create=False), args)
    except SettingsError as exc:
        return _fail(f"configuration error: {exc}")
    except embedded.ServiceError as exc:  # an embedded server that did not start: its log
        return _fail(str(exc))
    except Exception as exc:
        import httpx
        import msgspec
        import psycopg

        from app.db import MigrationError
        from app.errors import AppError

        # an applied migration edited since, by any command that migrates first: its name (a
        # probe: a traceback)
        if isinstance(exc, MigrationError):
            return _fail(str(exc))
        # a refusal of the domain's (an unknown brand, positions not within a chain: a probe,
        # BadRequest's traceback from `chain export`): its code and words, as the API's
        if isinstance(exc, AppError):
            return _fail(f"{exc.code}: {exc.message}")
        # a value the API's schema refuses: the API's code (a probe: the type's name)
        if isinstance(exc, msgspec.ValidationError):
            return _fail(f"validation_failed: {exc}")
        # a server or a file that is not there: one line
        if isinstance(exc, (OSError, psycopg.Error, httpx.HTTPError)):
            # libpq's words may quote a connection string whole, its password too
            return _fail(f"{type(exc).__name__}: {redact_url(str(exc))}")
        raise
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
