"""Issuance end to end through the CLI (issue 4): a batch to both encrypted printer files.

    .venv/bin/python bench/bench_export.py [--sizes 1000000 10000000]

For each size: ``tracecode codes issue`` then ``tracecode codes export`` (direct mode, as the
demo planner, on the embedded PostgreSQL under var/ unless TRACECODE_DATABASE_URL is set), timed
as whole commands, with the peak RSS of the export process. Then, in process, the split of the
time for the largest size: generation (serials + PINs), formatting (CSV lines), encryption
(AES-256-GCM chunks) and disk (writing the ciphertext).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENV = {
    **os.environ,
    "TRACECODE_MASTER_KEY": os.environ.get("TRACECODE_MASTER_KEY", "be" * 32),
    "TRACECODE_EXPORT_ASYNC_THRESHOLD": str(2**33),  # the CLI runs it itself, in process
    "BENCH_PASSPHRASE": "benchmark-passphrase",
}


def cli(*args: str) -> str:
    """Run a tracecode command and return its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=ENV, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"tracecode {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def run_size(size: int, out_dir: Path) -> dict[str, float]:
    out = cli("codes", "issue", "--size", str(size), "--printer", "PRINTER-SH")
    batch_no = json.loads(out)["batch_no"]
    # Peak RSS of one child: run the export alone in a fresh interpreter that reports itself.
    code = (
        "import resource, runpy, sys; sys.argv = ['tracecode'] + sys.argv[1:];"
        "from app.cli import main; rc = main(sys.argv[1:]);"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "codes",
            "export",
            str(batch_no),
            "--out",
            str(out_dir),
            "--passphrase-env",
            "BENCH_PASSPHRASE",
        ],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    rss_kib = int(done.stdout.split("MAXRSS")[1].split()[0])
    outer = (out_dir / "outer.tcpf").stat().st_size
    inner = (out_dir / "inner.tcpf").stat().st_size
    return {
        "size": size,
        "batch_no": batch_no,
        "seconds": elapsed,
        "codes_per_s": size / elapsed,
        "peak_rss_mib": rss_kib / 1024,
        "outer_mb": outer / 1e6,
        "inner_mb": inner / 1e6,
    }


def split(size: int, directory: Path) -> dict[str, float]:
    """Time each stage of an export of ``size`` codes over the same 512k-code steps."""
    from app.codes import printfile
    from app.codes.exports import STEP
    from app.codes.scheme import Scheme

    scheme = Scheme(b"\x01" * 32, [1], 1)
    prefix = "https://127.0.0.1:8000/c/"
    times = dict.fromkeys(("generate", "format", "sha256", "encrypt", "disk"), 0.0)
    key = os.urandom(32)
    wrap = printfile.wrap_with_passphrase(key, "x" * 12)
    path = directory / "split.tcpf"
    with open(path, "wb") as disk, open(os.devnull, "wb") as null:
        to_null = printfile.Writer(null, {}, wrap, key)
        to_disk = printfile.Writer(disk, {}, wrap, key)
        for s in range(0, size, STEP):
            e = min(s + STEP, size)
            t0 = time.perf_counter()
            scheme.generate(7, s, e, with_pins=True)
            t1 = time.perf_counter()
            lines = [
                scheme.print_lines(7, s, e, "outer", prefix),
                scheme.print_lines(7, s, e, "inner"),
            ]
            t2 = time.perf_counter()
            for piece in lines:
                hashlib.sha256(piece)
            t3 = time.perf_counter()
            for piece in lines:
                to_null.write(piece)
            t4 = time.perf_counter()
            for piece in lines:
                to_disk.write(piece)
            disk.flush()
            t5 = time.perf_counter()
            times["generate"] += t1 - t0
            # print_lines generates again inside: formatting = its time minus generation
            times["format"] += (t2 - t1) - (t1 - t0)
            times["sha256"] += t3 - t2
            times["encrypt"] += t4 - t3
            times["disk"] += (t5 - t4) - (t4 - t3)  # encrypt + write, minus encrypt alone
        to_null.close()
        to_disk.close()
        os.fsync(disk.fileno())
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    cli("demo", "load")
    print(f"machine: {os.cpu_count()} CPUs, {platform()}")
    with tempfile.TemporaryDirectory(dir=ROOT / "var") as tmp:
        for size in args.sizes:
            out = Path(tmp) / str(size)
            result = run_size(size, out)
            print(
                f"size {size:>11,}: {result['seconds']:6.2f} s"
                f"  {result['codes_per_s']:>12,.0f} codes/s"
                f"  peak RSS {result['peak_rss_mib']:6.1f} MiB  outer {result['outer_mb']:7.1f} MB"
                f"  inner {result['inner_mb']:6.1f} MB"
            )
            shutil.rmtree(out)
        largest = max(args.sizes)
        times = split(largest, Path(tmp))
        total = sum(times.values())
        print(f"split for {largest:,} codes (in process, {total:.2f} s summed):")
        for stage, seconds in times.items():
            print(f"  {stage:<9} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")


def platform() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
