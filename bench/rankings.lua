-- GET the rebate rankings at full speed as one signed-in user (bench/bench_rebate_ranking.py).
--
--   WRK_TOKEN=<access token> WRK_PATHS='/rebates/rankings/stores?month=2026-06,...' \
--       wrk -t1 -c16 -d15s --latency -s bench/rankings.lua http://127.0.0.1:PORT
--
-- WRK_PATHS: comma-separated request paths, taken in turn. At the end: summary.lua's lines and
-- `wrk-results ok=… other=…` (answers that were not 200).

dofile(debug.getinfo(1, "S").source:sub(2):match("^(.-)[^/]*$") .. "../loadtests/summary.lua")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local token = os.getenv("WRK_TOKEN")
  if not token or token == "" then
    error("set WRK_TOKEN to an access token")
  end
  wrk.headers["Authorization"] = "Bearer " .. token
  paths = {}
  for path in string.gmatch(os.getenv("WRK_PATHS") or "", "[^,]+") do
    table.insert(paths, path)
  end
  if #paths == 0 then
    error("set WRK_PATHS to the paths to request")
  end
  at = 0
  ok = 0
  other = 0
end

function request()
  at = at % #paths + 1
  return wrk.format("GET", paths[at])
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  write_summary(summary, latency)
  local n_ok, n_other = 0, 0
  for _, thread in ipairs(threads) do
    n_ok = n_ok + thread:get("ok")
    n_other = n_other + thread:get("other")
  end
  io.write(string.format("wrk-results ok=%d other=%d\n", n_ok, n_other))
end
