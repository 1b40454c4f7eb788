#!/usr/bin/env bash
# 1 vs 2 workers, ingest only, nothing pinned (wrk and Redis share the cores with the
# gateway): RUNS interleaved runs of `wrk -t1 -c64 -d5s` per setting (default 4), each
# printing req/s and the CPU the gateway's processes (supervisor and workers) used.
# Usage: benchmarks/workers_ab.sh [RUNS]
set -u
cd "$(dirname "$0")/.."
DATA=$(mktemp -d)
redis-server --port 6398 --save "" --appendonly yes --appendfsync everysec --daemonize yes --dir "$DATA" --logfile "$DATA/redis.log" --maxmemory-policy noeviction
for i in $(seq 1 50); do redis-cli -p 6398 ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
CFG=$(.venv/bin/python - <<'PY'
import sys, tempfile; sys.path.insert(0, '.')
from pathlib import Path
from tests.support.configs import config_variant
print(config_variant(Path(tempfile.mkdtemp()), {"forwarder": {"enabled": False}}))
PY
)
URL=http://127.0.0.1:18088/webhooks/inbox
ticks() {  # utime+stime of a process and its children, in clock ticks
  local total=0
  for pid in $1 $(pgrep -P "$1"); do
    total=$((total + $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $total
}
one() {
  rm -rf "$DATA/gw"; mkdir -p "$DATA/gw"
  GATEWAY_WORKERS=$1 STORE_URL=redis://127.0.0.1:6398/0 GATEWAY_PORT=18088 GATEWAY_ADMIN_PORT=19110 GATEWAY_DATA_DIR=$DATA/gw LOG_LEVEL=warning .venv/bin/python -m gateway run --config "$CFG" > "$DATA/gw.log" 2>&1 &
  local gw=$!
  for i in $(seq 1 200); do curl -sf localhost:19110/readyz >/dev/null && break; sleep 0.05; done
  wrk -t1 -c64 -d1s -s benchmarks/wrk/post_fresh_key.lua $URL >/dev/null
  local t0; t0=$(ticks $gw)
  local out; out=$(wrk -t1 -c64 -d5s -s benchmarks/wrk/post_fresh_key.lua $URL)
  local t1; t1=$(ticks $gw)
  local req; req=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "workers=$1 req/s=$(echo "$out" | awk '/Requests\/sec/ {print $2}') cores=$(python3 -c "print(round(($t1-$t0)/$(getconf CLK_TCK)/5, 2))") cpu_us_per_req=$(python3 -c "print(round(($t1-$t0)/$(getconf CLK_TCK)/$req*1e6, 1))")"
  kill $gw; wait $gw 2>/dev/null
  redis-cli -p 6398 flushall >/dev/null
}
for run in $(seq 1 "${1:-4}"); do one 1; one 2; done
redis-cli -p 6398 shutdown nosave >/dev/null 2>&1; rm -rf "$DATA"
