"""Delivery rules: which outcomes retry, and when. Pure: status and clock in."""

from __future__ import annotations

import enum
import random
from email.utils import parsedate_to_datetime


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


def judge(status: int) -> Verdict:
    """What a response status means; status 0 = no response (connect error, timeout)."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if 400 <= status < 500 and status not in (408, 429):
        return Verdict.GIVE_UP  # the app rejected the event itself: retrying cannot help
    return Verdict.RETRY


def backoff(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Delay after failed attempt number `attempt` (1-based).

    Exponential with full jitter between the bounds: the ceiling doubles
    from `initial` up to `maximum`, and the delay is uniform below it, so
    many events failing together do not come back together.
    """
    ceiling = min(maximum, initial * 2.0 ** min(attempt - 1, 62))
    return rng.uniform(initial, ceiling) if ceiling > initial else initial


def retry_after(value: bytes | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP-date)."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    try:
        return max(0.0, parsedate_to_datetime(text).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def next_delay(
    attempt: int,
    status: int,
    retry_after_header: bytes | None,
    bounds: tuple[float, float],
    now: float,
    rng: random.Random,
) -> float:
    """The computed backoff, or a 429/503's Retry-After when it says longer
    (never beyond the backoff maximum, so one header cannot park an event)."""
    initial, maximum = bounds
    delay = backoff(attempt, initial, maximum, rng)
    if status in (429, 503):
        asked = retry_after(retry_after_header, now)
        if asked is not None:
            delay = max(delay, min(asked, maximum))
    return delay
