#!/usr/bin/env bash
# A/B of the gateway's CPU per request: ingest only (forwarder off), pinned to CPU 0,
# a fresh redis-server (AOF everysec) and wrk -t1 -c64 on CPU 1; a 2 s warm-up, then 6 s
# measured. Prints req/s and the gateway process's CPU µs per request (from /proc).
# Usage: benchmarks/cpu_per_request.sh LABEL   (interleave runs of the two versions)
# PROFILE=out.svg records the measured 6 s with py-spy (pip install py-spy);
# PROFILE_FORMAT=raw writes collapsed stacks instead. STATS=1 prints Redis' command stats.
# STRACE=out.txt counts the system calls of the measured 6 s instead (strace -c -f).
set -u
cd "$(dirname "$0")/.."
. benchmarks/ab_common.sh
DATA=$(mktemp -d)
ab_redis_start 6393 1 "$DATA"; rm -rf /tmp/cpudata
CFG=$(ab_ingest_config)
STORE_URL=redis://127.0.0.1:6393/0 GATEWAY_PORT=18082 GATEWAY_ADMIN_PORT=19104 GATEWAY_DATA_DIR=/tmp/cpudata LOG_LEVEL=warning taskset -c 0 .venv/bin/python -m gateway run --config $CFG > /tmp/cpu-gw.log 2>&1 &
GW=$!
ab_wait_ready 19104 $GW /tmp/cpu-gw.log
taskset -c 1 wrk -t1 -c64 -d2s -s benchmarks/wrk/post_fresh_key.lua http://127.0.0.1:18082/webhooks/inbox >/dev/null
t0=$(ab_ticks $GW)
ab_profile_start $GW 6
OUT=$(taskset -c 1 wrk -t1 -c64 -d6s -s benchmarks/wrk/post_fresh_key.lua http://127.0.0.1:18082/webhooks/inbox)
t1=$(ab_ticks $GW)
ab_profile_end
REQ=$(echo "$OUT" | awk '/requests in/ {print $1}')
RPS=$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')
echo "$1 req/s=$RPS cpu_us_per_req=$(ab_cpu_us $t0 $t1 $REQ)"
[ -n "${STATS:-}" ] && redis-cli -p 6393 info commandstats | grep -E "evalsha|xadd"
kill $GW; wait $GW 2>/dev/null; ab_redis_stop 6393; rm -rf "$DATA"
