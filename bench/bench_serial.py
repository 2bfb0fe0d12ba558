"""Serial core benchmarks (issue 3): Rust against the pure-Python reference in the same run.

    .venv/bin/pytest bench/bench_serial.py --benchmark-only --benchmark-columns=min,median,max

Rust runs on 1,000,000 codes per round, the reference on 20,000 (it is ~500x slower); rates are
items per second of the median round and the summary at the end prints the ratios.

Run as a script, this file streams N serials + PINs of one batch to a file in fixed-size chunks
and then proves them distinct (the benchmark runs it in a subprocess so peak RSS is its own):

    .venv/bin/python bench/bench_serial.py --count 10000000 --out /tmp/serials.bin

Generation never holds more than one chunk in memory, so peak RSS should not grow with N. The
distinctness check reads the file back chunk by chunk and verifies every record: each must invert
to its own index (start..end in order). Equal serials would invert to equal indexes, so this
proves all N serials distinct without a set or a sort. It prints one JSON line of measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from app._core import Scheme
from app.codes.reference import ReferenceScheme

MASTER = bytes(range(32))
N = 1_000_000
N_REF = 20_000
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scheme() -> Scheme:
    return Scheme(MASTER, [1], 1)


@pytest.fixture(scope="module")
def reference() -> ReferenceScheme:
    return ReferenceScheme(MASTER, [1], 1)


@pytest.fixture(scope="module")
def serials(scheme) -> bytes:
    return scheme.generate(3, 0, N, with_pins=False)


def run(benchmark, rates, name, count, fn, *args, rounds=10, **kwargs):
    result = benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds, warmup_rounds=1)
    rate = count / benchmark.stats.stats.median
    benchmark.extra_info["per_second"] = round(rate)
    rates[name] = rate
    return result


@pytest.mark.parametrize("threads", [1, 2])
def test_generate_serials_and_pins(benchmark, rates, scheme, threads):
    out = run(
        benchmark,
        rates,
        f"generate serial+pin, {threads} thread{'s' * (threads > 1)}",
        N,
        scheme.generate,
        3,
        0,
        N,
        with_pins=True,
        threads=threads,
    )
    assert len(out) == N * 26


@pytest.mark.parametrize("threads", [1, 2])
def test_verify_buffer(benchmark, rates, scheme, serials, threads):
    out = run(
        benchmark,
        rates,
        f"verify buffer, {threads} thread{'s' * (threads > 1)}",
        N,
        scheme.verify_buffer,
        serials,
        20,
        threads=threads,
    )
    assert out[:4] == b"\0\0\0\0" and len(out) == 16 * N


def test_verify_many_list_of_str(benchmark, rates, scheme, serials):
    """The convenience path: a Python list of str in, a list of tuples out."""
    texts = [serials[i : i + 20].decode() for i in range(0, len(serials), 20)]
    out = run(
        benchmark,
        rates,
        "verify_many list[str], 2 threads",
        N,
        scheme.verify_many,
        texts,
        threads=2,
        rounds=5,
    )
    assert out[0][0] == 0


def test_reference_generate(benchmark, rates, scheme, reference):
    out = run(
        benchmark, rates, "reference generate", N_REF, reference.generate, 3, 0, N_REF, rounds=3
    )
    assert out == scheme.generate(3, 0, N_REF)


def test_reference_verify(benchmark, rates, reference, serials):
    texts = [serials[i : i + 20].decode() for i in range(0, N_REF * 20, 20)]

    def verify_all():
        return [reference.verify(t) for t in texts]

    out = run(benchmark, rates, "reference verify", N_REF, verify_all, rounds=3)
    assert out[5] == (3, 5, 1)


def stream(count: int, tmp_path: Path) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--count",
            str(count),
            "--out",
            str(tmp_path / f"serials-{count}.bin"),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(proc.stdout)


def test_stream_10m_to_file_with_flat_memory_and_distinct(benchmark, tmp_path, notes):
    """10M serials+PINs streamed to a file in 1M chunks: peak RSS as for 1M, all distinct.

    One round, in a subprocess each so that peak RSS belongs to that run alone; the timed part
    is the 10M run (generate + write + read back + verify every record).
    """
    small = stream(1_000_000, tmp_path)
    big = benchmark.pedantic(stream, args=(10_000_000, tmp_path), rounds=1, iterations=1)
    for r in (small, big):
        notes.append(
            f"stream {r['count']:>10,}: generate {r['generate_per_s']:,}/s to file, "
            f"peak RSS {r['peak_rss_mib_after_generate']} MiB after generate, "
            f"{r['peak_rss_mib']} MiB after the distinctness check "
            f"({r['distinct_check_s']} s), distinct={r['distinct']}"
        )
    assert big["distinct"] and big["count"] == 10_000_000
    assert big["peak_rss_mib"] < small["peak_rss_mib"] + 16


# --- script mode: streaming to a file ----------------------------------------------------------

CHUNK = 1_000_000


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def stream_main() -> None:
    """Script mode: stream --count serials to --out, check them, print JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    scheme = Scheme(bytes(range(32)), [1], 1)
    width = 20 + scheme.pin_length
    batch = 12

    t0 = time.perf_counter()
    with open(args.out, "wb") as f:
        for start in range(0, args.count, CHUNK):
            end = min(start + CHUNK, args.count)
            f.write(scheme.generate(batch, start, end, threads=args.threads))
    gen_s = time.perf_counter() - t0
    peak_after_generate = peak_rss_mib()

    t0 = time.perf_counter()
    checked = 0
    with open(args.out, "rb") as f:
        while chunk := f.read(CHUNK * width):
            n = len(chunk) // width
            res = memoryview(scheme.verify_buffer(chunk, width, threads=args.threads)).cast("I")
            if bytes(res[0::4]) != bytes(4 * n):
                raise SystemExit("a record did not verify")
            if bytes(res[1::4]) != array("I", [batch]).tobytes() * n:
                raise SystemExit("a record inverted to another batch")
            if bytes(res[2::4]) != array("I", range(checked, checked + n)).tobytes():
                raise SystemExit("records do not invert to consecutive indexes")
            checked += n
            del chunk, res  # release this chunk before reading the next: flat memory
    check_s = time.perf_counter() - t0
    size = os.path.getsize(args.out)
    os.unlink(args.out)
    if checked != args.count:
        raise SystemExit(f"checked {checked} records, expected {args.count}")
    print(
        json.dumps(
            {
                "count": args.count,
                "file_bytes": size,
                "generate_s": round(gen_s, 3),
                "generate_per_s": round(args.count / gen_s),
                "distinct_check_s": round(check_s, 3),
                "peak_rss_mib_after_generate": round(peak_after_generate, 1),
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "distinct": True,
            }
        )
    )


if __name__ == "__main__":
    stream_main()
