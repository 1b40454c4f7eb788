"""The benchmark harness keeps working: its wrk parser, and a smoke run end to end."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.machine import plan_pinning
from benchmarks.wrkout import SocketErrors, WrkParseError, parse_wrk_output

ROOT = Path(__file__).resolve().parents[2]

# Real wrk 4.1.0 output: benchmarks.bare_server pinned to CPU 0, and
# `taskset -c 1 wrk -t1 -c64 -d3s --latency -s benchmarks/wrk/post_fresh_key.lua URL`.
WRK_CLEAN = """\
Running 3s test @ http://127.0.0.1:18082/webhooks/inbox
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   200.25us   97.08us   2.49ms   88.51%
    Req/Sec   185.02k    23.23k  206.91k    86.67%
  Latency Distribution
     50%  164.00us
     75%  244.00us
     90%  302.00us
     99%  456.00us
  551443 requests in 3.00s, 48.38MB read
Requests/sec: 183615.48
Transfer/sec:     16.11MB
"""

# Real wrk 4.1.0 output against a test server that answered every 10th request 503 and
# reset a connection every 5000th: the two lines wrk prints only when they are non-zero.
WRK_WITH_ERRORS = """\
Running 2s test @ http://127.0.0.1:18083/webhooks/inbox
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   194.86us  402.89us   5.27ms   94.53%
    Req/Sec    65.88k    15.60k   86.73k    55.00%
  Latency Distribution
     50%  123.00us
     75%  145.00us
     90%  243.00us
     99%    2.42ms
  261827 requests in 2.00s, 9.91MB read
  Socket errors: connect 0, read 52, write 0, timeout 0
  Non-2xx or 3xx responses: 26135
Requests/sec: 130840.95
Transfer/sec:      4.95MB
"""


def test_parser_reads_rate_percentiles_and_counts_of_a_clean_run() -> None:
    result = parse_wrk_output(WRK_CLEAN)

    assert result.rps == 183615.48
    assert result.requests == 551443
    assert result.duration_s == 3.0
    assert (result.p50_us, result.p75_us, result.p90_us, result.p99_us) == (164, 244, 302, 456)
    assert result.non2xx == 0
    assert result.socket_errors == SocketErrors()
    assert result.clean


def test_parser_reads_non_2xx_and_socket_errors() -> None:
    result = parse_wrk_output(WRK_WITH_ERRORS)

    assert result.non2xx == 26135
    assert result.socket_errors == SocketErrors(connect=0, read=52, write=0, timeout=0)
    assert result.successes == 261827 - 26135
    assert result.p99_us == 2420.0  # "2.42ms"
    assert not result.clean


@pytest.mark.parametrize(
    ("text", "microseconds"),
    [("456.00us", 456.0), ("2.31ms", 2310.0), ("1.50s", 1_500_000.0), ("2.00m", 120_000_000.0)],
)
def test_parser_converts_every_wrk_time_unit_to_microseconds(
    text: str, microseconds: float
) -> None:
    output = WRK_CLEAN.replace("99%  456.00us", f"99%  {text}")

    assert parse_wrk_output(output).p99_us == microseconds


@pytest.mark.parametrize(
    "output",
    [
        "unable to connect to 127.0.0.1:18099 Connection refused\n",
        WRK_CLEAN.replace("  Latency Distribution", "").replace("     90%", "     91%"),
        WRK_CLEAN.split("Requests/sec:")[0],
    ],
    ids=["wrk-failed", "no-latency-distribution", "truncated"],
)
def test_parser_rejects_anything_but_a_complete_report(output: str) -> None:
    with pytest.raises(WrkParseError):
        parse_wrk_output(output)


def test_pinning_gives_the_server_one_core_and_the_load_the_rest() -> None:
    pinning = plan_pinning({3, 0, 1, 2}, have_taskset=True)

    assert pinning.server(["srv"]) == ["taskset", "-c", "0", "srv"]
    assert pinning.load(["wrk"]) == ["taskset", "-c", "1,2,3", "wrk"]
    assert pinning.wrk_threads == 2


def test_one_core_is_not_pinned_and_says_so() -> None:
    pinning = plan_pinning({5}, have_taskset=True)

    assert not pinning.pinned
    assert pinning.server(["srv"]) == ["srv"]
    assert pinning.wrk_threads == 1
    assert "not pinned" in pinning.note


def test_wrk_script_embeds_the_provider_seed_byte_for_byte() -> None:
    script = (ROOT / "benchmarks" / "wrk" / "post_fresh_key.lua").read_text()
    seed = ROOT / "tests" / "fixtures" / "inboxcomponents" / "message.received.json"

    embedded = re.search(r"\[==\[\n(.*?)\]==\]", script, re.DOTALL)

    assert embedded is not None
    assert embedded[1] == seed.read_text()


@pytest.mark.integration
def test_smoke_run_measures_bare_in_every_scenario(tmp_path: Path) -> None:
    missing = [tool for tool in ("wrk", "redis-server") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"benchmark smoke run needs {' and '.join(missing)} on PATH")

    output = run_harness("--smoke", "--systems", "bare", "--out", str(tmp_path))

    [report] = tmp_path.glob("*.json")
    scenarios = json.loads(report.read_text())["systems"]["bare"]["scenarios"]
    assert set(scenarios) == {"throughput", "latency_c1"}, output
    for name, scenario in scenarios.items():
        assert scenario["rps"] > 0, name
        assert scenario["non2xx"] == 0, name
        assert scenario["errors"] == 0, name


def run_harness(*args: str) -> str:
    """Run `python -m benchmarks.run` and return its output, failing the test if it fails."""
    harness = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = harness.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        # SIGTERM, not kill: the harness then stops its own children (wrk, redis, servers).
        harness.terminate()
        output, _ = harness.communicate()
        pytest.fail(f"the harness hung; its output:\n{output}")
    assert harness.returncode == 0, output
    return output
