#!/usr/bin/env bash
# A/B of the forwarder's CPU per delivered event: 100k events prefilled through the
# gateway's own admit script into a fresh redis-server (AOF everysec), then the gateway
# (forwarder on, pinned to CPU 0) drains them into benchmarks/sink_server.py (CPU 1).
# Prints events/s (from /readyz to an empty queue) and the gateway's CPU µs per event.
# Usage: benchmarks/cpu_per_delivery.sh LABEL [EVENTS]   (interleave runs of two versions)
# PROFILE=out.svg records the drain with py-spy (pip install py-spy); PROFILE_FORMAT=raw
# writes collapsed stacks instead.
set -u
cd "$(dirname "$0")/.."
EVENTS=${2:-100000}
PORT=6394; SINK=13094; GWP=18084; ADM=19106
DATA=$(mktemp -d)
taskset -c 1 redis-server --port $PORT --save "" --appendonly yes --appendfsync everysec --daemonize yes --dir "$DATA" --logfile "$DATA/redis.log" --maxmemory-policy noeviction
for i in $(seq 1 50); do redis-cli -p $PORT ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
taskset -c 1 .venv/bin/python -m benchmarks.sink_server --port $SINK > "$DATA/sink.log" 2>&1 &
SINKPID=$!
export STORE_URL=redis://127.0.0.1:$PORT/0 GATEWAY_PORT=$GWP GATEWAY_ADMIN_PORT=$ADM GATEWAY_DATA_DIR=$DATA LOG_LEVEL=warning FORWARD_URL=http://127.0.0.1:$SINK/events
.venv/bin/python - "$EVENTS" <<'PY'
import sys; sys.path.insert(0, '.')
from pathlib import Path
from benchmarks.backlog import gateway_config, prefill
prefill(gateway_config(Path("config/gateway.yaml"), {}), int(sys.argv[1]))
PY
taskset -c 0 .venv/bin/python -m gateway run --config config/gateway.yaml > "$DATA/gw.log" 2>&1 &
GW=$!
for i in $(seq 1 200); do curl -sf localhost:$ADM/readyz >/dev/null && break; sleep 0.01; done
t0=$(awk '{print $14+$15}' /proc/$GW/stat); s0=$(date +%s.%N)
if [ -n "${PROFILE:-}" ]; then .venv/bin/py-spy record -o "$PROFILE" -f "${PROFILE_FORMAT:-flamegraph}" -p $GW -r 250 -d 60 --nonblocking >/dev/null 2>&1 & SPY=$!; fi
until [ "$(curl -s localhost:$SINK/count)" -ge "$EVENTS" ] 2>/dev/null; do sleep 0.01; done
s1=$(date +%s.%N); t1=$(awk '{print $14+$15}' /proc/$GW/stat)
if [ -n "${PROFILE:-}" ]; then kill -INT $SPY; wait $SPY 2>/dev/null; fi
TCK=$(getconf CLK_TCK)
echo "$1 events/s=$(python3 -c "print(round($EVENTS/($s1-$s0)))") cpu_us_per_event=$(python3 -c "print(round(($t1-$t0)/$TCK/$EVENTS*1e6,1))")"
[ -n "${STATS:-}" ] && redis-cli -p $PORT info commandstats | grep -E "xreadgroup|evalsha|xack|xadd"
[ -n "${KEEPLOG:-}" ] && cp "$DATA/gw.log" /tmp/gw-drain.log
kill $GW $SINKPID; wait $GW $SINKPID 2>/dev/null
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1; while redis-cli -p $PORT ping >/dev/null 2>&1; do sleep 0.05; done
rm -rf "$DATA"
