"""benchmarks/profile.py's reading of py-spy's collapsed stacks and of perf's report
(neither tool needed)."""

from __future__ import annotations

from benchmarks.profile import read_collapsed, read_perf, report

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


# Real `perf report --stdio -n --no-children --sort dso,symbol -g none` lines (perf 6.1,
# the compiled gateway under cpu_per_request.sh), with its header and a blank line; the
# columns' padding shortened to fit a line.
PERF_REPORT = """\
# Samples: 4K of event 'cpu-clock'
#
# Overhead       Samples  Shared Object                                   Symbol
# ........  ............  ..............................................  ......
#
  3.73% 163  _blake2.cpython-311-x86_64-linux-gnu.so [.] PyBlake2_blake2b_compress.isra.0
  2.43% 106  [kernel.kallsyms] [k] _raw_spin_unlock_irqrestore
 0.46% 20 gateway__mypyc.cpython-311-x86_64-linux-gnu.so [.] CPyDef_ingest___SourceEndpoint___handle

"""


def test_perf_rows_are_read_as_samples_per_symbol_and_library() -> None:
    profile = read_perf(PERF_REPORT)
    assert profile.samples == 163 + 106 + 20
    handle = (
        "CPyDef_ingest___SourceEndpoint___handle (gateway__mypyc.cpython-311-x86_64-linux-gnu.so)"
    )
    assert profile.self_time[handle] == 20
    assert profile.self_time["_raw_spin_unlock_irqrestore ([kernel.kallsyms])"] == 106
