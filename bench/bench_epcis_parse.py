"""EPCIS capture document parsing (issue 19): events per second of ``parse_document``.

    .venv/bin/python bench/bench_epcis_parse.py [--events 1000] [--epcs 10] [--rounds 7]

Generates one EPCISDocument of ``--events`` ObjectEvents, each with ``--epcs`` distinct SGTIN
EPC URNs, a bizStep and disposition, a readPoint and bizLocation (SGLN URNs), a bizTransaction
and an eventTime with a zone, and times ``app.epcis.document.parse_document`` on it (decode,
every check, canonical identifiers, the CapturedEvent structs). Reported: events per second
and microseconds per event of the median round.

Baselines in the same run: ``msgspec.json.decode`` of the same bytes alone, and
``app.epcis.identifiers.canonical`` of every EPC of the document alone (the two floors the
checks add to; the last line is what is left for the checks and the extraction). Checked:
every event comes back with its EPCs canonical. Target (issue 19): 20,000 ten-EPC
ObjectEvents a second, i.e. well under 20 µs an event.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.epcis.document import parse_document  # noqa: E402
from app.epcis.identifiers import canonical  # noqa: E402

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"


def document(events: int, epcs: int) -> bytes:
    """One EPCISDocument of ``events`` ObjectEvents with ``epcs`` distinct SGTINs each."""
    event_list = [
        {
            "type": "ObjectEvent",
            "eventTime": f"2026-03-01T{8 + i // 3600 % 10:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "eventTimeZoneOffset": "+08:00",
            "epcList": [f"urn:epc:id:sgtin:6901234.012345.S{i:06d}{j:03d}" for j in range(epcs)],
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "readPoint": {"id": "urn:epc:id:sgln:6901234.00001.0"},
            "bizLocation": {"id": "urn:epc:id:sgln:6901234.00002.0"},
            "bizTransactionList": [{"type": "desadv", "bizTransaction": f"urn:x:desadv:{i}"}],
        }
        for i in range(events)
    ]
    return msgspec.json.encode(
        {
            "@context": [CONTEXT],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-03-01T08:00:00Z",
            "epcisBody": {"eventList": event_list},
        }
    )


def median_seconds(fn: Callable[[Any], Any], arg: Any, rounds: int) -> float:
    fn(arg)  # warm-up (regexes, caches)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--epcs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    raw = document(args.events, args.epcs)
    parsed = parse_document(raw, max_events=args.events)
    assert len(parsed) == args.events
    assert all(len(e.epcs) == args.epcs for e in parsed)
    assert all(epc.startswith("https://id.gs1.org/01/") for e in parsed for epc in e.epcs)
    epcs = [epc for e in msgspec.json.decode(raw)["epcisBody"]["eventList"] for epc in e["epcList"]]
    print(
        f"{args.events} ObjectEvents x {args.epcs} EPCs, {len(raw):,} bytes; "
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}"
    )
    rows = {}
    for name, fn, arg in (
        ("msgspec.json.decode only (baseline)", msgspec.json.decode, raw),
        (
            "canonical() of the EPCs only (baseline)",
            lambda ids: [canonical(i, False) for i in ids],
            epcs,
        ),
        ("parse_document", lambda b: parse_document(b, max_events=args.events), raw),
    ):
        rows[name] = median_seconds(fn, arg, args.rounds) / args.events
        print(f"{name:<42} {1 / rows[name]:>12,.0f} events/s {rows[name] * 1e6:>8.2f} µs/event")
    rest = rows["parse_document"] - sum(v for k, v in rows.items() if k != "parse_document")
    label = "checks and extraction (the difference)"
    print(f"{label:<42} {'':>22} {rest * 1e6:>8.2f} µs/event")


if __name__ == "__main__":
    main()
