"""Store settings for tests that drive a store directly."""

from __future__ import annotations

from gateway.config import StoreConfig


def store_config(url: str = "redis://127.0.0.1:1/0", **overrides: object) -> StoreConfig:
    values: dict[str, object] = {
        "url": url,
        "dedup_ttl": 60.0,
        "admit_deadline": 2.0,
        "partitions": 1,
        "key_prefix": "gw",
        "pool_size": 4,
        "socket_timeout": 1.0,
        "connect_timeout": 1.0,
    }
    values.update(overrides)
    return StoreConfig(**values)  # type: ignore[arg-type]
