-- POST /members/me/claims at full speed: every request claims the next code of the file.
--
--   WRK_CLAIMS=claims.csv wrk -t1 -c64 -d10s --latency -s bench/claims.lua \
--       http://127.0.0.1:PORT/members/me/claims
--
-- WRK_CLAIMS: lines `token,serial,pin` (bench/bench_claims.py writes it: members round robin,
-- one distinct code a line). Past the end of the file it starts over: those claims are replays
-- of the same client id (200) and are counted apart. At the end: summary.lua's lines and
-- `wrk-results` created=… replayed=… conflict=… other=… wrapped=….

dofile(debug.getinfo(1, "S").source:sub(2):match("^(.-)[^/]*$") .. "../loadtests/summary.lua")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("WRK_CLAIMS")
  if not path or path == "" then
    error("set WRK_CLAIMS to a file of token,serial,pin lines")
  end
  reqs = {}
  local n = 0
  for line in io.lines(path) do
    local token, serial, pin = line:match("^([^,]+),([^,]+),(%d+)$")
    if token then
      n = n + 1
      local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. token,
      }
      local body = '{"serial":"' .. serial .. '","pin":"' .. pin .. '","client_id":"b' .. serial .. '"}'
      reqs[n] = wrk.format("POST", nil, headers, body)
    end
  end
  if #reqs == 0 then
    error("no token,serial,pin lines in " .. path)
  end
  pos, wrapped = 0, 0
  created, replayed, conflict, other = 0, 0, 0, 0
end

function request()
  pos = pos + 1
  if pos > #reqs then
    wrapped = wrapped + 1
  end
  return reqs[(pos - 1) % #reqs + 1]
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  elseif status == 200 then
    replayed = replayed + 1  -- past the end of the file: the same client id again
  elseif status == 409 then
    conflict = conflict + 1
  else
    other = other + 1
    if other <= 3 then
      io.stderr:write("unexpected " .. status .. ": " .. body .. "\n")
    end
  end
end

function done(summary, latency, requests)
  write_summary(summary, latency)
  local c, r, k, o, w = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    c = c + thread:get("created")
    r = r + thread:get("replayed")
    k = k + thread:get("conflict")
    o = o + thread:get("other")
    w = w + thread:get("wrapped")
  end
  io.write(string.format("wrk-results created=%d replayed=%d conflict=%d other=%d wrapped=%d\n",
    c, r, k, o, w))
end
