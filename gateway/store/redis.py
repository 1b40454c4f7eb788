"""The Redis store: one Lua call per partition marks and enqueues a batch.

Key layout (every key of one call shares the `{prefix:partition}` hash tag,
so each call stays in one Redis Cluster slot):

    {gw:0}:idem:<source>:<event>:<key>   dedup marker, value = request token, PX = dedup TTL
    {gw:0}:q:<target>                    the target's stream of queued events
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.config import StoreConfig
from gateway.errors import StoreUnavailable
from gateway.models import Admission, AdmitOutcome

# ARGV: ttl_ms, n, then per event: token, source, type, key, body, n_targets,
# and that many 1-based offsets into the stream keys that follow the n
# marker keys in KEYS.
#
# Enqueue before mark: Redis scripts are atomic but not rolled back, so if a
# write fails midway the worst left behind is an enqueued event without its
# marker (a possible duplicate), never a marker without its event (a loss).
# A marker holding this request's own token means redis-py re-sent the call
# after a lost reply: that event is ours and already queued, so "accepted".
# The `#!lua` shebang makes Redis refuse the whole script up front when over
# maxmemory, instead of failing between two of its writes.
ADMIT_LUA = """#!lua
local ttl = ARGV[1]
local n = tonumber(ARGV[2])
local out = {}
local a = 3
for i = 1, n do
  local token = ARGV[a]
  local nt = tonumber(ARGV[a + 5])
  local held = redis.call('GET', KEYS[i])
  if not held then
    for j = 1, nt do
      redis.call('XADD', KEYS[n + tonumber(ARGV[a + 5 + j])], '*',
        'source', ARGV[a + 1], 'type', ARGV[a + 2], 'key', ARGV[a + 3], 'body', ARGV[a + 4])
    end
    redis.call('SET', KEYS[i], token, 'PX', ttl)
    out[i] = 1
  elseif held == token then
    out[i] = 1
  else
    out[i] = 0
  end
  a = a + 6 + nt
end
return out
"""


class Keys:
    """Named key builders: the only place key shapes are written."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{partition}}}"

    def marker(self, partition: int, dedup_key: str) -> str:
        return f"{self.tag(partition)}:idem:{dedup_key}"

    def stream(self, partition: int, target: str) -> str:
        return f"{self.tag(partition)}:q:{target}"


def admit_arguments(
    keys: Keys, partition: int, batch: Sequence[Admission], ttl_ms: int
) -> tuple[list[str], list[str | bytes | int]]:
    """KEYS and ARGV of one admit call (pure, so it is tested without Redis)."""
    markers = [keys.marker(partition, a.dedup_key) for a in batch]
    streams: dict[str, int] = {}
    argv: list[str | bytes | int] = [ttl_ms, len(batch)]
    for a in batch:
        offsets = [streams.setdefault(t, len(streams) + 1) for t in a.targets]
        argv += [a.token, a.source, a.event_type, a.key, a.body, len(offsets), *offsets]
    return markers + [keys.stream(partition, t) for t in streams], argv


class RedisStore:
    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self.keys = Keys(config.key_prefix)
        self._ttl_ms = max(1, round(config.dedup_ttl * 1000))
        # A blocking pool waits for a free connection instead of raising
        # "Too many connections"; the wait is bounded by the admit deadline.
        self._pool = aioredis.BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.pool_size,
            timeout=config.admit_deadline,
            socket_timeout=config.socket_timeout,
            socket_connect_timeout=config.connect_timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), retries=2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=10,
        )
        self.redis = aioredis.Redis(connection_pool=self._pool)
        self._admit = self.redis.register_script(ADMIT_LUA)

    def partition(self, dedup_key: str) -> int:
        n = self._config.partitions
        return 0 if n == 1 else zlib.crc32(dedup_key.encode()) % n

    async def admit(self, partition: int, batch: Sequence[Admission]) -> list[AdmitOutcome]:
        keys, argv = admit_arguments(self.keys, partition, batch, self._ttl_ms)
        try:
            flags = await self._admit(keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"admit failed: {exc}") from exc
        return [AdmitOutcome(int(flag)) for flag in flags]

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def durability_warnings(self) -> list[str]:
        """Server settings that put dedup markers or queued events at risk."""
        try:
            info = await self.redis.info("server")
            settings = await self.redis.config_get("maxmemory-policy")
            settings |= await self.redis.config_get("appendonly")
        except (RedisError, OSError) as exc:
            return [f"could not read Redis durability settings: {exc}"]
        found = {str(k): str(v) for k, v in settings.items()}
        return durability_problems(str(info.get("redis_version", "0")), found)

    async def close(self) -> None:
        await self.redis.aclose()
        await self._pool.disconnect()


def durability_problems(version: str, settings: dict[str, str]) -> list[str]:
    problems = []
    if _version_tuple(version) < (7, 0):
        problems.append(f"Redis {version} is older than 7.0: the admit script needs 7.0")
    policy = settings.get("maxmemory-policy", "")
    if policy and policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: eviction can delete dedup markers or queued "
            "events; set it to noeviction"
        )
    if settings.get("appendonly", "") == "no":
        problems.append(
            "appendonly is no: a Redis restart loses every event queued since the last "
            "snapshot; enable AOF (appendonly yes, appendfsync everysec or always)"
        )
    return problems


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return (0,)
