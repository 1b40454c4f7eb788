#!/usr/bin/env bash
# The Quick start: `./dev.sh run` installs and runs the gateway, `./dev.sh test`
# runs the whole test suite. Both work on a fresh Debian or Ubuntu machine with
# Python 3.11+; what is missing (python3-venv, redis-server) is installed with
# apt-get, through sudo when not root.
#
# `./dev.sh run` uses the embedded SQLite store under GATEWAY_DATA_DIR unless
# STORE_URL says otherwise: a newcomer needs no Redis. With STORE_URL=redis://...
# it starts a local redis-server when nothing answers there.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '[dev.sh] %s\n' "$*" >&2; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing $* with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_redis_server() {
  command -v redis-server >/dev/null || apt_install redis-server
}

ensure_venv() {
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras}"
  compile_sources .
}

# Write the gateway's bytecode (__pycache__) now. An editable install leaves the sources
# uncompiled, and with PYTHONDONTWRITEBYTECODE=1 (set on this project's CI machines, and
# in many images) every start compiled all of gateway/ again: exec to /readyz medians of
# 10 starts 0.394-0.424 s without bytecode against 0.324-0.352 s with (2026-12-08,
# `python -m benchmarks.footprint --events 20000`, two runs each way). A wheel install (the
# image) compiles at install time. A stale file is harmless: Python checks each source's
# mtime and size and compiles the source instead.
compile_sources() {
  (cd "$1" && .venv/bin/python -m compileall -q gateway >/dev/null)
}

# Start a local redis-server (AOF on, noeviction) when nothing answers at
# STORE_URL and STORE_URL points at this machine. It says so, and keeps its
# files under GATEWAY_DATA_DIR/redis.
ensure_store() {
  local url="${STORE_URL:-redis://127.0.0.1:6379/0}"
  case "$url" in sqlite:*)  # the embedded store needs no server
    say "store: the embedded SQLite file ${url#sqlite:///} (STORE_URL=redis://host:port/0 for Redis)"
    return ;;
  esac
  if .venv/bin/python - "$url" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
  then return; fi
  local hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
  local host="${hostport%%:*}" port="${hostport##*:}"
  [ "$port" != "$hostport" ] || port=6379
  case "$host" in
    127.0.0.1|localhost) ;;
    *) say "nothing answers at $url; start Redis there first"; exit 1 ;;
  esac
  local dir="${GATEWAY_DATA_DIR:-./data}/redis"
  mkdir -p "$dir"
  say "no Redis answers at $url: starting a local redis-server on port $port (AOF on, noeviction, files in $dir)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$(cd "$dir" && pwd)" --appendonly yes \
    --appendfsync everysec --maxmemory-policy noeviction --daemonize yes \
    --logfile "$(cd "$dir" && pwd)/redis.log" >/dev/null
}

# Make DIR a copy of the checkout with mypyc-modules.txt compiled: the compiled wheel is
# built from it as the container image builds it (pip, GATEWAY_MYPYC=1, setup.py and the
# build requirements of build_support/backend.py: mypy, the dependencies; needs a C
# compiler and the Python headers), and its compiled modules are put beside their sources
# in the copy. The copy holds the files git knows of (tracked or not ignored) as they are
# now and uses this .venv; it is for tests and measurements, so no compiled module ever
# sits beside the sources of the checkout, where it would shadow later edits.
compiled_copy() {
  local dir="$1" started
  git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -T - -c 2>/dev/null | tar -x -C "$dir"
  ln -s "$PWD/.venv" "$dir/.venv"
  started=$(date +%s)
  (cd "$dir" && GATEWAY_MYPYC=1 .venv/bin/python -m pip wheel --no-deps -w dist . > mypyc.log 2>&1) \
    || { tail -n 30 "$dir/mypyc.log" >&2; say "building the compiled wheel failed"; exit 1; }
  (cd "$dir" && .venv/bin/python - <<'PY'
import glob, zipfile
(wheel,) = glob.glob("dist/*.whl")
with zipfile.ZipFile(wheel) as built:
    built.extractall(".", [name for name in built.namelist() if name.endswith(".so")])
import gateway.build as b
assert b.kind() == "mypyc", b.kind()
PY
  )
  compile_sources "$dir"  # the modules mypyc leaves interpreted
  say "compiled $(grep -cv '^#' mypyc-modules.txt) modules with mypyc in $dir in $(( $(date +%s) - started )) s"
}

# Run pytest on a throwaway compiled copy (compiled_copy), deleted afterwards.
test_compiled() {
  copy="$(mktemp -d)"  # global: the EXIT trap runs after the function returned
  trap 'rm -rf "$copy"' EXIT
  compiled_copy "$copy"
  local status=0
  (cd "$copy" && .venv/bin/python -m pytest -p no:cacheprovider "$@") || status=$?
  return "$status"
}

case "${1:-}" in
  run)
    shift
    export STORE_URL="${STORE_URL:-sqlite:///${GATEWAY_DATA_DIR:-./data}/gateway.db}"
    case "$STORE_URL" in sqlite:*) ;; *) ensure_redis_server ;; esac
    ensure_venv ""
    ensure_store
    exec .venv/bin/webhook-gateway run --config config/gateway.yaml "$@"
    ;;
  test)
    shift
    ensure_redis_server
    ensure_venv "[test]"
    .venv/bin/ruff check gateway tests benchmarks build_support setup.py
    .venv/bin/ruff format --check gateway tests benchmarks build_support setup.py
    .venv/bin/mypy
    exec .venv/bin/python -m pytest "$@"
    ;;
  test-compiled)
    shift
    ensure_redis_server
    ensure_venv "[test]"
    test_compiled "$@"
    ;;
  compiled-copy)  # DIR (empty): what benchmarks/mypyc_ab.sh measures
    # DEV_VENV_READY=1: the venv was just installed by the caller, which may be running
    # tests from it meanwhile (.ci/run): a second pip install would rewrite it under them.
    [ "${DEV_VENV_READY:-0}" = 1 ] || ensure_venv "[test]"
    compiled_copy "$2"
    ;;
  *)
    echo "usage: ./dev.sh run | ./dev.sh test [pytest args] | ./dev.sh test-compiled [pytest args]" >&2
    exit 2
    ;;
esac
