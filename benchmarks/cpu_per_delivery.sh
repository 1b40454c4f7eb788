#!/usr/bin/env bash
# A/B of the forwarder's CPU per delivered event: 100k events prefilled through the
# gateway's own admit script into a fresh redis-server (AOF everysec), then the gateway
# (forwarder on, pinned to CPU 0) drains them into benchmarks/sink_server.py (CPU 1).
# Prints events/s (from /readyz to an empty queue) and the gateway's CPU µs per event.
# Usage: benchmarks/cpu_per_delivery.sh LABEL [EVENTS]   (interleave runs of two versions)
# PROFILE=out.svg records the drain with py-spy (pip install py-spy); PROFILE_FORMAT=raw
# writes collapsed stacks instead.
# STRACE=out.txt counts its system calls instead (strace -c -f; ab_common.sh).
set -u
cd "$(dirname "$0")/.."
. benchmarks/ab_common.sh
EVENTS=${2:-100000}
PORT=6394; SINK=13094; GWP=18084; ADM=19106
DATA=$(mktemp -d)
ab_redis_start $PORT 1 "$DATA"
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
ab_wait_ready $ADM $GW "$DATA/gw.log"
t0=$(ab_ticks $GW); s0=$(date +%s.%N)
ab_profile_start $GW 60
until [ "$(curl -s localhost:$SINK/count)" -ge "$EVENTS" ] 2>/dev/null; do sleep 0.01; done
s1=$(date +%s.%N); t1=$(ab_ticks $GW)
ab_profile_end now
echo "$1 events/s=$(python3 -c "print(round($EVENTS/($s1-$s0)))") cpu_us_per_event=$(ab_cpu_us $t0 $t1 $EVENTS)"
[ -n "${STATS:-}" ] && redis-cli -p $PORT info commandstats | grep -E "xreadgroup|evalsha|xack|xadd"
[ -n "${KEEPLOG:-}" ] && cp "$DATA/gw.log" /tmp/gw-drain.log
kill $GW $SINKPID; wait $GW $SINKPID 2>/dev/null
ab_redis_stop $PORT
rm -rf "$DATA"
