#!/usr/bin/env bash
# Where a request's CPU goes, per process: the server under test (CPU 0), Redis and wrk
# (CPU 1), for the gateway (ingest only) or the harness' bare_admit, under
# `WRK_PAD_TO=1024 wrk -t1 -c64` (2 s warm-up, 6 s measured; the harness' throughput load;
# PAD=65536 for its payload_64k body instead).
# Prints req/s and CPU µs per request of each (from /proc; wrk's read while it runs, so
# approximate), then Redis' EVALSHA stats (calls, µs per call).
# Usage: benchmarks/cpu_split.sh gateway|bare_admit   (interleave the two)
set -u
cd "$(dirname "$0")/.."
. benchmarks/ab_common.sh
case "${1:-}" in gateway|bare_admit) ;; *) echo "usage: $0 gateway|bare_admit" >&2; exit 2 ;; esac
DATA=$(mktemp -d)
ab_redis_start 6395 1 "$DATA"
RPID=$(redis-cli -p 6395 info server | awk -F: '/process_id/ {print $2}' | tr -d '\r')
if [ "$1" = gateway ]; then
  CFG=$(ab_ingest_config)
  STORE_URL=redis://127.0.0.1:6395/0 GATEWAY_PORT=18085 GATEWAY_ADMIN_PORT=19107 GATEWAY_DATA_DIR=$DATA/gw LOG_LEVEL=warning taskset -c 0 .venv/bin/python -m gateway run --config $CFG > $DATA/srv.log 2>&1 &
  SRV=$!; ab_wait_ready 19107 $SRV $DATA/srv.log; URL=http://127.0.0.1:18085/webhooks/inbox
else
  taskset -c 0 .venv/bin/python -m benchmarks.bare_redis --mode admit --port 18085 --store-url redis://127.0.0.1:6395/0 > $DATA/srv.log 2>&1 &
  SRV=$!; URL=http://127.0.0.1:18085/
  for i in $(seq 1 3000); do curl -s -o /dev/null "$URL" && break; sleep 0.01; done
  curl -s -o /dev/null "$URL" || ab_die "bare_admit did not answer within 30 s" "$DATA/srv.log"
fi
WRK_PAD_TO=${PAD:-1024} taskset -c 1 wrk -t1 -c64 -d2s -s benchmarks/wrk/post_fresh_key.lua $URL >/dev/null
s0=$(ab_ticks $SRV); r0=$(ab_ticks $RPID)
WRK_PAD_TO=${PAD:-1024} taskset -c 1 wrk -t1 -c64 -d6s -s benchmarks/wrk/post_fresh_key.lua $URL > $DATA/wrk.out &
W=$!; sleep 0.2; w0=$(ab_ticks $W)
# wrk is gone once it exits: its last reading while alive stands for its total.
w1=$w0; while kill -0 $W 2>/dev/null; do w1=$(ab_ticks $W); sleep 0.05; done
s1=$(ab_ticks $SRV); r1=$(ab_ticks $RPID)
REQ=$(awk '/requests in/ {print $1}' $DATA/wrk.out); RPS=$(awk '/Requests\/sec/ {print $2}' $DATA/wrk.out)
echo "$1 req/s=$RPS server_us=$(ab_cpu_us $s0 $s1 $REQ) redis_us=$(ab_cpu_us $r0 $r1 $REQ) wrk_us~=$(ab_cpu_us $w0 $w1 $REQ)"
redis-cli -p 6395 info commandstats | grep -E "evalsha" | sed 's/^/  /'
kill $SRV; wait $SRV 2>/dev/null; ab_redis_stop 6395; rm -rf "$DATA"
