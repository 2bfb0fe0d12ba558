"""Serial core benchmarks (issue 3): Rust against the pure-Python reference in the same run.

    .venv/bin/pytest bench/bench_serial.py --benchmark-only --benchmark-columns=min,median,max

Rust runs on 1,000,000 codes per round, the reference on 20,000 (it is ~1000x slower); rates are
items per second of the median round and the summary at the end prints the ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
            str(ROOT / "bench" / "stream_serials.py"),
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
