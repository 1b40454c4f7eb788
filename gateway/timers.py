"""One loop timer for a stream of deadlines, re-armed lazily.

A connection with one request (or call) after another, each with its own deadline,
would make and cancel a TimerHandle per request. Instead its timer only moves when a
new deadline is earlier than the armed one; otherwise it fires, the owner finds what
is still outstanding, and asks for the next deadline again (or nothing). A keep-alive
connection serving quick requests then costs about one timer per timeout, not one per
request: asyncio.timeout per request was 7 % of the forwarder's CPU
(benchmarks/cpu_per_delivery.sh).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# uvloop's timers have millisecond resolution: one may fire a little before its
# deadline by loop.time(). Treat that as due rather than re-arming for the rest.
CLOCK_SLACK = 0.002


class LazyTimer:
    __slots__ = ("_at", "_fire", "_handle")

    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire  # the owner's check: expire what is due, call due_by for the rest
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0

    def due_by(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Make sure the owner is called back no later than `when`."""
        if self._handle is not None and self._at <= when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_at(when, self._fired)
        self._at = when

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def armed_at(self) -> float | None:
        """The loop time it fires at; None when it is not armed."""
        return self._at if self._handle is not None else None

    def _fired(self) -> None:
        self._handle = None
        self._fire()


def early(loop: asyncio.AbstractEventLoop, due: float) -> bool:
    """Whether a timer firing now came too early for `due`."""
    return loop.time() + CLOCK_SLACK < due
