"""The request metrics of ``/metrics``: requests per method, route and status, and the latency
histogram per method and route (Prometheus names ``tracecode_http_requests_total`` and
``tracecode_http_request_seconds``).

A request adds to plain integers (``REQUEST_METRICS.observe``, called by ``app.front``: a dict
look-up, a bisection and three additions); the Prometheus families are built only when
``/metrics`` is scraped (``RequestMetrics.collect``, a custom collector of the default
registry). prometheus_client's own Counter and Histogram take a lock per increment and per
bucket, several microseconds a request. The numbers are only ever changed by the event loop's
thread, one statement at a time, so no lock is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LE = [floatToGoString(b) for b in BUCKETS] + ["+Inf"]
# A method outside these counts as "other": a client cannot grow the label set at will.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class _Series:
    """One (method, route): its latency buckets (not cumulative), their sum, its statuses."""

    __slots__ = ("buckets", "statuses", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.statuses: dict[int, int] = {}


class RequestMetrics:
    """The request counter and latency histogram, as one Prometheus collector."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (``route``: the route's path template)."""
        key = (method, route)
        series = self._series.get(key)
        if series is None:
            if method not in METHODS:
                key = ("other", route)
            series = self._series.setdefault(key, _Series())
        series.buckets[bisect_left(BUCKETS, seconds)] += 1
        series.sum += seconds
        statuses = series.statuses
        statuses[status] = statuses.get(status, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "tracecode_http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        latency = HistogramMetricFamily(
            "tracecode_http_request_seconds", "HTTP request latency", labels=["method", "route"]
        )
        for (method, route), series in list(self._series.items()):
            for status, n in list(series.statuses.items()):
                requests.add_metric([method, route, str(status)], n)
            cumulative, buckets = 0, []
            for le, n in zip(_LE, list(series.buckets), strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            latency.add_metric([method, route], buckets, series.sum)
        yield requests
        yield latency


REQUEST_METRICS = RequestMetrics()
REGISTRY.register(REQUEST_METRICS)
