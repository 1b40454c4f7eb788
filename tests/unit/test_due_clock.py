"""DueClock: a retry falls due on the wall clock, never before its delay on the monotonic one."""

from __future__ import annotations

from gateway.store.due_clock import DueClock


class Clocks:
    """A wall clock and a monotonic clock the test moves: together, or the wall alone."""

    def __init__(self, wall: float = 1_000_000.0, monotonic: float = 50.0) -> None:
        self.wall, self.monotonic = wall, monotonic

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds

    def due_clock(self) -> DueClock:
        return DueClock(wall=lambda: self.wall, monotonic=lambda: self.monotonic)


def test_a_due_time_is_rounded_up_and_now_down() -> None:
    clocks = Clocks(wall=1_000_000.0004)
    due = clocks.due_clock()
    assert due.due_ms(2.0) == 1_000_002_001  # truncated, it would fall due 0.4 ms early
    assert due.now_ms() == 1_000_000_000


def test_with_steady_clocks_a_retry_falls_due_exactly_after_its_delay() -> None:
    clocks = Clocks()
    due = clocks.due_clock()
    due_ms = due.due_ms(2.0)
    clocks.advance(1.999)
    assert due.now_ms() < due_ms
    clocks.advance(0.001)
    assert due.now_ms() >= due_ms


def test_a_wall_clock_jumping_ahead_does_not_make_a_waiting_retry_due() -> None:
    clocks = Clocks()
    due = clocks.due_clock()
    due_ms = due.due_ms(2.0)
    clocks.wall += 3600.0  # an NTP step, or a paused VM's clock catching up
    clocks.advance(1.998)
    assert due.now_ms() < due_ms
    clocks.advance(0.002)
    assert due.now_ms() >= due_ms
    assert due.now_ms() == int(clocks.wall * 1000)  # the wait over, the wall clock again


def test_after_a_jump_a_later_retry_waits_at_most_the_jump_longer() -> None:
    clocks = Clocks()
    due = clocks.due_clock()
    due.due_ms(60.0)  # scheduled before the jump, still waiting long after it
    clocks.wall += 5.0
    later = due.due_ms(1.0)
    clocks.advance(1.0)
    assert due.now_ms() < later  # held back with the one scheduled before the jump
    clocks.advance(4.999)
    assert due.now_ms() < later
    clocks.advance(0.001)
    assert due.now_ms() >= later


def test_a_wall_clock_stepping_back_only_makes_retries_later() -> None:
    clocks = Clocks()
    due = clocks.due_clock()
    due_ms = due.due_ms(2.0)
    clocks.wall -= 10.0
    clocks.advance(2.0)
    assert due.now_ms() == int(clocks.wall * 1000) < due_ms
    clocks.advance(10.0)
    assert due.now_ms() >= due_ms


def test_offsets_beyond_the_bound_merge_and_still_hold_every_retry() -> None:
    clocks = Clocks()
    due = clocks.due_clock()
    first = due.due_ms(10.0)
    for _ in range(1000):  # a slewing wall clock: a new offset at every retry
        clocks.wall += 0.002
        due.due_ms(1.0)
    assert len(due._waiting) <= 256
    clocks.wall += 3600.0
    clocks.advance(9.999)
    assert due.now_ms() < first
    clocks.advance(0.001)
    assert due.now_ms() >= first
