#!/usr/bin/env bash
# A/B of the gateway's CPU per request: ingest only (forwarder off), pinned to CPU 0,
# a fresh redis-server (AOF everysec) and wrk -t1 -c64 on CPU 1; a 2 s warm-up, then 6 s
# measured. Prints req/s and the gateway process's CPU µs per request (from /proc).
# Usage: benchmarks/cpu_per_request.sh LABEL   (interleave runs of the two versions)
# PROFILE=out.svg records the measured 6 s with py-spy (pip install py-spy);
# PROFILE_FORMAT=raw writes collapsed stacks instead. STATS=1 prints Redis' command stats.
set -u
cd "$(dirname "$0")/.."
taskset -c 1 redis-server --port 6393 --save "" --appendonly yes --appendfsync everysec --daemonize yes --dir $(mktemp -d) --logfile /tmp/r6393.log --maxmemory-policy noeviction
for i in $(seq 1 50); do redis-cli -p 6393 ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done; rm -rf /tmp/cpudata
CFG=$(.venv/bin/python - <<'PY'
import sys, tempfile; sys.path.insert(0,'.')
from pathlib import Path
from tests.support.configs import config_variant
print(config_variant(Path(tempfile.mkdtemp()), {"forwarder": {"enabled": False}}))
PY
)
STORE_URL=redis://127.0.0.1:6393/0 GATEWAY_PORT=18082 GATEWAY_ADMIN_PORT=19104 GATEWAY_DATA_DIR=/tmp/cpudata LOG_LEVEL=warning taskset -c 0 .venv/bin/python -m gateway run --config $CFG > /tmp/cpu-gw.log 2>&1 &
GW=$!
for i in $(seq 1 100); do curl -sf localhost:19104/readyz >/dev/null && break; sleep 0.05; done
taskset -c 1 wrk -t1 -c64 -d2s -s benchmarks/wrk/post_fresh_key.lua http://127.0.0.1:18082/webhooks/inbox >/dev/null
t0=$(awk '{print $14+$15}' /proc/$GW/stat)
if [ -n "${PROFILE:-}" ]; then .venv/bin/py-spy record -o "$PROFILE" -f "${PROFILE_FORMAT:-flamegraph}" -p $GW -r 250 -d 6 --nonblocking >/dev/null 2>&1 & SPY=$!; fi
OUT=$(taskset -c 1 wrk -t1 -c64 -d6s -s benchmarks/wrk/post_fresh_key.lua http://127.0.0.1:18082/webhooks/inbox)
t1=$(awk '{print $14+$15}' /proc/$GW/stat)
if [ -n "${PROFILE:-}" ]; then wait $SPY 2>/dev/null; fi
REQ=$(echo "$OUT" | awk '/requests in/ {print $1}')
RPS=$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')
TCK=$(getconf CLK_TCK)
echo "$1 req/s=$RPS cpu_us_per_req=$(python3 -c "print(round(($t1-$t0)/$TCK/$REQ*1e6,1))")"
[ -n "${STATS:-}" ] && redis-cli -p 6393 info commandstats | grep -E "evalsha|xadd"
kill $GW; wait $GW 2>/dev/null; redis-cli -p 6393 shutdown nosave >/dev/null 2>&1; while redis-cli -p 6393 ping >/dev/null 2>&1; do sleep 0.05; done
