"""When a retry falls due: on the wall clock, never before its delay on the monotonic clock.

A retry's due time is stored as wall-clock milliseconds because every process
sharing the store must agree on it (a monotonic clock means nothing outside
its own boot). But the wall clock can step or slew forward (NTP, a VM's clock
catching up after a pause), and a due time on it alone would then fall due
early: before the app's Retry-After, or the backoff, has really passed.

So the store that scheduled a retry also remembers the wall-minus-monotonic
offset it was scheduled at, and its "now" for due checks is never later than
the monotonic clock plus the smallest offset of a retry still waiting. A retry
this process scheduled therefore falls due, here, only once its delay has
passed on both clocks. The cost of the guard: after a forward step of S ms,
other retries due in the last S ms wait up to S ms more while a retry
scheduled before the step waits. A step backward only makes retries later,
as the wall clock alone would. A retry promoted by another process (a second
worker or replica) is judged by that process's clocks, which know nothing of
this one's offset: there the wall clock alone decides.

Memory: one entry per distinct offset (ms) among waiting retries, which the
clock's steps and slews alone create; at most _MAX_OFFSETS, merged beyond that
(smallest offset, latest deadline: holds at least as long as each did).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

_MAX_OFFSETS = 256


class DueClock:
    __slots__ = ("_monotonic", "_waiting", "_wall")

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        # wall-minus-monotonic offset (ms, rounded down) at which retries were
        # scheduled -> the monotonic time by which the last of them falls due
        self._waiting: dict[int, float] = {}

    def due_ms(self, delay: float) -> int:
        """The wall-clock due time of a retry `delay` seconds from now, rounded
        up (a retry is never due before its delay), remembered for `now_ms`."""
        wall, monotonic = self._wall(), self._monotonic()
        offset = math.floor((wall - monotonic) * 1000)
        deadline = monotonic + delay
        if deadline > self._waiting.get(offset, -math.inf):
            self._waiting[offset] = deadline
        if len(self._waiting) > _MAX_OFFSETS:
            self._waiting = {min(self._waiting): max(self._waiting.values())}
        return math.ceil((wall + delay) * 1000)

    def now_ms(self) -> int:
        """The time (ms) against which due times are judged: the wall clock,
        held back while a forward step of it would make a waiting retry early."""
        wall, monotonic = self._wall(), self._monotonic()
        now = math.floor(wall * 1000)
        if self._waiting:
            self._waiting = {o: d for o, d in self._waiting.items() if d > monotonic}
            if self._waiting:
                now = min(now, math.floor(monotonic * 1000) + min(self._waiting))
        return now
