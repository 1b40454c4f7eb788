"""Listener deadlines: which clock a connection is on, and one timer per connection.

A connection is always in one phase, and each phase has at most one deadline:

- FRESH: just opened, no request yet. Its first request's headers are due
  `header_timeout` after the connection opened (as nginx's client_header_timeout),
  so a client cannot hold a slot by connecting and waiting before its first byte.
  If not one byte of a request came, the connection closes silently.
- IDLE: between keep-alive requests. Closed silently after `keepalive_timeout`.
- HEADERS: a request has begun. Its headers are due `header_timeout` after its
  first byte, or after the previous response was written if it was pipelined
  behind one (its wait for earlier answers is not its fault). 408 after that.
- BODY: no body byte for `body_timeout` is a stall; the whole request is due
  `request_timeout` after its clock started, which cuts a body trickled one
  byte at a time however regular the trickle. 408 after either.
- WAITING: a request waits for its endpoint's answer, or the connection is
  ending. No deadline: the admit deadline is the endpoint's business.

`due` is pure. `Deadlines` keeps one `LazyTimer` (gateway.timers): a state
change only moves the timer when the new deadline is earlier; otherwise the
timer fires, the owner recomputes, and re-arms for what is left. So a body read
costs a clock read, not a timer, and a keep-alive connection serving quick
requests creates about one timer per `keepalive_timeout`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from gateway.config import Limits
from gateway.timers import LazyTimer, early


class Phase(enum.Enum):
    FRESH = "fresh"
    IDLE = "idle"
    HEADERS = "headers"
    BODY = "body"
    WAITING = "waiting"

    @property
    def answers(self) -> bool:
        """Whether running out of time here is answered (408) or closed silently."""
        return self is Phase.HEADERS or self is Phase.BODY


def due(phase: Phase, limits: Limits, start: float, last_read: float) -> float | None:
    """When `phase` runs out, on the loop clock; None when no deadline applies.

    `start` is when the phase's clock started (connection opened, previous
    response written, or the request's first byte); `last_read` is when the
    connection last received bytes.
    """
    if phase is Phase.FRESH:
        return start + limits.header_timeout
    if phase is Phase.IDLE:
        return start + limits.keepalive_timeout
    if phase is Phase.HEADERS:
        return start + min(limits.header_timeout, limits.request_timeout)
    if phase is Phase.BODY:
        # A body read before its clock (re)started, while the request waited
        # behind an earlier one, does not count against it.
        stall = max(last_read, start) + limits.body_timeout
        return min(stall, start + limits.request_timeout)
    return None


class Deadlines:
    """A connection's clocks and its one timer, firing at its phase's deadline.

    The owner sets `last_read` on every read, reports what moves the clocks
    (`begin`, `restart`) and calls `rearm` after a change of phase; `phase`
    tells the phase now, and `expire` is called with it once its deadline passed.
    """

    __slots__ = (
        "_expire",
        "_limits",
        "_loop",
        "_phase",
        "_timer",
        "fresh",
        "last_read",
        "start",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        phase: Callable[[], Phase],
        expire: Callable[[Phase], None],
    ) -> None:
        self._loop = loop
        self._limits = limits
        self._phase = phase
        self._expire = expire
        self._timer = LazyTimer(self._fired)
        self.fresh = True  # no response written yet: FRESH rather than IDLE
        self.start = self.last_read = loop.time()

    def begin(self, queued: bool) -> None:
        """A request's first byte came. A keep-alive request's clock starts now;
        a pipelined one's when the answers ahead of it are out (`restart`)."""
        if not self.fresh and not queued:
            self.start = self.last_read

    def restart(self, busy: bool) -> None:
        """Every answer is out: the next request's clock starts now if one is
        `busy` arriving, else the idle clock."""
        self.fresh = False
        self.start = now = self._loop.time()
        if busy:
            self.rearm()
            return
        # The hot path, once per answer on a keep-alive connection. A timer set
        # earlier is kept when it fires first (keepalive_timeout is normally
        # the longest timeout): `_fired` then re-arms for the rest.
        self._timer.due_by(self._loop, now + self._limits.keepalive_timeout)

    def rearm(self) -> None:
        when = due(self._phase(), self._limits, self.start, self.last_read)
        if when is not None:
            self._timer.due_by(self._loop, when)

    def _fired(self) -> None:
        phase = self._phase()
        when = due(phase, self._limits, self.start, self.last_read)
        if when is None:
            return  # now WAITING; whatever ends that calls `restart`
        if early(self._loop, when):  # progress since the timer was set moved the deadline
            self._timer.due_by(self._loop, when)
        else:
            self._expire(phase)

    def cancel(self) -> None:
        self._timer.cancel()

    def __repr__(self) -> str:
        armed_at = self._timer.armed_at
        at = "-" if armed_at is None else f"{armed_at:.3f}"
        return f"<Deadlines {self._phase().value} at={at}>"
