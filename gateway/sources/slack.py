"""Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`, with the
timestamp in `X-Slack-Request-Timestamp`; Slack asks receivers to reject
requests more than five minutes from local time (the default tolerance).
(api.slack.com/authentication/verifying-requests-from-slack)
"""

from __future__ import annotations

import msgspec

from gateway.errors import Rejection
from gateway.sources.base import (
    Claim,
    Headers,
    HmacSource,
    bad_signature,
    missing_signature,
    rfc3339,
    unhex,
    unix_time,
)
from gateway.sources.fields import header
from gateway.sources.shapes import decode_slack_event


class Slack(HmacSource):
    __slots__ = ()

    def claim(self, headers: Headers) -> Claim | Rejection:
        value = header(headers, b"x-slack-signature")
        stamp = header(headers, b"x-slack-request-timestamp")
        if value is None or stamp is None:
            return missing_signature("X-Slack-Signature or X-Slack-Request-Timestamp header")
        timestamp = unix_time(stamp)
        mac = unhex(value[3:]) if value.startswith(b"v0=") else None
        if timestamp is None or not mac:
            return bad_signature("malformed X-Slack-Signature or X-Slack-Request-Timestamp header")
        return Claim((mac,), b"v0:" + stamp + b":", timestamp=timestamp)

    def time(self, body: bytes) -> str | None:
        try:
            return rfc3339(decode_slack_event(body).event_time)
        except (msgspec.DecodeError, RecursionError):  # ValidationError included
            return None
