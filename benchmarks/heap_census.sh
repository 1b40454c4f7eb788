#!/usr/bin/env bash
# Does anything in the gateway's heap grow with the events? The gateway (forwarder on,
# delivering to benchmarks/sink_server.py; pinned to CPU 0, Redis with AOF, the sink and
# wrk on CPU 1) under 10 s rounds of `WRK_PAD_TO=1024 wrk -t1 -c64` until FIRST events
# are admitted, a heap census (benchmarks/heap_census.py), more rounds until LAST events,
# a second census. Prints the events and VmRSS after each round, then the census totals
# and the types that grew most. Usage: benchmarks/heap_census.sh [FIRST] [LAST]
set -u
cd "$(dirname "$0")/.."
. benchmarks/ab_common.sh
FIRST=${1:-200000}; LAST=${2:-800000}
DATA=$(mktemp -d)
ab_redis_start 6399 1 "$DATA"
taskset -c 1 .venv/bin/python -m benchmarks.sink_server --port 18190 > "$DATA/sink.log" 2>&1 &
SINK=$!
STORE_URL=redis://127.0.0.1:6399/0 FORWARD_URL=http://127.0.0.1:18190/events DEDUP_TTL=60s GATEWAY_PORT=18089 GATEWAY_ADMIN_PORT=19111 GATEWAY_DATA_DIR=$DATA/gw LOG_LEVEL=warning taskset -c 0 .venv/bin/python -m benchmarks.heap_census "$DATA" -- run --config config/gateway.yaml > "$DATA/srv.log" 2>&1 &
SRV=$!
ab_wait_ready 19111 $SRV "$DATA/srv.log"
admitted() { .venv/bin/python -c "from benchmarks.footprint import admitted; print(admitted(19111))"; }
census_after() { kill -USR1 $SRV; for i in $(seq 1 300); do [ -f "$DATA/census$1.txt" ] && return; sleep 0.1; done; ab_die "no census $1" "$DATA/srv.log"; }
taken=0
while [ $taken -lt 2 ]; do
  WRK_PAD_TO=1024 taskset -c 1 wrk -t1 -c64 -d10s -s benchmarks/wrk/post_fresh_key.lua http://127.0.0.1:18089/webhooks/inbox > /dev/null
  n=$(admitted); echo "$n events, VmRSS $(awk '/VmRSS/ {print $2}' /proc/$SRV/status) kB"
  # One census per round at most, so the two are always a round or more apart.
  if [ $taken = 0 ] && [ "$n" -ge "$FIRST" ]; then census_after 1; taken=1; echo "census 1"
  elif [ $taken = 1 ] && [ "$n" -ge "$LAST" ]; then census_after 2; taken=2; echo "census 2"; fi
done
.venv/bin/python - "$DATA/census1.txt" "$DATA/census2.txt" <<'PY'
import sys
def load(path):
    return {name: int(size) for size, name in (l.split(" ", 1) for l in open(path).read().splitlines())}
a, b = load(sys.argv[1]), load(sys.argv[2])
print(f"tracked objects' sizes: {sum(a.values()):,} -> {sum(b.values()):,} bytes")
for grew, name in sorted(((b.get(k, 0) - a.get(k, 0), k) for k in a.keys() | b.keys()), reverse=True)[:5]:
    print(f"  {name}: {a.get(name, 0):,} -> {b.get(name, 0):,} ({grew:+,})")
PY
kill $SRV $SINK; wait $SRV $SINK 2>/dev/null; ab_redis_stop 6399; rm -rf "$DATA"
