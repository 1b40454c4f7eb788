"""A provider simulator that sends webhooks the way InboxComponents does.

InboxComponents (providers/inboxcomponents/webhooks-doc.txt) retries a
request that got a non-2xx answer, a timeout or no answer at all, up to 5
times with exponential backoff, and disables the endpoint once it has
answered non-2xx 5 times in a row. The simulator does the same, on real
sockets, so a fault test can ask the questions the provider would: was every
event acked, and was the endpoint ever disabled?

Model (the provider's own parameters are not published; these are ours):

- N events, alternating the two documented event types, each with its own
  idempotency key; event i is first due at start + i / rate.
- A few worker threads take whichever send is due next (a new event or a
  retry) from one schedule, so a retry waiting out its backoff never holds a
  worker. Every attempt opens a fresh connection, as a webhook sender does per
  delivery, so a connection killed with the gateway is never reused.
- An attempt fails on a non-2xx status, a timeout (`timeout` bounds the
  connect and each read, 5 s by default), or a connection error (refused,
  reset, closed before the answer). Retry k (1-based) is due
  backoff_base * 2**(k-1) seconds after the failure: 0.2, 0.4, 0.8, 1.6, 3.2 s
  by default, scaled down from the provider's unpublished schedule.
- Failures are counted across the endpoint in the order answers arrive; a 2xx
  resets the count. At `disable_after` in a row the endpoint is disabled:
  nothing more is sent, neither new events nor retries. Answers to requests
  already in flight are still recorded.
"""

from __future__ import annotations

import heapq
import http.client
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.support.processes import SEEDS

EVENT_TYPES = ("message.received", "message.sent")
PROVIDER_RETRIES = 5  # "We retry failed requests up to 5 times"
PROVIDER_DISABLE_AFTER = 5  # "returns an error (non-2xx response) 5 times in a row"


def retry_delay(retry: int, base: float) -> float:
    """Seconds before retry number `retry` (1-based): base, 2*base, 4*base, ..."""
    return base * 2.0 ** (retry - 1)


@dataclass(slots=True)
class Attempt:
    url: str
    sent_at: float  # time.monotonic() when the attempt started
    status: int  # 0: no HTTP answer (see error)
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(slots=True)
class EventRecord:
    key: str
    event_type: str
    body: bytes
    attempts: list[Attempt] = field(default_factory=list)
    acked_at: float | None = None  # time.monotonic() of the 2xx
    gave_up: bool = False  # every retry spent without a 2xx

    @property
    def acked(self) -> bool:
        return self.acked_at is not None


@dataclass(order=True, slots=True)
class _Send:
    due: float
    seq: int
    index: int = field(compare=False)
    attempt: int = field(compare=False)  # 1 = the first send


class Simulator:
    def __init__(
        self,
        urls: str | Sequence[str],
        count: int,
        *,
        rate: float = 50.0,
        workers: int = 4,
        timeout: float = 5.0,
        retries: int = PROVIDER_RETRIES,
        backoff_base: float = 0.2,
        disable_after: int | None = PROVIDER_DISABLE_AFTER,
        prefix: str = "sim",
    ) -> None:
        self._urls = [urls] if isinstance(urls, str) else list(urls)
        self.rate = rate
        self.workers = workers
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.disable_after = disable_after
        seeds = {name: json.loads((SEEDS / f"{name}.json").read_bytes()) for name in EVENT_TYPES}
        self.events: list[EventRecord] = []
        for i in range(count):
            event_type = EVENT_TYPES[i % 2]
            key = f"{prefix}-{i:06d}"
            body = json.dumps({**seeds[event_type], "idempotency_key": key}).encode()
            self.events.append(EventRecord(key, event_type, body))
        self.disabled = False
        self.disabled_at: float | None = None
        self.consecutive_failures = 0
        self.consecutive_failures_max = 0
        self.started_at: float | None = None
        self._cond = threading.Condition()
        self._schedule: list[_Send] = []
        self._seq = 0
        self._in_flight: dict[str, int] = {}
        self._sent_to = 0
        self._stopped = False
        self._threads: list[threading.Thread] = []

    # -- running ----------------------------------------------------------------

    def start(self) -> Simulator:
        with self._cond:
            self.started_at = now = time.monotonic()
            spacing = 1.0 / self.rate if self.rate > 0 else 0.0
            for index in range(len(self.events)):
                self._push(now + index * spacing, index, 1)
        self._threads = [
            threading.Thread(target=self._work, name=f"simulator-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout: float) -> None:
        """Until every event is acked or given up, or the endpoint is disabled."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise TimeoutError(f"simulator still running after {timeout}s: {self!r}")

    def stop(self) -> None:
        """Send nothing more; answers to requests in flight are still recorded."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def route_to(self, urls: str | Sequence[str]) -> None:
        """Send further attempts to these URLs (a load balancer dropping a pod)."""
        with self._cond:
            self._urls = [urls] if isinstance(urls, str) else list(urls)

    def in_flight(self, url: str | None = None) -> int:
        with self._cond:
            if url is None:
                return sum(self._in_flight.values())
            return self._in_flight.get(url, 0)

    # -- results ----------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.events]

    @property
    def acked_keys(self) -> set[str]:
        with self._cond:
            return {e.key for e in self.events if e.acked}

    @property
    def failed_keys(self) -> set[str]:
        """Events the simulator gave up on after all its retries."""
        with self._cond:
            return {e.key for e in self.events if e.gave_up}

    @property
    def unsent_keys(self) -> set[str]:
        """Neither acked nor given up: cut off by a disabled endpoint or stop()."""
        with self._cond:
            return {e.key for e in self.events if not e.acked and not e.gave_up}

    def acked_at(self) -> dict[str, float]:
        with self._cond:
            return {e.key: e.acked_at for e in self.events if e.acked_at is not None}

    def attempts(self) -> list[Attempt]:
        with self._cond:
            return [a for e in self.events for a in e.attempts]

    def summary(self) -> dict[str, object]:
        attempts = self.attempts()
        failures = [a for a in attempts if not a.ok]
        return {
            "events": len(self.events),
            "acked": len(self.acked_keys),
            "failed": len(self.failed_keys),
            "unsent": len(self.unsent_keys),
            "attempts": len(attempts),
            "failed_attempts": len(failures),
            "failure_kinds": sorted({a.error or str(a.status) for a in failures}),
            "consecutive_failures_max": self.consecutive_failures_max,
            "disabled": self.disabled,
        }

    def __repr__(self) -> str:
        with self._cond:
            acked = sum(e.acked for e in self.events)
            return (
                f"<Simulator events={len(self.events)} acked={acked} "
                f"scheduled={len(self._schedule)} in_flight={sum(self._in_flight.values())} "
                f"consecutive_failures_max={self.consecutive_failures_max} "
                f"disabled={self.disabled}>"
            )

    # -- the workers --------------------------------------------------------------

    def _push(self, due: float, index: int, attempt: int) -> None:
        self._seq += 1
        heapq.heappush(self._schedule, _Send(due, self._seq, index, attempt))

    def _work(self) -> None:
        while (job := self._next_send()) is not None:
            send, url = job
            event = self.events[send.index]
            attempt = self._send(url, event.body)
            self._settle(send, attempt)

    def _next_send(self) -> tuple[_Send, str] | None:
        """The next due send, reserved for this worker; None when the run is over."""
        with self._cond:
            while True:
                if self._stopped or self.disabled:
                    return None
                if not self._schedule:
                    if not any(self._in_flight.values()):
                        return None  # nothing due, nothing that could fail and retry
                    self._cond.wait()
                    continue
                wait = self._schedule[0].due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                send = heapq.heappop(self._schedule)
                url = self._urls[self._sent_to % len(self._urls)]
                self._sent_to += 1
                self._in_flight[url] = self._in_flight.get(url, 0) + 1
                return send, url

    def _send(self, url: str, body: bytes) -> Attempt:
        parts = urlsplit(url)
        started = time.monotonic()
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json", "User-Agent": "InboxComponents-sim"}
        try:
            conn.request("POST", parts.path or "/", body, headers)
            response = conn.getresponse()
            response.read()
            return Attempt(url, started, response.status)
        except (OSError, http.client.HTTPException) as exc:
            return Attempt(url, started, 0, type(exc).__name__)
        finally:
            conn.close()

    def _settle(self, send: _Send, attempt: Attempt) -> None:
        with self._cond:
            self._in_flight[attempt.url] -= 1
            event = self.events[send.index]
            event.attempts.append(attempt)
            if attempt.ok:
                event.acked_at = time.monotonic()
                self.consecutive_failures = 0
            else:
                self._failed(send)
            self._cond.notify_all()

    def _failed(self, send: _Send) -> None:
        self.consecutive_failures += 1
        self.consecutive_failures_max = max(
            self.consecutive_failures_max, self.consecutive_failures
        )
        if self.disable_after is not None and self.consecutive_failures >= self.disable_after:
            if not self.disabled:
                self.disabled = True
                self.disabled_at = time.monotonic()
            return
        if send.attempt <= self.retries:
            due = time.monotonic() + retry_delay(send.attempt, self.backoff_base)
            self._push(due, send.index, send.attempt + 1)
        else:
            self.events[send.index].gave_up = True
