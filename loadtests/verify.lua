-- POST /v1/verify at full speed, rotating over genuine serials with their right PINs.
--
--   WRK_CODES=codes.csv wrk -t1 -c64 -d20s --latency -s loadtests/verify.lua \
--       http://127.0.0.1:PORT/v1/verify
--
-- WRK_CODES: file of `serial,pin,url` lines (`tracecode demo codes --count N`).
-- WRK_REPEAT: percent of requests that repeat a recently verified code (default 20); the rest
-- take the next code of the file (a first query), wrapping around at the end of the file.
-- WRK_THREADS: the -t given to wrk (default 1); thread k takes lines k, k+T, ... of the file,
-- so no two threads share a code.
-- At the end: the `wrk-summary` and `wrk-quantiles` lines of summary.lua and the answers' `result`s.

local threads = {}

-- write_summary(): the summary lines of summary.lua, next to this file
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.-)[^/]*$") .. "summary.lua")

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("WRK_CODES")
  if not path or path == "" then
    error("set WRK_CODES to a file of serial,pin,url lines")
  end
  repeat_pct = tonumber(os.getenv("WRK_REPEAT") or "20")
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  local headers = { ["Content-Type"] = "application/json" }
  reqs = {}
  local line_no = 0
  for line in io.lines(path) do
    local serial, pin = line:match("^([^,]+),(%d+),")
    if serial then
      if line_no % nthreads == id then
        local body = '{"serial":"' .. serial .. '","pin":"' .. pin .. '","lang":"en"}'
        reqs[#reqs + 1] = wrk.format("POST", nil, headers, body)
      end
      line_no = line_no + 1
    end
  end
  if #reqs == 0 then
    error("no serial,pin lines in " .. path)
  end
  math.randomseed(os.time() + id)
  pos = 0
  genuine, suspicious, other, http_errors = 0, 0, 0, 0
end

function request()
  if pos > 0 and math.random(100) <= repeat_pct then
    local back = math.random(0, math.min(pos - 1, 500))
    return reqs[pos - back]
  end
  pos = pos % #reqs + 1
  return reqs[pos]
end

function response(status, headers, body)
  if status ~= 200 then
    http_errors = http_errors + 1
    return
  end
  local result = body:match('"result":"(%a+)"')
  if result == "genuine" then
    genuine = genuine + 1
  elseif result == "suspicious" then
    suspicious = suspicious + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  write_summary(summary, latency)
  local g, s, o, h = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    g = g + thread:get("genuine")
    s = s + thread:get("suspicious")
    o = o + thread:get("other")
    h = h + thread:get("http_errors")
  end
  io.write(string.format("wrk-results genuine=%d suspicious=%d other=%d http_errors=%d\n", g, s, o, h))
end
