#!/usr/bin/env bash
# Does compiling with mypyc pay? An A/B on one copy of the checkout as it is (`./dev.sh
# compiled-copy`: the modules of mypyc-modules.txt compiled in place with mypyc, which
# ships with mypy, in the test extras; needs gcc and the Python headers), against the very
# same files interpreted (the compiled .so files renamed away between runs), interleaved,
# the order alternating per pair.
#   ingest: benchmarks/cpu_split.sh gateway (the gateway's CPU µs per request)
#   drain:  benchmarks/cpu_per_delivery.sh (its CPU µs per event)
# Prints each run, then the medians. The copy runs on this checkout's .venv (`python -m
# gateway` from the copy's root imports the copy's gateway), and is deleted at the end.
# Commit first: the numbers should name the commit they measured.
# The container image ships the compiled build: see "mypyc" in the README's performance notes.
# Usage: benchmarks/mypyc_ab.sh ingest|drain [PAIRS]   (default 5)
set -u
cd "$(dirname "$0")/.."
. benchmarks/ab_common.sh
ROOT=$PWD
case "${1:-}" in ingest|drain) ;; *) echo "usage: $0 ingest|drain [PAIRS]" >&2; exit 2 ;; esac
PAIRS=${2:-5}
if [ "$1" = drain ]; then
  RUN=(benchmarks/cpu_per_delivery.sh); FIELD=cpu_us_per_event
else
  RUN=(benchmarks/cpu_split.sh gateway); FIELD=server_us
fi
COPY=$(mktemp -d)
./dev.sh compiled-copy "$COPY" || ab_die "no compiled copy"
cd "$COPY"
mapfile -t SOS < <(find . -name '*.so' -not -path './build/*' -not -path './.venv/*')
loaded() {  # the build the copy imports (gateway.build): mypyc or interpreted
  .venv/bin/python -c 'import gateway.build as b; print(b.kind())'
}
as_built() {  # compiled|interpreted
  local f
  for f in "${SOS[@]}"; do
    if [ "$1" = compiled ]; then [ -e "$f.off" ] && mv "$f.off" "$f"; else [ -e "$f" ] && mv "$f" "$f.off"; fi
  done
  local want=mypyc; [ "$1" = interpreted ] && want=interpreted
  [ "$(loaded)" = "$want" ] || ab_die "the $1 run would import the $(loaded) gateway"
}
: > "$COPY/runs.txt"
for i in $(seq 1 "$PAIRS"); do
  order="compiled interpreted"; [ $((i % 2)) = 0 ] && order="interpreted compiled"
  for build in $order; do
    as_built "$build"
    line=$("${RUN[@]}" "$build" 2>&1 | grep -E "$FIELD=" | head -1)
    [ -n "$line" ] || ab_die "pair $i: the $build run printed no $FIELD"
    echo "pair $i $build: $line"; echo "$build $line" >> "$COPY/runs.txt"
  done
done
.venv/bin/python - "$COPY/runs.txt" "$FIELD" <<'PY'
import re, statistics, sys
runs, field = open(sys.argv[1]).read().splitlines(), sys.argv[2]
values = {"compiled": [], "interpreted": []}
for line in runs:
    build = line.split()[0]
    values[build].append(float(re.search(field + r"=([\d.]+)", line)[1]))
pairs = list(zip(values["compiled"], values["interpreted"]))
saved = [i - c for c, i in pairs]
print(f"median {field}: compiled {statistics.median(values['compiled']):.1f},"
      f" interpreted {statistics.median(values['interpreted']):.1f};"
      f" saved per pair: median {statistics.median(saved):.1f},"
      f" compiled lower in {sum(s > 0 for s in saved)} of {len(saved)} pairs")
PY
cd "$ROOT"; rm -rf "$COPY"
