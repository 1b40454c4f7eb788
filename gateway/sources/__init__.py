"""Sources: how a provider's requests are authenticated, keyed and normalized.

Pure: headers, the raw body and the clock in; values or a Rejection out. A
configured source is built once at startup with `build_source(config)`:

- `early_check(headers, now)`: header-only checks before the body is read
  (credentials present and well-formed, timestamp within the tolerance);
  returns a Rejection or None.
- `parse(headers, body, now)`: verifies the raw body, then finds the event
  type and idempotency key; returns Parsed or raises Rejection.
- `cloudevent(ce_source, body, event_type, key)`: the CloudEvents
  attributes of an accepted body, for delivery.

One module per scheme; `fields` finds the key and the type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from gateway.sources.base import CloudEvent, Headers, Parsed, Source, rfc3339
from gateway.sources.generic import GenericHmac
from gateway.sources.github import GitHub
from gateway.sources.inboxcomponents import InboxComponentsSource
from gateway.sources.shopify import Shopify
from gateway.sources.slack import Slack
from gateway.sources.standard_webhooks import StandardWebhooks
from gateway.sources.stripe import Stripe
from gateway.sources.token_auth import PATH_TOKEN, TokenSource

if TYPE_CHECKING:
    from gateway.config_sources import SourceConfig

__all__ = [
    "BUILDERS",
    "PATH_TOKEN",
    "CloudEvent",
    "Headers",
    "Parsed",
    "Source",
    "build_source",
    "rfc3339",
]

BUILDERS: Final[Mapping[str, Callable[[SourceConfig], Source]]] = {
    "inboxcomponents": InboxComponentsSource,
    "standard-webhooks": StandardWebhooks,
    "github": GitHub,
    "stripe": Stripe,
    "shopify": Shopify,
    "slack": Slack,
    "generic-hmac": GenericHmac,
    "token": TokenSource,
}


def build_source(config: SourceConfig) -> Source:
    return BUILDERS[config.kind](config)
