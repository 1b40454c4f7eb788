"""benchmarks/profile.py's reading of py-spy's collapsed stacks (no py-spy needed)."""

from __future__ import annotations

from benchmarks.profile import read_collapsed, report

COLLAPSED = """\
main (gateway/cli.py:87);run (gateway/x.py:10);write (asyncio/streams.py:346) 6
main (gateway/cli.py:87);run (gateway/x.py:12);parse (gateway/y.py:3) 3
main (gateway/cli.py:87);run (gateway/x.py:10) 1
not a stack line
"""


def test_lines_of_one_function_are_merged_and_counted_self_and_inclusive() -> None:
    profile = read_collapsed(COLLAPSED)
    assert profile.samples == 10
    assert profile.self_time["write (asyncio/streams.py)"] == 6
    assert profile.self_time["run (gateway/x.py)"] == 1  # lines 10 and 12 are one function
    assert profile.inclusive["run (gateway/x.py)"] == 10
    assert profile.inclusive["parse (gateway/y.py)"] == 3


def test_the_report_lists_shares_and_leaves_the_loops_own_frames_out() -> None:
    text = "\n".join(report("ingest", "s.sh", "req/s=1", read_collapsed(COLLAPSED), top=5))
    assert "| `write (asyncio/streams.py)` | 60.0% |" in text
    inclusive = text.split("inclusive")[1]
    assert "| `run (gateway/x.py)` | 100.0% |" in inclusive
    assert "cli.py" not in inclusive
