# What the A/B scripts (cpu_per_request.sh, cpu_per_delivery.sh, cpu_split.sh, tail_aof.sh,
# workers_ab.sh) share. Sourced, from the repo's root, after `set -u`:
#   cd "$(dirname "$0")/.." && . benchmarks/ab_common.sh
# A step that cannot go on (no PONG, no /readyz 200) stops the script through ab_die:
# a message and the log's last lines on stderr, its background jobs and its Redis
# stopped, exit 1; the temp files stay for a look.

AB_REDIS_PORT=""     # the redis-server ab_redis_start started, until ab_redis_stop
AB_READY_TIMEOUT_S=30 # as the harness' READY_TIMEOUT_S (benchmarks/bench.py)

# ab_die MESSAGE [LOG]
ab_die() {
  echo "${0##*/}: $1" >&2
  if [ -n "${2:-}" ]; then echo "--- last lines of $2:" >&2; tail -n 15 "$2" >&2; fi
  local jobs; jobs=$(jobs -p)
  if [ -n "$jobs" ]; then kill $jobs 2>/dev/null; wait $jobs 2>/dev/null; fi
  [ -n "$AB_REDIS_PORT" ] && ab_redis_stop "$AB_REDIS_PORT"
  exit 1
}

# ab_ingest_config: prints the path of a copy of config/gateway.yaml with the forwarder off.
ab_ingest_config() {
  .venv/bin/python - <<'PY'
import sys, tempfile; sys.path.insert(0, '.')
from pathlib import Path
from tests.support.configs import config_variant
print(config_variant(Path(tempfile.mkdtemp()), {"forwarder": {"enabled": False}}))
PY
}

# ab_redis_start PORT CPUS DIR [REDIS-ARGS...]: a daemonized redis-server (no RDB saves,
# noeviction, its log in DIR/redis.log) pinned to CPUS with taskset ("" for not pinned),
# with AOF everysec unless REDIS-ARGS say otherwise; returns once it answers PONG.
ab_redis_start() {
  local port=$1 cpus=$2 dir=$3; shift 3
  [ $# -gt 0 ] || set -- --appendonly yes --appendfsync everysec
  local argv=(redis-server --port "$port" --save "" "$@" --daemonize yes --dir "$dir" --logfile "$dir/redis.log" --maxmemory-policy noeviction)
  if [ -n "$cpus" ]; then taskset -c "$cpus" "${argv[@]}"; else "${argv[@]}"; fi
  AB_REDIS_PORT=$port
  local i
  for i in $(seq 1 200); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  ab_die "redis-server on port $port: no PONG within 10 s" "$dir/redis.log"
}

# ab_redis_stop PORT: shutdown without saving; returns once it no longer answers.
ab_redis_stop() {
  redis-cli -p "$1" shutdown nosave >/dev/null 2>&1
  while redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.05; done
  [ "$1" = "$AB_REDIS_PORT" ] && AB_REDIS_PORT=""
  return 0
}

# ab_wait_ready ADMIN-PORT PID LOG: polls the gateway's /readyz every 10 ms until it
# answers 200; dies if PID exits first or it is not ready within AB_READY_TIMEOUT_S.
ab_wait_ready() {
  local admin=$1 pid=$2 log=$3 i
  for i in $(seq 1 $((AB_READY_TIMEOUT_S * 100))); do
    curl -sf "localhost:$admin/readyz" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || ab_die "the gateway exited before /readyz answered 200" "$log"
    sleep 0.01
  done
  ab_die "the gateway's /readyz (port $admin) not 200 within $AB_READY_TIMEOUT_S s" "$log"
}

# ab_ticks PID...: utime+stime of these processes together so far, in clock ticks
# (a process already gone counts 0).
ab_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $total
}

# ab_cpu_us T0 T1 N: CPU µs per unit for T1-T0 ticks spent on N units, to 0.1.
ab_cpu_us() {
  python3 -c "print(round(($2-$1)/$(getconf CLK_TCK)/$3*1e6,1))"
}

# ab_profile_start PID SECONDS: with PROFILE=out.svg, py-spy records PID (250 Hz) for at
# most SECONDS in the background; PROFILE_FORMAT=raw writes collapsed stacks instead.
# PROFILE_TOOL=perf samples with Linux perf instead (cpu-clock, 999 Hz, the process's own
# CPU only; PROFILE is then perf's data file, for `perf report`): the mypyc-compiled
# modules' functions are C functions, invisible to py-spy's Python stacks, and py-spy
# --native pauses the process per sample (13k req/s fell to 479 under it).
# STRACE=out.txt instead counts the system calls of PID and its threads (strace -c -f)
# over the same span: strace slows the process, so read its counts, not its times.
ab_profile_start() {
  if [ -n "${STRACE:-}" ]; then
    strace -c -f -p "$1" -o "$STRACE" 2>/dev/null &
    AB_SPY=$!
    return 0
  fi
  [ -n "${PROFILE:-}" ] || return 0
  if [ "${PROFILE_TOOL:-py-spy}" = perf ]; then
    perf record -q -e cpu-clock -F 999 -p "$1" -o "$PROFILE" -- sleep "$2" >/dev/null 2>&1 &
  else
    .venv/bin/py-spy record -o "$PROFILE" -f "${PROFILE_FORMAT:-flamegraph}" -p "$1" -r 250 -d "$2" --nonblocking >/dev/null 2>&1 &
  fi
  AB_SPY=$!
}

# ab_profile_end [now]: waits for the recording to end; with "now", ends it first
# (SIGINT: py-spy writes what it has).
ab_profile_end() {
  [ -n "${PROFILE:-}${STRACE:-}" ] || return 0
  { [ "${1:-}" = now ] || [ -n "${STRACE:-}" ]; } && kill -INT "$AB_SPY"
  wait "$AB_SPY" 2>/dev/null
  return 0
}
