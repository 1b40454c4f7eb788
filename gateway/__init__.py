"""webhook-gateway: durable, deduplicating edge for provider webhooks."""

__version__ = "0.1.0"
