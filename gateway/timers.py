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
from collections import deque
from collections.abc import Callable
from types import TracebackType

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


class Timeouts:
    """`asyncio.timeout(delay)` for many tasks with the same delay, on one LazyTimer.

    Each `asyncio.timeout` scope makes and cancels a loop timer; the admit path opened
    two per batch (the admit deadline and the spool's wait for Redis). Here a scope is
    an entry in a deque, in the order the scopes were opened (the order they fall due,
    the delay being the same), and the one timer fires for the oldest open one. An
    expired scope cancels its task and, on leaving, turns that cancellation into
    TimeoutError, exactly as asyncio.timeout does (uncancel, then compare with the
    task's cancel requests on entry), so a cancellation from elsewhere still propagates.
    """

    __slots__ = ("_open", "_timer", "delay")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._open: deque[_Scope] = deque()
        self._timer = LazyTimer(self._expire)

    def scope(self) -> _Scope:
        return _Scope(self)

    def __len__(self) -> int:
        """Scopes held: open ones, and closed ones behind an open one."""
        return len(self._open)

    def _opened(self, scope: _Scope, loop: asyncio.AbstractEventLoop) -> None:
        self._open.append(scope)
        self._timer.due_by(loop, scope.due)

    def _closed(self) -> None:
        # Scopes mostly close in the order they opened: drop every closed one at the
        # head now, so none keeps its finished task alive until the timer fires (a
        # heap census under load found ~760 of them, benchmarks/heap_census.sh).
        while self._open and self._open[0].closed:
            self._open.popleft()

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time() + CLOCK_SLACK
        while self._open and (self._open[0].closed or self._open[0].due <= now):
            scope = self._open.popleft()
            if not scope.closed:
                scope.expire()
        if self._open:
            self._timer.due_by(loop, self._open[0].due)


class _Scope:
    __slots__ = ("_cancelling", "_group", "_task", "closed", "due", "expired")
    __deletable__ = ("_task",)  # mypyc (mypyc-modules.txt) compiles `del self._task` only so

    def __init__(self, group: Timeouts) -> None:
        self._group = group
        self.closed = self.expired = False
        self.due = 0.0

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Timeouts.scope() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = asyncio.get_running_loop()
        self.due = loop.time() + self._group.delay
        self._group._opened(self, loop)

    def expire(self) -> None:
        self.expired = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closed = True
        self._group._closed()
        # uncancel() whenever expired (as asyncio.timeout): our own cancel request is
        # withdrawn even when the task finished before the cancellation landed.
        expired = self.expired and self._task.uncancel() <= self._cancelling
        del self._task  # a closed scope behind an open one must not keep its task alive
        if expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
