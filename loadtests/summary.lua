-- wrk summary in one parseable line (used for GET /ping by bench/bench_verify.py).
-- Usage: wrk -t1 -c64 -d20s --latency -s loadtests/summary.lua http://127.0.0.1:PORT/ping

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "wrk-summary requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
      .. "max_ms=%.3f connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
