#!/usr/bin/env bash
# Where the p99 at half the maximum rate comes from: the gateway (ingest only,
# pinned to CPU 0) paced at RATE req/s (default 17000) by wrk -c64 on CPU 1, once
# against a redis-server with AOF everysec and once with AOF off (both on CPU 1).
# Prints wrk's p50 and p99 per Redis setting. Usage: benchmarks/tail_aof.sh [RUNS]
set -u
cd "$(dirname "$0")/.."
. benchmarks/ab_common.sh
CFG=$(ab_ingest_config)
URL=http://127.0.0.1:18086/webhooks/inbox
one() {
  local label=$1; shift
  local data; data=$(mktemp -d)
  ab_redis_start 6396 1 "$data" "$@"
  STORE_URL=redis://127.0.0.1:6396/0 GATEWAY_PORT=18086 GATEWAY_ADMIN_PORT=19108 GATEWAY_DATA_DIR=$data LOG_LEVEL=warning taskset -c 0 .venv/bin/python -m gateway run --config "$CFG" > "$data/gw.log" 2>&1 &
  local gw=$!
  ab_wait_ready 19108 $gw "$data/gw.log"
  taskset -c 1 wrk -t1 -c64 -d2s -s benchmarks/wrk/post_fresh_key.lua $URL >/dev/null
  local out; out=$(WRK_PAD_TO=1024 WRK_RATE=${RATE:-17000} WRK_THREADS=1 taskset -c 1 wrk -t1 -c64 -d10s --latency -s benchmarks/wrk/post_fresh_key.lua $URL)
  echo "$label p50=$(echo "$out" | awk '$1=="50%" {print $2}') p99=$(echo "$out" | awk '$1=="99%" {print $2}') $(echo "$out" | awk '/Requests\/sec/ {print "req/s=" $2}')"
  kill $gw; wait $gw 2>/dev/null
  ab_redis_stop 6396
  rm -rf "$data"
}
for run in $(seq 1 "${1:-2}"); do
  one "aof-everysec" --appendonly yes --appendfsync everysec
  one "aof-off" --appendonly no
done
