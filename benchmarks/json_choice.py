"""msgspec or orjson? Time what the ingest path needs from the seed payload.

The gateway needs `idempotency_key` and `event` as strings, and the `data`
object's bytes exactly as received (to forward without re-serializing).
Run: python -m benchmarks.json_choice  (needs orjson: pip install orjson)
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from pathlib import Path

import msgspec

SEED = Path(__file__).resolve().parents[1] / "tests/fixtures/inboxcomponents/message.received.json"


class _Envelope(msgspec.Struct):
    idempotency_key: str | None = None
    event: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")


def candidates(body: bytes) -> dict[str, Callable[[], object]]:
    decode = msgspec.json.Decoder(_Envelope).decode

    def with_msgspec() -> object:
        e = decode(body)
        return e.idempotency_key, e.event, bytes(e.data)

    found: dict[str, Callable[[], object]] = {"msgspec Struct, data as Raw": with_msgspec}
    try:
        import orjson
    except ImportError:
        return found

    def with_orjson() -> object:
        doc = orjson.loads(body)  # data can only be had re-serialized
        return doc["idempotency_key"], doc["event"], orjson.dumps(doc["data"])

    found["orjson loads, dumps(data)"] = with_orjson
    return found


def main() -> None:
    body = SEED.read_bytes()
    n = 100_000
    for name, fn in candidates(body).items():
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n
        print(f"{name:32} {best * 1e6:6.2f} µs per request")


if __name__ == "__main__":
    main()
