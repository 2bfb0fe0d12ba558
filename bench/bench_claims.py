"""Points claims through the API (issue 15 target): ≥ 3,000 claims/s of distinct codes at p99
≤ 50 ms with 64 connections and ONE granian worker, every code credited exactly once.

    .venv/bin/python bench/bench_claims.py [--count 60000] [--duration 15s] [--connections 64]
                                           [--members 64] [--smoke]

The stack is ``loadtests/stack.py``'s (PostgreSQL and Redis: the ``TRACECODE_*_URL`` servers or
embedded ones under ``var/loadtest``; ``tracecode demo codes --count N`` for activated units; one
granian worker; a dramatiq worker flushing the verification records). The run then gives every
product of the demo brand a points rule (10), makes ``--members`` members with member tokens,
writes one line per not-yet-claimed code (``token,serial,pin``, the members in turn) and runs
``wrk -t1 -cC -dD --latency -s bench/claims.lua`` on ``POST /members/me/claims``: each request
claims the next code. Baseline in the same run: ``/ping`` for the same time, the server's ceiling.

After the run, exactly once is checked in PostgreSQL: as many claim rows for the run's members as
201 answers, one per code, as many ledger rows, the members' balances summing to the points
credited, and ``tracecode points check`` (every balance equals its ledger). ``--smoke`` runs a
small size (500 codes, 2 s) to prove the script; the numbers of a smoke run mean nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.stack import Stack  # noqa: E402

POINTS = 10  # the rule of every demo product in this run


def wrk(
    url: str, duration: str, connections: int, script: Path, env: dict[str, str]
) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency", "-s", str(script), url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr[-2000:]}")
    numbers: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith(("wrk-summary ", "wrk-results ")):
            for key, value in re.findall(r"(\w+)=([\d.]+)", line):
                numbers[key] = float(value)
    if "rps" not in numbers:
        raise RuntimeError(f"no wrk-summary line in:\n{done.stdout}\n{done.stderr}")
    if done.stderr.strip():
        print(done.stderr.strip()[-1500:], file=sys.stderr)
    return numbers


def prepare(stack: Stack, members: int, out: Path, want: int) -> tuple[list[int], int]:
    """Rules, members and the claims file of ``want`` codes not claimed by an earlier run;
    (member ids, lines written)."""
    import psycopg

    from app.codes.scheme import scheme_from_settings
    from app.config import load_settings
    from app.members.principal import issue_token

    old = dict(os.environ)
    os.environ.update(stack.env)
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(old)
    scheme = scheme_from_settings(settings)
    codes = []
    for line in stack.codes_file.read_text().splitlines():
        serial, pin = line.split(",")[:2]
        batch_no, index, _ = scheme.verify(serial)
        codes.append((batch_no << 32 | index, serial, pin))
    with psycopg.connect(stack.env["TRACECODE_DATABASE_URL"], autocommit=True) as conn:
        brand = conn.execute("SELECT id FROM orgs WHERE erp_code = 'BRAND-LUMI'").fetchone()[0]
        conn.execute(
            """INSERT INTO point_rules (brand_id, product_id, points)
               SELECT %s, p.id, %s FROM products p JOIN orgs o ON o.id = p.org_id
               WHERE o.path LIKE %s ON CONFLICT (product_id, agent_id) DO UPDATE
               SET points = EXCLUDED.points""",
            (brand, POINTS, f"/{brand}/%"),
        )
        claimed = {
            row[0]
            for row in conn.execute(
                "SELECT code_id FROM point_claims WHERE code_id = ANY(%s)", ([c[0] for c in codes],)
            )
        }
        fresh = [c for c in codes if c[0] not in claimed]
        if len(fresh) < want and claimed:  # an earlier run claimed some: activate more units
            stack.count = want + len(claimed)
            stack.write_codes()
            return prepare(stack, members, out, want)
        ids = [
            conn.execute(
                "INSERT INTO members (brand_id, phone) VALUES (%s, %s) RETURNING id",
                (brand, "135" + "".join(secrets.choice("0123456789") for _ in range(8))),
            ).fetchone()[0]
            for _ in range(members)
        ]
    tokens = [issue_token(settings, member_id)[0] for member_id in ids]
    out.write_text(
        "".join(
            f"{tokens[i % len(tokens)]},{serial},{pin}\n"
            for i, (_, serial, pin) in enumerate(fresh)
        )
    )
    return ids, len(fresh)


def exactly_once(stack: Stack, member_ids: list[int]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(stack.env["TRACECODE_DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM point_claims WHERE member_id = ANY(%(m)s)) AS claims,
                      (SELECT count(DISTINCT code_id) FROM point_claims
                        WHERE member_id = ANY(%(m)s)) AS codes,
                      (SELECT count(*) FROM points_ledger
                        WHERE member_id = ANY(%(m)s) AND kind = 'claim') AS entries,
                      (SELECT coalesce(sum(points), 0) FROM points_ledger
                        WHERE member_id = ANY(%(m)s)) AS ledger,
                      (SELECT coalesce(sum(balance), 0) FROM point_balances
                        WHERE member_id = ANY(%(m)s)) AS balances""",
            {"m": member_ids},
        ).fetchone()
    return dict(
        zip(("claims", "codes", "entries", "ledger", "balances"), map(int, row), strict=True)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=60_000, help="activated codes (default 60000)")
    parser.add_argument("--duration", default="15s", help="wrk duration (default 15s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="500 codes, 2 s: proves the script")
    args = parser.parse_args()
    if args.smoke:
        args.count, args.duration = 500, "2s"
    script = ROOT / "bench" / "claims.lua"
    with Stack(count=args.count) as stack, tempfile.TemporaryDirectory() as tmp:
        claims_file = Path(tmp) / "claims.csv"
        member_ids, lines = prepare(stack, args.members, claims_file, args.count)
        print(f"{lines} unclaimed codes, {args.members} members, points rule {POINTS}")
        env = {**stack.env, "WRK_CLAIMS": str(claims_file)}
        ping = wrk(
            stack.url + "/ping",
            args.duration,
            args.connections,
            ROOT / "loadtests" / "summary.lua",
            env,
        )
        run = wrk(stack.url + "/members/me/claims", args.duration, args.connections, script, env)
        checked = exactly_once(stack, member_ids)
        check = subprocess.run(
            [sys.executable, "-m", "app.cli", "points", "check"],
            env=stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    created = int(run.get("created", 0))
    claims_per_s = created / run["seconds"] if run["seconds"] else 0.0
    print(f"ping:   {ping['rps']:.0f} req/s, p99 {ping['p99_ms']:.1f} ms")
    print(
        f"claims: {claims_per_s:.0f} credited/s ({run['rps']:.0f} answers/s), p50 "
        f"{run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, max {run['max_ms']:.1f} ms; "
        f"201: {created}, 200 (replays past the file's end): {int(run.get('replayed', 0))}, "
        f"409: {int(run.get('conflict', 0))}, other: {int(run.get('other', 0))}"
    )
    once = (
        checked["claims"] == checked["codes"] == checked["entries"] == created
        and checked["ledger"] == checked["balances"] == created * POINTS
        and check.returncode == 0
    )
    print(
        f"exactly once: {'yes' if once else 'NO'} {checked}; points check: {check.stdout.strip()}"
    )
    target = claims_per_s >= 3000 and run["p99_ms"] <= 50
    print(f"target (>= 3,000 claims/s, p99 <= 50 ms): {'met' if target else 'not met'}")
    if args.smoke:
        print("(smoke run: the numbers mean nothing)")
    return 0 if once else 1


if __name__ == "__main__":
    sys.exit(main())
