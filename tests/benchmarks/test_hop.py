"""benchmarks.hop: its arithmetic on made-up timings, and one short run end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.children import ChildFailed
from benchmarks.hop import Timings, hops, quantiles, read_arrivals
from tests.support.processes import run_module


def test_hops_are_seconds_from_each_send_to_its_ack_and_to_its_arrival() -> None:
    timings = Timings(sent={"a": 1.0, "b": 2.0}, acked={"a": 1.002, "b": 2.004})
    ack, app = hops(timings, {"a": 1.0015, "b": 2.003, "other": 9.0})
    assert ack == pytest.approx([0.002, 0.004])
    assert app == pytest.approx([0.0015, 0.003])


def test_an_event_the_sink_never_saw_or_a_refusal_fails_the_run() -> None:
    timings = Timings(sent={"a": 1.0, "b": 2.0}, acked={"a": 1.1, "b": 2.1})
    with pytest.raises(ChildFailed, match="not delivered: \\['b'\\]"):
        hops(timings, {"a": 1.2})
    timings.refused.append("a")
    with pytest.raises(ChildFailed, match="not 200: \\['a'\\]"):
        hops(timings, {"a": 1.2, "b": 2.2})


def test_quantiles_are_p50_p90_p99_and_the_max_in_ms() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert quantiles(values) == pytest.approx([50.5, 90.1, 99.01, 100.0])


def test_the_sink_record_is_read_back_by_id(tmp_path: Path) -> None:
    record = tmp_path / "arrivals.txt"
    record.write_text("key-1 12.500000\nkey 2 13.25\n")
    assert read_arrivals(record) == {"key-1": 12.5, "key 2": 13.25}


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_short_interpreted_run_reports_every_rate() -> None:
    args = ["--rates", "50,200", "--seconds", "0.5", "--build", "interpreted"]
    done = run_module("benchmarks.hop", *args, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| 50 | 25 | "), done.stdout
    assert rows[2].startswith("| 200 | 100 | "), done.stdout
    assert "interpreted build" in done.stdout
