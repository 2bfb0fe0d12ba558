"""The request metrics of ``/metrics``: requests per method, route and status, and the latency
histogram per method and route (Prometheus names ``tracecode_http_requests_total`` and
``tracecode_http_request_seconds``).

A request adds to plain integers in the Rust core (``app.logs.requests``, one call from
``app.front`` per request, which also writes its access line); the Prometheus families are built
only when ``/metrics`` is scraped (``RequestMetrics.collect``, a custom collector of the default
registry). prometheus_client's own Counter and Histogram take a lock per increment and per
bucket, several microseconds a request. A method other than GET, HEAD, POST, PUT, PATCH, DELETE
and OPTIONS is counted as ``other``: a client cannot grow the label set at will.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from app._core import REQUEST_BUCKETS
from app.logs import requests

_LE = [floatToGoString(b) for b in REQUEST_BUCKETS] + ["+Inf"]


class RequestMetrics:
    """The request counter and latency histogram, as one Prometheus collector."""

    def collect(self) -> Iterator[Metric]:
        requests_family = CounterMetricFamily(
            "tracecode_http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        latency = HistogramMetricFamily(
            "tracecode_http_request_seconds", "HTTP request latency", labels=["method", "route"]
        )
        for method, route, statuses, counts, total in requests.series():
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
