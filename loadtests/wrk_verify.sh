#!/usr/bin/env bash
# POST /v1/verify at peak throughput with wrk, rotating over genuine serials and right PINs.
#
#   loadtests/wrk_verify.sh                      # starts a local stack (loadtests/stack.py),
#                                                # writes the codes, runs wrk, stops everything
#   loadtests/wrk_verify.sh --url http://127.0.0.1:8000 --codes codes.csv   # a running server
#
# Options (or environment): -d/--duration DURATION (20s), -c/--connections CONNECTIONS (64),
# -t/--threads THREADS (1), --count COUNT (codes to write when it starts the stack: 40000),
# --repeat WRK_REPEAT (percent of repeat queries: 20), --cpus WRK_CPUS (taskset list for wrk).
# A server started by hand needs a high TRACECODE_VERIFY_RATE_LIMIT (all load comes from one IP).
# Prints wrk's report (requests/s, latency percentiles) and the answers' results. 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
COUNT=${COUNT:-40000}
WRK_REPEAT=${WRK_REPEAT:-20}
WRK_CPUS=${WRK_CPUS:-}
URL=${LOADTEST_URL:-}
CODES=${LOADTEST_CODES:-}
ARGS=("$@")

while [ $# -gt 0 ]; do
  case "$1" in
    --url) URL=$2; shift 2 ;;
    --codes) CODES=$2; shift 2 ;;
    -d|--duration) DURATION=$2; shift 2 ;;
    -c|--connections) CONNECTIONS=$2; shift 2 ;;
    -t|--threads) THREADS=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --repeat) WRK_REPEAT=$2; shift 2 ;;
    --cpus) WRK_CPUS=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "wrk_verify.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk_verify.sh: installing wrk (Debian package)" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get install -y wrk >/dev/null 2>&1 \
    || { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y wrk >/dev/null; }
fi

if [ -z "$URL" ]; then
  # No server given: run this script again inside a local stack, which sets LOADTEST_URL/CODES.
  exec "$ROOT/.venv/bin/python" "$ROOT/loadtests/stack.py" --count "$COUNT" -- "$0" "${ARGS[@]}"
fi

# The URL's host as a URL parser reads it (a shell pattern let http://127.0.0.1:80@other:8000
# through: wrk takes "127.0.0.1:80" for user information and loads "other"): loopback only, no
# user information, nothing after the host but an optional "/".
if ! python3 - "$URL" <<'PY'
import re, sys, urllib.parse
url = sys.argv[1]
parts = urllib.parse.urlsplit(url)
try:
    parts.port  # a port that is not a number raises
except ValueError:
    sys.exit(1)
ok = (
    re.fullmatch(r"[A-Za-z0-9.:/\[\]-]+", url) is not None  # no "@", no blanks or escapes
    and parts.scheme == "http"
    and parts.hostname in ("127.0.0.1", "localhost", "::1")
    and parts.username is None
    and parts.path in ("", "/")
)
sys.exit(0 if ok else 1)
PY
then
  echo "wrk_verify.sh: refusing $URL: load tests target 127.0.0.1 only" >&2
  exit 2
fi
if [ -z "$CODES" ] || [ ! -s "$CODES" ]; then
  echo "wrk_verify.sh: give --codes FILE (serial,pin,url lines from 'tracecode demo codes')" >&2
  exit 2
fi

PIN=()
if [ -n "$WRK_CPUS" ]; then PIN=(taskset -c "$WRK_CPUS"); fi
echo "wrk: POST ${URL%/}/v1/verify, $THREADS thread(s), $CONNECTIONS connections, $DURATION," \
  "$(wc -l <"$CODES") codes, ${WRK_REPEAT}% repeat queries"
WRK_CODES=$CODES WRK_THREADS=$THREADS WRK_REPEAT=$WRK_REPEAT \
  "${PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
  -s "$ROOT/loadtests/verify.lua" "${URL%/}/v1/verify" | grep -v '^wrk-quantiles '
exit "${PIPESTATUS[0]}"
