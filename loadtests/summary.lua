-- wrk summary in parseable lines (GET /ping in bench/bench_verify.py; verify.lua loads it too).
-- Usage: wrk -t1 -c64 -d20s --latency -s loadtests/summary.lua http://127.0.0.1:PORT/ping
--
-- `wrk-summary`: requests, seconds, rps, percentiles, errors. `wrk-quantiles`: the latency at
-- every 0.1% (1000 values, ms), so runs can be merged into one distribution.

function write_summary(summary, latency)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "wrk-summary requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
      .. "max_ms=%.3f connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
  local q = {}
  for i = 1, 999 do
    q[i] = string.format("%.3f", latency:percentile(i / 10) / 1000)
  end
  q[1000] = string.format("%.3f", latency.max / 1000)  -- wrk's percentile(100) is 0
  io.write("wrk-quantiles " .. table.concat(q, ",") .. "\n")
end

function done(summary, latency, requests)
  write_summary(summary, latency)
end
