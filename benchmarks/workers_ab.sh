#!/usr/bin/env bash
# 1 vs 2 workers, ingest only, nothing pinned (wrk and Redis share the cores with the
# gateway): RUNS interleaved runs of `wrk -t1 -c64 -d5s` per setting (default 4), each
# printing req/s and the CPU the gateway's processes (supervisor and workers) used.
# The harness measures the same in every full run (`python -m benchmarks.run`, its
# `workers` group: benchmarks/workers.py); this is the stand-alone command.
# Usage: benchmarks/workers_ab.sh [RUNS]
set -u
cd "$(dirname "$0")/.."
. benchmarks/ab_common.sh
DATA=$(mktemp -d)
ab_redis_start 6398 "" "$DATA"
CFG=$(ab_ingest_config)
URL=http://127.0.0.1:18088/webhooks/inbox
ticks() {  # utime+stime of a process and its children, in clock ticks
  ab_ticks "$1" $(pgrep -P "$1")
}
one() {
  rm -rf "$DATA/gw"; mkdir -p "$DATA/gw"
  GATEWAY_WORKERS=$1 STORE_URL=redis://127.0.0.1:6398/0 GATEWAY_PORT=18088 GATEWAY_ADMIN_PORT=19110 GATEWAY_DATA_DIR=$DATA/gw LOG_LEVEL=warning .venv/bin/python -m gateway run --config "$CFG" > "$DATA/gw.log" 2>&1 &
  local gw=$!
  ab_wait_ready 19110 $gw "$DATA/gw.log"
  wrk -t1 -c64 -d1s -s benchmarks/wrk/post_fresh_key.lua $URL >/dev/null
  local t0; t0=$(ticks $gw)
  local out; out=$(wrk -t1 -c64 -d5s -s benchmarks/wrk/post_fresh_key.lua $URL)
  local t1; t1=$(ticks $gw)
  local req; req=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "workers=$1 req/s=$(echo "$out" | awk '/Requests\/sec/ {print $2}') cores=$(python3 -c "print(round(($t1-$t0)/$(getconf CLK_TCK)/5, 2))") cpu_us_per_req=$(ab_cpu_us $t0 $t1 $req)"
  kill $gw; wait $gw 2>/dev/null
  redis-cli -p 6398 flushall >/dev/null
}
for run in $(seq 1 "${1:-4}"); do one 1; one 2; done
ab_redis_stop 6398; rm -rf "$DATA"
