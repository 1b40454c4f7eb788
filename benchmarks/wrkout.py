"""Parse the text wrk prints into numbers. Pure: a string in, a `WrkResult` or an error out.

wrk has no machine-readable output, so the contract is its report format (wrk 4.x):
`--latency` adds a distribution with the 50/75/90/99th percentiles, and the
"Socket errors" and "Non-2xx or 3xx responses" lines appear only when non-zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# wrk's format_time() and format_metric() units, scaled to microseconds and seconds.
_TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}

_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkParseError(ValueError):
    """The text is not a complete wrk report (wrk failed, or its format changed)."""


@dataclass(frozen=True, slots=True)
class SocketErrors:
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0

    @property
    def total(self) -> int:
        return self.connect + self.read + self.write + self.timeout


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run. Latencies in microseconds."""

    requests: int
    duration_s: float
    rps: float
    p50_us: float
    p75_us: float
    p90_us: float
    p99_us: float
    non2xx: int
    socket_errors: SocketErrors

    def __post_init__(self) -> None:
        if self.requests < 0 or self.non2xx < 0 or self.non2xx > self.requests:
            raise WrkParseError(f"inconsistent counts: {self.requests=} {self.non2xx=}")

    @property
    def successes(self) -> int:
        """Completed responses below 400 (wrk counts status >= 400 as "Non-2xx or 3xx")."""
        return self.requests - self.non2xx

    @property
    def clean(self) -> bool:
        """Every request answered without error: the only kind of run worth comparing."""
        return self.successes > 0 and self.non2xx == 0 and self.socket_errors.total == 0


def to_us(value: str, unit: str) -> float:
    # Rounded so that "2.31ms" is 2310.0, not 2309.9999999999995.
    return round(float(value) * _TIME_UNITS_US[unit], 3)


def parse_wrk_output(text: str) -> WrkResult:
    percentiles = {int(p): to_us(v, u) for p, v, u in _PERCENTILE.findall(text)}
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    missing = [p for p in (50, 75, 90, 99) if p not in percentiles]
    if missing or requests is None or rps is None:
        raise WrkParseError(
            "not a complete wrk --latency report"
            + (f" (no percentiles {missing})" if missing else "")
            + ("" if requests else " (no 'N requests in' line)")
            + ("" if rps else " (no 'Requests/sec' line)")
        )
    return WrkResult(
        requests=int(requests[1]),
        duration_s=to_us(requests[2], requests[3]) / 1e6,
        rps=float(rps[1]),
        p50_us=percentiles[50],
        p75_us=percentiles[75],
        p90_us=percentiles[90],
        p99_us=percentiles[99],
        non2xx=_count(_NON_2XX, text),
        socket_errors=_socket_errors(text),
    )


def _count(pattern: re.Pattern[str], text: str) -> int:
    match = pattern.search(text)
    return int(match[1]) if match else 0


def _socket_errors(text: str) -> SocketErrors:
    match = _SOCKET_ERRORS.search(text)
    if match is None:
        return SocketErrors()
    return SocketErrors(*(int(n) for n in match.groups()))
