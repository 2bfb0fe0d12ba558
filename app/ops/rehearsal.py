"""``tracecode rehearse``: the many-hosts layout (README "Deployment: many hosts") on one machine.

Starts, on 127.0.0.1 only, several API processes (granian with one worker each,
``app.cli.server_command``) on free ports and one dramatiq worker process (the verification
flusher), all on the same PostgreSQL and Redis: the ``TRACECODE_DATABASE_URL`` /
``TRACECODE_REDIS_URL`` servers when set (a Redis Cluster URL and ``TRACECODE_BROKER_URL`` and
``TRACECODE_DATABASE_REPLICA_URL`` are passed on as they are), otherwise embedded ones under
``var/loadtest`` (``loadtests/stack.py``, whose ``Stack`` this reuses). It then runs the locust
scenario (``loadtests/locustfile.py``) against every API process at once for a bounded time,
one locust process per API with a disjoint share of the codes, and checks that the counts add
up: the requests each API counted in its own ``/metrics`` (POST /v1/verify, status 200) add up
to what locust saw answered 200, and once the write-behind queue is flushed the
``verifications`` table grew by exactly that many rows. A load balancer is not started: each
load generator targets one API, as a balancer spreading evenly would.

The demo data the rehearsal loads (users with the public demo password, demo orgs, a demo batch)
never goes into the database ``TRACECODE_DATABASE_URL`` names, which may be production's: every
process of the run uses a database of the rehearsal's own on that server, made at the start and
dropped at the end (``Stack(own_database=True)``). Every process it starts, the locust load
generators too, runs in a process group of its own and is stopped when it returns, on Ctrl-C or
SIGINT as well; a failure to start is one ``tracecode: ...`` line.

Not rehearsed here: a Redis Cluster, RabbitMQ and a streaming replica are not started by this
command (their own tests start them: tests/test_redis_cluster.py, tests/test_broker_rabbitmq.py,
tests/test_replica.py); point the variables above at running ones to include them.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec

VERIFY_200 = re.compile(
    r'^tracecode_http_requests_total\{(?=[^}]*method="POST")(?=[^}]*route="/v1/verify")'
    r'(?=[^}]*status="200")[^}]*\}\s+([0-9.e+]+)$',
    re.MULTILINE,
)
NON_200 = re.compile(r": HTTP (\d+):")
LOCUST_FILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"


class ApiCount(msgspec.Struct, frozen=True):
    url: str
    verify_200: int  # POST /v1/verify answered 200, from the process's own /metrics


class RehearsalReport(msgspec.Struct, frozen=True):
    apis: list[ApiCount]
    requests: int  # locust: requests sent
    answered_200: int  # locust: requests answered 200 (whatever the result)
    failures: int  # locust failures (non-200, or a result wrong for its kind of code)
    rows: int  # verifications rows added during the run, after the flush
    database: str  # the run's own database on the server of TRACECODE_DATABASE_URL, dropped

    @property
    def adds_up(self) -> bool:
        served = sum(api.verify_200 for api in self.apis)
        return served == self.answered_200 == self.rows and all(a.verify_200 for a in self.apis)

    def lines(self) -> list[str]:
        out = [f"  database {self.database} (the run's own, dropped at its end)"]
        out += [f"  {api.url}: {api.verify_200} verifications answered 200" for api in self.apis]
        out.append(
            f"  locust: {self.requests} requests, {self.answered_200} answered 200, "
            f"{self.failures} failures"
        )
        out.append(f"  PostgreSQL: {self.rows} verification rows stored by the run")
        served = sum(api.verify_200 for api in self.apis)
        out.append(
            ("the counts add up" if self.adds_up else "the counts DO NOT add up")
            + f": {served} served = {self.answered_200} answered = {self.rows} stored"
        )
        return out


def metrics_count(url: str) -> int:
    """POST /v1/verify answered 200 by the API process at ``url`` (its /metrics)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(int(float(n)) for n in VERIFY_200.findall(text))


def verification_rows(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM verifications").fetchone()
    return int(row[0]) if row else 0


def wait_rows(db_url: str, before: int, expected: int, timeout: float = 60) -> int:
    """Rows added since ``before`` once the flusher caught up: when ``expected`` are there, or
    when the count stood still for 5 s (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while True:
        added = verification_rows(db_url) - before
        now = time.monotonic()
        if added != last:
            last, still_since = added, now
        if added >= expected or now - still_since > 5 or now > deadline:
            return added
        time.sleep(0.3)


def split_codes(codes: Path, parts: int) -> list[Path]:
    """The codes file in ``parts`` disjoint files (every locust process its own pools)."""
    lines = codes.read_text().splitlines()
    files = []
    for i in range(parts):
        part = codes.with_name(f"{codes.stem}-part{i}.csv")
        part.write_text("\n".join(lines[i::parts]) + "\n")
        files.append(part)
    return files


def locust_totals(prefix: Path) -> tuple[int, int, int]:
    """(requests, answered 200, failures) of one locust run: the counts from its final JSON
    (its CSV stats are written before the last in-flight requests end), the failures that were
    not a 200 answer (HTTP status other than 200, or none) from its failures CSV."""
    stats = msgspec.json.decode(Path(f"{prefix}.json").read_bytes())
    requests = sum(int(entry["num_requests"]) for entry in stats)
    failures = sum(int(entry["num_failures"]) for entry in stats)
    non_200 = 0
    with open(f"{prefix}_failures.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            status = NON_200.search(row["Error"])
            if status is None or status.group(1) != "200":
                non_200 += int(row["Occurrences"])
    return requests, requests - min(non_200, failures), failures


def _locust_argv(url: str, codes: Path, prefix: Path, seconds: int, users: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUST_FILE),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--host",
        url,
        "--codes",
        str(codes),
        "--csv",
        str(prefix),
        "--json-file",
        str(prefix),
        "--exit-code-on-error",
        "0",
    ]  # fmt: skip (--json-file: locust adds ".json")


def _import_stack() -> None:
    """``loadtests`` (beside ``app`` in the source tree) importable."""
    root = str(LOCUST_FILE.parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)


def rehearse(
    seconds: int = 20, users: int = 10, api_processes: int = 2, count: int = 400
) -> RehearsalReport:
    """Start the layout, load it for ``seconds``, stop it; the counts (see the module doc).
    Raises ``loadtests.stack.StackError`` when the layout does not start."""
    _import_stack()
    from app.processes import server_command
    from loadtests.stack import HOST, Stack, free_port

    stack = Stack(count=count, own_database=True)  # never the named database: the demo data
    # Counters apart from the load test's and the developer's (reset_counters clears them).
    namespace = os.environ.get("TRACECODE_REDIS_NAMESPACE")
    stack.env["TRACECODE_REDIS_NAMESPACE"] = f"{namespace}.rehearsal" if namespace else "rehearsal"
    # Every process of the layout shares one PostgreSQL here: small pools, so that the API
    # processes, the workers and whatever else uses the server stay under its max_connections.
    stack.env.setdefault("TRACECODE_DB_POOL_MAX", "6")
    try:
        stack.services()  # migrated: the processes can boot while the codes are written
        database = stack.database_name or ""
        urls = []
        for i in range(api_processes):
            port = free_port()
            stack._spawn(f"api-{i}", server_command(HOST, port, 1), None)
            urls.append(f"http://{HOST}:{port}")
        stack.start_worker()
        stack.write_codes()
        stack.reset_counters()
        for url in urls:
            stack.wait_ready(url=url)
        db_url = stack.env["TRACECODE_DATABASE_URL"]
        before = verification_rows(db_url)
        runs: list[tuple[subprocess.Popen[bytes], Path]] = []
        shares = split_codes(stack.codes_file, len(urls))
        for i, (url, codes) in enumerate(zip(urls, shares, strict=True)):
            prefix = stack.log_dir / f"rehearsal-{i}"
            # a child of the stack: its own process group, stopped by stack.stop() whatever ends
            argv = _locust_argv(url, codes, prefix, seconds, users)
            runs.append((stack._spawn(prefix.name, argv, None), prefix))
        totals = [0, 0, 0]
        for process, prefix in runs:
            process.wait(timeout=seconds + 60)
            for k, n in enumerate(locust_totals(prefix)):
                totals[k] += n
        apis = [ApiCount(url, metrics_count(url)) for url in urls]
        rows = wait_rows(db_url, before, totals[1])
    finally:
        stack.stop()
    return RehearsalReport(apis, totals[0], totals[1], totals[2], rows, database)


def cmd_rehearse(seconds: int, users: int, api_processes: int, count: int) -> int:
    """``tracecode rehearse``: print the per-process counts; 0 when they add up, else 1."""
    if not 1 <= seconds <= 3600:
        print("tracecode: --seconds must be from 1 to 3600", file=sys.stderr)
        return 2
    if not 1 <= users <= 1000 or not 1 <= api_processes <= 16:
        print("tracecode: --users 1-1000, --api-processes 1-16", file=sys.stderr)
        return 2
    if count < 30 * api_processes:
        print(f"tracecode: --codes must be at least {30 * api_processes}", file=sys.stderr)
        return 2
    _import_stack()
    from loadtests.stack import StackError

    try:
        report = rehearse(seconds, users, api_processes, count)
    except StackError as exc:
        print(f"tracecode: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the processes were stopped (rehearse's finally)
        print("tracecode: rehearsal interrupted", file=sys.stderr)
        return 130
    print("rehearsal:\n" + "\n".join(report.lines()))
    return 0 if report.adds_up and report.requests > 0 else 1
