"""Stream N serials + PINs of one batch to a file in fixed-size chunks, then prove them distinct.

    python bench/stream_serials.py --count 10000000 --out /tmp/serials.bin

Generation never holds more than one chunk in memory, so peak RSS should not grow with N. The
distinctness check reads the file back chunk by chunk and verifies every record: each must invert
to its own index (start..end in order). Equal serials would invert to equal indexes, so this
proves all N serials distinct without a set or a sort. Prints one JSON line of measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from array import array

from app._core import Scheme

CHUNK = 1_000_000


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
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
    main()
