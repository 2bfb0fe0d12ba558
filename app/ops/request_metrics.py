"""The request metrics of ``/metrics``: requests per method, route and status, and the latency
histogram per method and route (Prometheus names ``tracecode_http_requests_total`` and
``tracecode_http_request_seconds``).

A request adds to plain integers in the Rust core (``app.logs.requests``, one call from
``app.front`` per request, which also writes its access line); the Prometheus families are built
only when ``/metrics`` is scraped (``RequestMetrics.collect``, a custom collector of the default
registry). prometheus_client's own Counter and Histogram take a lock per increment and per
bucket, several microseconds a request. A method other than GET, HEAD, POST, PUT, PATCH, DELETE
and OPTIONS is counted as ``other``: a client cannot grow the label set at will.

One host's answer. granian spreads a host's requests, its scrapes too, over its worker
processes, each counting its own: scrapes answered by one worker, then another, went 60, 40, 60
— counters going backwards, and ``rate()`` meaningless (probe S). So each worker of a granian
server writes its counts every second to a file of its own (``Snapshots``: under
``var/metrics/<the server's pid>-<its start time>/``), and ``/metrics`` adds those of the
others to its own: of every worker the server has run, so that a worker replaced by granian
takes nothing back.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from app._core import REQUEST_BUCKETS
from app.logs import requests

_LE = [floatToGoString(b) for b in REQUEST_BUCKETS] + ["+Inf"]


Series = tuple[str, str, list[tuple[int, int]], list[int], float]  # ``requests.series()``
_SERIES = msgspec.json.Decoder(list[Series])


class Snapshots:
    """This worker's counts written to ``directory`` every ``every`` seconds, and those the
    server's other workers wrote there (see the module docstring)."""

    def __init__(self, directory: Path, every: float = 1.0) -> None:
        self.directory = directory
        self.every = every
        self.own = directory / f"{os.getpid()}-{time.time_ns()}.json"
        self._stop = threading.Event()

    def start(self) -> None:
        """Raises OSError when the directory cannot be made (the caller goes on without)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for server in self.directory.parent.iterdir():  # servers gone: their files
            if server != self.directory and server_name(server.name) != server.name:
                shutil.rmtree(server, ignore_errors=True)
        threading.Thread(target=self._run, name="metrics-snapshots", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.write()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.write()
            except OSError:  # a full or read-only disk: the next second tries again
                pass

    def write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)  # removed meanwhile: made again
        temporary = self.own.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(requests.series()))
        os.replace(temporary, self.own)

    def others(self) -> Iterator[Series]:
        for path in self.directory.glob("*.json"):
            if path != self.own:
                try:
                    series = _SERIES.decode(path.read_bytes())
                except (OSError, msgspec.DecodeError):  # gone, or being replaced: skipped
                    continue
                # a release with other latency buckets: its files are not this one's
                yield from (s for s in series if len(s[3]) == len(_LE))


def server_name(name: str) -> str | None:
    """The directory name of the running server ``name`` names (``<pid>-<its start time>``),
    or None when no such process runs now. A pid alone comes back after a restart (in a
    container, the server is often pid 1 every time): its start time tells the runs apart."""
    pid, _, _ = name.partition("-")
    if not pid.isdigit():
        return None
    try:  # /proc/<pid>/stat: the start time (clock ticks since boot), field 22
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid}-{stat.rpartition(')')[2].split()[19]}"


#: This process's, when it is a worker of a granian server (``app.main``); else None.
snapshots: Snapshots | None = None


def merged() -> list[Series]:
    """This process's series, with those of the server's other workers added."""
    own = requests.series()
    if snapshots is None:
        return own
    totals: dict[tuple[str, str], tuple[dict[int, int], list[int], list[float]]] = {}
    for method, route, statuses, counts, total in [*own, *snapshots.others()]:
        by_status, buckets, seconds = totals.setdefault(
            (method, route), ({}, [0] * len(counts), [0.0])
        )
        for status, n in statuses:
            by_status[status] = by_status.get(status, 0) + n
        for i, n in enumerate(counts):
            buckets[i] += n
        seconds[0] += total
    return [
        (method, route, sorted(by_status.items()), buckets, seconds[0])
        for (method, route), (by_status, buckets, seconds) in totals.items()
    ]


class RequestMetrics:
    """The request counter and latency histogram, as one Prometheus collector."""

    def collect(self) -> Iterator[Metric]:
        requests_family = CounterMetricFamily(
            "tracecode_http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        latency = HistogramMetricFamily(
            "tracecode_http_request_seconds", "HTTP request latency", labels=["method", "route"]
        )
        for method, route, statuses, counts, total in merged():
            for status, n in statuses:
                requests_family.add_metric([method, route, str(status)], n)
            cumulative, buckets = 0, []
            for le, n in zip(_LE, counts, strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            latency.add_metric([method, route], buckets, total)
        yield requests_family
        yield latency


REGISTRY.register(RequestMetrics())
