"""The gateway's delivery queue seen from outside: fill it as admit would, read its state.

The prefill drives the gateway's own admit script (`RedisStore.admit`) with the
admissions its ingest would build for the seed event under fresh keys, so the queue
holds exactly what a gateway that had acked those webhooks would have left behind:
stream entries (source, type, key, body) and dedup markers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
import uvloop

from benchmarks.systems import REPO, SystemSetupError
from gateway.config import Config, load
from gateway.models import Admission, AdmitOutcome, body_digest
from gateway.routing import Routes
from gateway.sources import build_source
from gateway.store.redis import GROUP, RedisStore
from gateway.store.redis_shapes import Keys

SEED = REPO / "tests/fixtures/inboxcomponents/message.received.json"
ADMIT_BATCH = 1000  # events per admit call: what one busy loop tick of the gateway carries


@dataclass(frozen=True, slots=True)
class SeedEvent:
    """The seed as the gateway's ingest reads it, and where its routes send it."""

    source: str
    event_type: str
    key: str
    body: bytes
    targets: tuple[str, ...]


def gateway_config(config_path: Path, env: Mapping[str, str]) -> Config:
    """The config a gateway started with this file and environment runs with."""
    return load(config_path, {**os.environ, **env})


def seed_event(config: Config, seed: bytes | None = None) -> SeedEvent:
    body = SEED.read_bytes() if seed is None else seed
    source = next((s for s in config.sources if s.kind == "inboxcomponents"), None)
    if source is None:
        raise SystemSetupError("the gateway config has no inboxcomponents source")
    parsed = build_source(source).parse([], body, time.time())
    targets, _ = Routes(config.routes, config.unrouted).targets(source.name, parsed.event_type)
    if not targets:
        raise SystemSetupError(f"{parsed.event_type} from {source.name} routes to no target")
    return SeedEvent(source.name, parsed.event_type, parsed.key, body, targets)


def admissions(seed: SeedEvent, count: int) -> Iterator[Admission]:
    """`count` admissions of the seed, each with a fresh 64-hex-digit key in its body."""
    prefix = os.urandom(24).hex()  # 48 digits, then a 16-digit counter, like the wrk script
    if len(seed.key) != 64:
        raise SystemSetupError(f"the seed's idempotency key is not 64 characters: {seed.key!r}")
    old = seed.key.encode()
    for n in range(count):
        key = f"{prefix}{n:016x}"
        yield Admission(
            f"{seed.source}:{seed.event_type}:{key}",
            f"prefill-{prefix}:{n}",
            seed.source,
            seed.event_type,
            key,
            body := seed.body.replace(old, key.encode(), 1),
            body_digest(body),
            seed.targets,
        )


def prefill(config: Config, count: int) -> float:
    """Admit `count` fresh events through the gateway's admit script; the seconds it took."""
    started = time.perf_counter()
    uvloop.run(_admit_all(config, seed_event(config), count))
    return time.perf_counter() - started


async def _admit_all(config: Config, seed: SeedEvent, count: int) -> None:
    store = RedisStore(config.store)
    try:
        for partition, batch in _batches(store, admissions(seed, count)):
            await _admit(store, partition, batch)
    finally:
        await store.close()


def _batches(
    store: RedisStore, queue: Iterator[Admission]
) -> Iterator[tuple[int, list[Admission]]]:
    """Admissions grouped by partition, at most ADMIT_BATCH to one call."""
    filling: dict[int, list[Admission]] = {}
    for admission in queue:
        partition = store.partition(admission.dedup_key)
        batch = filling.setdefault(partition, [])
        batch.append(admission)
        if len(batch) == ADMIT_BATCH:
            yield partition, filling.pop(partition)
    yield from filling.items()


async def _admit(store: RedisStore, partition: int, batch: Sequence[Admission]) -> None:
    outcomes = await store.admit(partition, batch)
    refused = sum(1 for outcome in outcomes if outcome is not AdmitOutcome.ACCEPTED)
    if refused:
        raise SystemSetupError(f"prefill: the admit script refused {refused} fresh events")


@dataclass(frozen=True, slots=True)
class QueueState:
    """Undelivered events: on the stream, claimed but unacked, waiting to retry; dead ones."""

    queued: int  # stream entries (XLEN): an acked entry is deleted at once
    pending: int | None  # claimed, not yet acked; None until the consumer group exists
    retrying: int
    dead: int

    @property
    def empty(self) -> bool:
        return self.queued == 0 and self.pending == 0 and self.retrying == 0

    def as_dict(self) -> dict[str, int | None]:
        return {
            "queued": self.queued,
            "pending": self.pending,
            "retrying": self.retrying,
            "dead": self.dead,
        }


class Backlog:
    """Reads the queue state of every partition and target of one gateway config."""

    def __init__(self, store_url: str, config: Config, targets: Sequence[str]) -> None:
        self._client = redis.Redis.from_url(store_url, socket_timeout=5.0)
        keys = Keys(config.store.key_prefix)
        places = [(p, t) for p in range(config.store.partitions) for t in targets]
        self._streams = [keys.stream(p, t) for p, t in places]
        self._retries = [keys.retry(p, t)[1] for p, t in places]
        self._dead = [keys.dead(p, t) for p, t in places]

    def __enter__(self) -> Backlog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def state(self) -> QueueState:
        pipe = self._client.pipeline(transaction=False)
        for stream, retry, dead in zip(self._streams, self._retries, self._dead, strict=True):
            pipe.xlen(stream)
            pipe.xpending(stream, GROUP)
            pipe.zcard(retry)
            pipe.xlen(dead)
        replies = pipe.execute(raise_on_error=False)
        queued = retrying = dead_count = 0
        pending: int | None = 0
        for xlen, xpending, zcard, dead_len in _quads(replies):
            queued += _int(xlen)
            retrying += _int(zcard)
            dead_count += _int(dead_len)
            waiting = _pending(xpending)
            pending = None if waiting is None or pending is None else pending + waiting
        return QueueState(queued, pending, retrying, dead_count)


def _quads(replies: list[object]) -> Iterator[tuple[object, ...]]:
    for i in range(0, len(replies), 4):
        yield tuple(replies[i : i + 4])


def _int(reply: object) -> int:
    if isinstance(reply, Exception):
        raise reply
    if not isinstance(reply, int | str | bytes):
        raise TypeError(f"expected an integer reply, got {reply!r}")
    return int(reply)


def _pending(reply: object) -> int | None:
    """XPENDING's count; None when the consumer group does not exist yet (NOGROUP)."""
    if isinstance(reply, redis.ResponseError) and "NOGROUP" in str(reply):
        return None
    if not isinstance(reply, dict):
        return _int(reply)  # raises the error, or says what came instead
    return _int(reply["pending"])
