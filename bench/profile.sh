#!/usr/bin/env bash
# Where a small ingest request's time goes, on the running stack (`make up`): wrk posts one
# 10-reading JSON batch over 8 connections through nginx while perf samples every process,
# then ingest-api alone with call stacks. Prints the CPU split by process and ingest-api's
# heaviest call paths; bench/profile.md keeps a run's output and what was done about it.
#   bench/profile.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null
set -a; source .plantline/demo.env; set +a
TOKEN=$(curl -fsS -u "$GATEWAY_CLIENT_ID:$GATEWAY_CLIENT_SECRET" -d grant_type=client_credentials \
  http://127.0.0.1:8080/api/v1/auth/token | python3 -c 'import sys, json; print(json.load(sys.stdin)["access_token"])')
python3 - "$OUT/body.json" <<'PY'
import json, sys, datetime
now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)
ids = ["0b6f1c3e-8a51-4c7e-9a01-00000000000%d" % i for i in (1, 2)]
stamp = lambda i: (now - datetime.timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
json.dump({"gateway_id": "profile", "timestamp": stamp(0), "batch": [
    {"machine_id": m, "readings": [{"timestamp": stamp(i), "temperature": 60.0 + i, "pressure": 100.0,
     "speed": 1500.0} for i in range(k, 10, 2)]} for k, m in enumerate(ids)]}, open(sys.argv[1], "w"))
PY
cat > "$OUT/post.lua" <<LUA
wrk.method = "POST"
local f = io.open("$OUT/body.json", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
load() { wrk -t2 -c8 -d"$1"s -s "$OUT/post.lua" http://127.0.0.1:8080/api/v1/data/ingest > "$OUT/wrk-$2.txt"; }
load $((SECS + 3)) all & sleep 2
perf record -a -F 499 -o "$OUT/all.data" -- sleep "$SECS" 2>/dev/null; wait
echo "== CPU by process, $(grep Requests/sec "$OUT/wrk-all.txt")"
perf report -i "$OUT/all.data" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
load $((SECS + 3)) ingest & sleep 2
perf record -p "$(cat .plantline/run/ingest-api.pid)" --call-graph dwarf,16384 -F 199 \
  -o "$OUT/ingest.data" -- sleep "$SECS" 2>/dev/null; wait
echo "== ingest-api, inclusive share of its samples by function"
perf report -i "$OUT/ingest.data" --children --sort sym --stdio -g none 2>/dev/null \
  | grep -E 'plantline|redis::aio|actix_http::h1|serde_json::de|reqwest|hyper::proto|writev|tcp_sendmsg|__memmove' \
  | head -30
