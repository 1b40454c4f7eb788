"""The msgspec Structs the sources decode bodies into (only the fields they read).

In a module of their own: msgspec reads a Struct's annotations at class
creation, and mypyc (mypyc-modules.txt) rewrites a compiled module's
string annotations (`str | None` became `type`, and every request a 400).
This module stays interpreted; the sources' modules can be compiled.
"""

from __future__ import annotations

from typing import Final

import msgspec

# -- InboxComponents ------------------------------------------------------------


class Envelope(msgspec.Struct):
    # Only the fields the gateway needs are decoded; `data` stays raw bytes
    # so it is forwarded exactly as received, never re-serialized.
    idempotency_key: str | None = None
    event: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")


class Data(msgspec.Struct):
    date: int | float | str | None = None
    conversation_id: str | None = None


decode_envelope: Final = msgspec.json.Decoder(Envelope).decode
decode_data: Final = msgspec.json.Decoder(Data).decode


# -- Stripe and Slack: the event's time, for the CloudEvent's `time` ------------


class StripeEvent(msgspec.Struct):
    created: int | float | None = None


class SlackEvent(msgspec.Struct):
    event_time: int | float | None = None


decode_stripe_event: Final = msgspec.json.Decoder(StripeEvent).decode
decode_slack_event: Final = msgspec.json.Decoder(SlackEvent).decode
