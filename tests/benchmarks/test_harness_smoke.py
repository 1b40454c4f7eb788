"""The benchmark harness keeps working: its wrk parser, and a smoke run end to end."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gateway
from benchmarks import report
from benchmarks.bare_client import SEED, build_request
from benchmarks.machine import plan_pinning
from benchmarks.run import parse_args, required_tools
from benchmarks.wrkout import SocketErrors, WrkParseError, parse_wrk_output
from gateway.config import load
from gateway.formats import Renderer
from gateway.models import Queued

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


def test_bare_client_sends_the_very_bytes_the_forwarder_sends() -> None:
    url = "http://127.0.0.1:3999/events"
    config = load(ROOT / "config" / "gateway.yaml", {"FORWARD_URL": url})
    [target] = config.targets
    renderer = Renderer(target, {source.name: source for source in config.sources})
    seed = SEED.read_bytes()
    entry = Queued(0, b"1-0", "inboxcomponents", "message.received", "k", seed, attempt=1)

    head, body = renderer.render(entry)

    user_agent = f"webhook-gateway/{gateway.__version__}"
    assert build_request(url, seed, user_agent=user_agent) == head + body


def test_delivery_groups_run_by_default_only_with_the_gateway() -> None:
    assert parse_args([]).scenarios == ("ingest", "drain", "e2e")
    assert parse_args(["--systems", "bare"]).scenarios == ("ingest",)
    assert parse_args(["--scenarios", "drain"]).scenarios == ("drain",)
    assert required_tools(("drain",)) == ["redis-server"]
    assert "wrk" in required_tools(("e2e",))


def test_delivery_table_compares_every_row_with_the_bare_client() -> None:
    outcomes = [
        report.DeliveryOutcome("bare_client", "post", expected=1000, events=1000, seconds=0.02),
        report.DeliveryOutcome("gateway", "drain", expected=1000, events=1000, seconds=0.2),
    ]
    settings = {"events": 1000, "connections": 64, "duration_s": 1, "wrk_threads": 1}
    doc = report.document(
        run={"started": "now", "command": "python -m benchmarks.run"},
        machine={"nproc": 2, "cpu_model": "x", "kernel": "k", "python": "3", "redis": "7"}
        | {"wrk": "4", "packages": {}, "pinning": {"note": "n"}},
        scenarios=(),
        outcomes=[],
        delivery=outcomes,
        delivery_settings=settings,
    )

    text = report.markdown(doc)

    assert "| gateway | drain | 1,000 | 0.20 | 5,000 | 0.10x | — | — |" in text
    assert doc["delivery"]["results"]["drain"]["rps"] == 5000.0


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


@pytest.mark.integration
def test_smoke_drain_delivers_exactly_the_prefilled_events(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("the drain smoke run needs redis-server on PATH")

    output = run_harness(
        "--smoke", "--systems", "gateway", "--scenarios", "drain", "--out", str(tmp_path)
    )

    [report_file] = tmp_path.glob("*.json")
    delivery = json.loads(report_file.read_text())["delivery"]
    events = delivery["events"]
    bare, drain = delivery["results"]["post"], delivery["results"]["drain"]
    assert drain["expected"] == events, output
    assert drain["events"] == events, output  # the sink's count: no loss, no duplicate
    assert drain["queue_after"] == {"queued": 0, "pending": 0, "retrying": 0, "dead": 0}
    client = bare["client"]
    assert (client["requests"], client["errors"], client["non2xx"]) == (events, 0, 0), output
    assert bare["events"] == events, output
