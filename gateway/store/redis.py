"""The Redis store: atomic admit per partition, and the delivery queue.

The key layout and the calls' shapes are in gateway/store/redis_shapes.py.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import cached_property
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.config import StoreConfig
from gateway.errors import StoreUnavailable
from gateway.models import Admission, AdmitOutcome, Queued
from gateway.store import lua, resp
from gateway.store.due_clock import DueClock
from gateway.store.link import Link, LinkSettings
from gateway.store.redis_shapes import (
    Keys,
    MalformedEntry,
    admit_arguments,
    durability_problems,
    first_claim,
    outcomes,
    packed_admit,
    queued,
)

log = structlog.get_logger("gateway.store")
GROUP = "gateway"
_RETRIES = 2  # re-sends after a connection error or timeout (redis-py's client and _packed)


class RedisStore:
    def __init__(self, config: StoreConfig, *, block_ms: int = 0) -> None:
        self._config = config
        self.keys = Keys(config.key_prefix)
        self.partitions = config.partitions
        self._ttl_ms = max(1, round(config.dedup_ttl * 1000))
        self._backoff = ExponentialWithJitterBackoff(base=0.01, cap=0.25)
        # A blocking pool waits for a free connection instead of raising
        # "Too many connections"; the wait is bounded by the admit deadline.
        # On a TLS store (no link) the blocking XREADGROUP goes through this pool
        # too, and must return before the socket timeout fires.
        self._pool = aioredis.BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.pool_size,
            timeout=config.admit_deadline,
            socket_timeout=config.socket_timeout + block_ms / 1000,
            socket_connect_timeout=config.connect_timeout,
            retry=Retry(self._backoff, retries=_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=10,
        )
        self.redis = aioredis.Redis(connection_pool=self._pool)
        register = self.redis.register_script
        self._admit = register(lua.ADMIT)
        self._packer = resp.AdmitPacker(self._admit.sha)
        self._ack = register(lua.ACK)
        self._retry = register(lua.RETRY)
        self._dead_letter = register(lua.DEAD_LETTER)
        self._promote = register(lua.PROMOTE)
        settings = LinkSettings.from_url(config.url, config.connect_timeout, config.socket_timeout)
        self._link = None if settings is None else Link(settings)
        self._claim_links: dict[tuple[int, str, str], Link] = {}
        self._due = DueClock()
        self._stale_cursors: dict[tuple[int, str], bytes] = {}  # see claim_stale

    def partition(self, dedup_key: str) -> int:
        n = self.partitions
        return 0 if n == 1 else zlib.crc32(dedup_key.encode()) % n

    def admit(
        self, partition: int, batch: Sequence[Admission]
    ) -> Coroutine[Any, Any, list[AdmitOutcome]]:
        """The call is written now when the link is connected (see Store.admit):
        that took the ingest from 26k to 31k req/s (benchmarks/cpu_per_request.sh),
        since Redis no longer waits for the loop's next turn to get it."""
        if self._config.wait_replicas:
            return self._admit_replicated(
                *admit_arguments(self.keys, partition, batch, self._ttl_ms)
            )
        packed = packed_admit(self._packer, self.keys, partition, batch, self._ttl_ms)
        sent = None if self._link is None else self._link.send_now(packed)
        return self._admit_reply(packed, sent)

    async def _admit_reply(
        self, packed: bytes, sent: asyncio.Future[Any] | None
    ) -> list[AdmitOutcome]:
        flags = None
        if sent is not None:
            try:
                flags = await sent
            except NoScriptError:  # Redis lost its scripts (a restart): load, then re-send
                await self._call(self._load_scripts(), "script load")
            except (RedisConnectionError, RedisTimeoutError, OSError):
                pass  # the full path below reconnects and re-sends
            except RedisError as exc:
                raise StoreUnavailable(f"admit failed: {exc}") from exc
        if flags is None:
            flags = await self._call(self._packed(packed), "admit")
        return outcomes(flags)

    async def _packed(
        self,
        packed: bytes,
        *,
        link: Link | None = None,
        reply_within: float | None = None,
        retries: int = _RETRIES,
    ) -> Any:
        """Send a prebuilt command, retrying as redis-py's client would: up to
        `retries` more times after a connection error or timeout (safe for the
        admit and the ack: a re-sent admit counts once by its request tokens, a
        re-sent ack changes nothing twice; not for a claim, see `claim`), and
        loading the scripts once if Redis lost them (a restart empties its script
        cache). Other errors raise."""
        loaded = False
        failures = 0
        while True:
            try:
                return await self._send(packed, link or self._link, reply_within)
            except NoScriptError:
                if loaded:
                    raise
                await self._call(self._load_scripts(), "script load")
                loaded = True  # a re-send after loading is not a retry
            except (RedisConnectionError, RedisTimeoutError, OSError):
                failures += 1
                if failures > retries:
                    raise
                await asyncio.sleep(self._backoff.compute(failures))

    async def _load_scripts(self) -> None:
        for script in (lua.ADMIT, lua.ACK):
            await self.redis.script_load(script)

    async def _send(self, packed: bytes, link: Link | None, reply_within: float | None) -> Any:
        """One prebuilt command and its reply: on the link (plain TCP or a unix
        socket), else (TLS) on a connection of redis-py's pool."""
        if link is not None:
            return await link.call(packed, reply_within)
        conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(packed)
            return await conn.read_response()
        except BaseException:
            # An error or a cancellation (the spool's wait_for_redis) can leave
            # a reply unread on this connection: never hand it out again.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await self._pool.release(conn)

    def _claim_link(self, partition: int, target: str, consumer: str) -> Link | None:
        """A link of each claiming loop's own: its XREADGROUP blocks in Redis."""
        if self._link is None:
            return None
        key = (partition, target, consumer)
        link = self._claim_links.get(key)
        if link is None:
            link = self._claim_links[key] = Link(self._link.settings)
        return link

    async def _admit_replicated(
        self, keys: list[str], argv: list[str | bytes | int]
    ) -> list[AdmitOutcome]:
        """The admit script, then WAIT on the same connection: no 200 until
        `wait_replicas` replicas have the write (a primary that dies before
        replicating cannot take an acked event with it). Fewer within
        `wait_timeout` counts as a failed admit: the write stays on the primary
        (a duplicate at worst), the request is spooled or answered 503."""
        wanted = self._config.wait_replicas
        pipe = self.redis.pipeline(transaction=False)
        await self._admit(keys=keys, args=argv, client=pipe)
        pipe.execute_command("WAIT", wanted, max(1, round(self._config.wait_timeout * 1000)))
        flags, replicated = await self._call(pipe.execute(), "admit")
        if int(replicated) < wanted:
            raise StoreUnavailable(f"admit reached {replicated} of {wanted} replicas (WAIT)")
        return outcomes(flags)

    # -- the delivery queue -------------------------------------------------

    async def ensure_group(self, partition: int, target: str) -> None:
        """Create the consumer group, from the stream's start: events queued
        before any forwarder ran are delivered too."""
        try:
            await self.redis.xgroup_create(
                self.keys.stream(partition, target), GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreUnavailable(f"ensure_group failed: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"ensure_group failed: {exc}") from exc

    async def claim(
        self, partition: int, target: str, consumer: str, count: int, block_ms: int
    ) -> list[Queued]:
        """New entries for this consumer (XREADGROUP >): first delivery of each.

        Never re-sent here: Redis may have run a claim whose reply was lost, and
        handed this consumer entries it never saw; a re-sent `>` would claim the
        next ones. It raises StoreUnavailable instead, and the forwarder takes the
        entries it does not hold back (`claim_orphans`) before it claims new ones."""
        stream = self.keys.stream(partition, target)
        block = ("BLOCK", block_ms) if block_ms else ()
        read = resp.command(
            ("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, *block, "STREAMS", stream, ">")
        )
        link = self._claim_link(partition, target, consumer)
        within = self._config.socket_timeout + block_ms / 1000
        sent = self._packed(read, link=link, reply_within=within, retries=0)
        reply = await self._group_read(sent, partition, target)
        entries = reply[0][1] if reply else []
        return await self._parsed(partition, target, entries, first_claim)

    async def _group_read(self, read: Awaitable[Any], partition: int, target: str) -> Any:
        """A read of the consumer group's entries; None when the stream or group
        vanished (a Redis restart without AOF, a FLUSHALL): it is recreated then,
        empty, instead of every read failing forever."""
        try:
            return await read
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise StoreUnavailable(f"claim failed: {exc}") from exc
            await self.ensure_group(partition, target)
            return None
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"claim failed: {exc}") from exc

    async def claim_own_pending(
        self, partition: int, target: str, consumer: str, count: int, after: bytes = b"0"
    ) -> list[Queued]:
        """Entries this consumer name claimed before a crash, with ids past `after`
        (XREADGROUP reading its own history)."""
        stream = self.keys.stream(partition, target)
        while True:
            read = self.redis.xreadgroup(GROUP, consumer, {stream: after}, count=count)
            reply = await self._group_read(read, partition, target)
            found = reply[0][1] if reply else []
            gone = [i for i, f in found if not f]  # acked and deleted, yet still in our PEL
            if gone:
                await self.ack(partition, target, gone)
            entries = [(i, f) for i, f in found if f]
            # A full page of gone ones is not the end: [] would tell the caller so.
            if entries or len(found) < count:
                return await self._with_delivery_counts(partition, target, consumer, entries)
            after = found[-1][0]

    async def claim_orphans(
        self,
        partition: int,
        target: str,
        consumer: str,
        holds: Callable[[bytes], bool],
        scan: int,
        count: int,
    ) -> list[Queued]:
        """Up to `count` entries pending under this consumer that it does not hold
        (`holds(id)` False): what a claim whose reply was lost handed it, or an ack
        the store refused. XPENDING lists the consumer's pending entries (up to
        `scan`) without touching them; XCLAIM then takes only the orphans. Unlike a
        read of the consumer's history, that raises no delivery counter of an entry
        in flight, and an entry acked in between is no longer pending, so XCLAIM
        leaves it out: what was delivered meanwhile never comes back."""
        stream = self.keys.stream(partition, target)
        listed = self.redis.xpending_range(stream, GROUP, "-", "+", scan, consumername=consumer)
        pending = await self._group_read(listed, partition, target)
        orphans = [p for p in pending or () if not holds(p["message_id"])]
        # Fewer than `count` only when no orphan is left (of the first `scan`): one
        # acked, deleted or reclaimed by another consumer between XPENDING and XCLAIM
        # is skipped and the next one taken in its place. The forwarder retakes until
        # a retake comes back short; one of 3 whose 3 had just been acked came back
        # empty with 19 more orphans pending, left for the reclaim (CI on 5ed57d5).
        entries: list[tuple[bytes, Any]] = []
        while orphans and len(entries) < count:
            room = count - len(entries)
            entries += await self._claim_each(stream, consumer, orphans[:room])
            orphans = orphans[room:]
        return await self._with_delivery_counts(partition, target, consumer, entries)

    async def _claim_each(
        self, stream: str, consumer: str, orphans: list[dict[str, Any]]
    ) -> list[tuple[bytes, Any]]:
        """One XCLAIM per orphan, pipelined, each with its own idle time as min-idle:
        an orphan another consumer reclaimed after XPENDING listed it has been idle
        less since, and stays with that consumer. (With the least idle time of all, a
        fresh orphan's ~0 ms took such an entry back: two gateways delivered it.)
        RETRYCOUNT keeps the delivery counter: the lost claim counted this attempt, and
        with `max_attempts: 1` a raised one dead-lettered events never sent."""
        pipe = self.redis.pipeline(transaction=False)
        for p in orphans:
            pipe.xclaim(
                stream,
                GROUP,
                consumer,
                p["time_since_delivered"],
                [p["message_id"]],
                retrycount=p["times_delivered"],
            )
        replies = await self._call(pipe.execute(), "claim")
        # One deleted meanwhile comes back without fields; one not claimed, not at all.
        return [(i, f) for claimed in replies for i, f in claimed if f]

    async def claim_stale(
        self, partition: int, target: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Queued]:
        """Entries another consumer left pending longer than min_idle_ms (XAUTOCLAIM).
        Each call goes on from where the last one's scan stopped: XAUTOCLAIM looks at
        most at 10 x count pending entries, and begun at 0-0 each time, a few free
        slots would rescan the same live entries and never reach a dead consumer's."""
        stream = self.keys.stream(partition, target)
        start = self._stale_cursors.get((partition, target), b"0-0")
        reply = await self._call(
            self.redis.xautoclaim(stream, GROUP, consumer, min_idle_ms, start, count=count),
            "claim",
        )
        self._stale_cursors[(partition, target)] = reply[0]  # 0-0 again once it wrapped
        entries = [(i, f) for i, f in reply[1] if f]
        return await self._with_delivery_counts(partition, target, consumer, entries)

    async def _with_delivery_counts(
        self, partition: int, target: str, consumer: str, entries: list[tuple[bytes, Any]]
    ) -> list[Queued]:
        # Re-read entries were attempted before: Redis raised their delivery
        # counter as part of the claim, so a crash mid-delivery still counts.
        if not entries:
            return []
        stream = self.keys.stream(partition, target)
        pending = await self._call(
            self.redis.xpending_range(
                stream, GROUP, entries[0][0], entries[-1][0], len(entries) + 100, consumer
            ),
            "claim",
        )
        counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}

        def parse(partition: int, entry_id: bytes, fields: Any) -> Queued:
            return queued(partition, entry_id, fields, counts.get(entry_id, 1))

        return await self._parsed(partition, target, entries, parse)

    async def _parsed(
        self,
        partition: int,
        target: str,
        entries: list[tuple[bytes, Any]],
        parse: Callable[[int, bytes, Any], Queued],
    ) -> list[Queued]:
        """The claimed entries as Queued. One without an event's fields (written by
        something else) is dead-lettered here with the reason, not returned: raised,
        it would end the claiming loop for good, and the next claim would meet it."""
        claimed = []
        for entry_id, fields in entries:
            try:
                claimed.append(parse(partition, entry_id, fields))
            except MalformedEntry as exc:
                now_ms = int(time.time() * 1000)
                entry = Queued(partition, entry_id, "", "", "", b"", 1)
                error = f"malformed stream entry: {exc}"
                await self.dead_letter(entry, target, 0, error, now_ms)
                log.error("malformed_entry_dead_lettered", target=target, error=error)
        return claimed

    async def ack(self, partition: int, target: str, ids: Sequence[bytes]) -> None:
        stream = self.keys.stream(partition, target)
        packed = resp.command((b"EVALSHA", self._ack.sha, 1, stream, GROUP, *ids))
        await self._call(self._packed(packed), "ack")

    async def retry_later(self, entry: Queued, target: str, delay: float) -> None:
        """Release the entry for `delay` seconds, its attempts so far made durable."""
        keys = self.keys.retry(entry.partition, target)
        args: list[bytes | str | int] = [GROUP, entry.id, self._due.due_ms(delay), entry.attempt]
        await self._call(self._retry(keys=keys, args=args), "retry")

    async def dead_letter(
        self, entry: Queued, target: str, status: int, error: str, now_ms: int
    ) -> None:
        keys = [self.keys.stream(entry.partition, target), self.keys.dead(entry.partition, target)]
        args: list[bytes | str | int] = [GROUP, entry.id, entry.attempt, status, error, now_ms]
        await self._call(self._dead_letter(keys=keys, args=args), "dead_letter")

    async def promote_due(self, partition: int, target: str) -> float | None:
        """Move due retries back onto the stream; seconds until the next falls due, if any."""
        keys = self.keys.retry(partition, target)
        now_ms = self._due.now_ms()
        _, next_due = await self._call(self._promote(keys=keys, args=[now_ms, 500]), "promote")
        return None if int(next_due) < 0 else (int(next_due) - now_ms) / 1000

    async def depth(self, partition: int, target: str) -> tuple[int, int | None]:
        """Events not yet delivered (queued + waiting to retry), and the oldest
        queued entry's first-queued time in ms."""
        stream, zset, _ = self.keys.retry(partition, target)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(stream)
            pipe.zcard(zset)
            pipe.xrange(stream, count=1)
            waiting, retrying, first = await self._call(pipe.execute(), "depth")
        oldest = None
        if first:
            entry_id, fields = first[0]
            oldest = int(fields.get(b"since") or entry_id.split(b"-")[0])
        return int(waiting) + int(retrying), oldest

    # -- dead letters -------------------------------------------------------------

    async def add_dead_letters(
        self, partition: int, target: str, letters: Sequence[Sequence[tuple[str, bytes | str]]]
    ) -> None:
        """Append dead letters made elsewhere (the spool's) to a target's dead-letter
        stream, each as its (field, value) pairs: the fields DEAD_LETTER writes."""
        key = self.keys.dead(partition, target)
        async with self.redis.pipeline(transaction=False) as pipe:
            for fields in letters:
                pipe.xadd(key, dict(fields))
            await self._call(pipe.execute(), "dead_letters")

    async def dead_letter_range(
        self, partition: int, target: str, start: str, end: str, count: int
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """One page of a target's dead letters in one partition, oldest first
        (XRANGE start end COUNT count; a start of "(id" excludes that id)."""
        key = self.keys.dead(partition, target)
        reply = await self._call(self.redis.xrange(key, start, end, count), "dead_letters")
        return [(entry_id, dict(fields)) for entry_id, fields in reply]

    async def replay_dead_letter(
        self, partition: int, target: str, entry_id: str
    ) -> tuple[str, str]:
        """Move one dead letter back onto the target's stream, atomically (lua.REPLAY_DEAD):
        ("replayed", new entry id), ("gone", "") or ("malformed", the missing field)."""
        keys = [self.keys.dead(partition, target), self.keys.stream(partition, target)]
        reply = await self._call(self._replay_dead(keys=keys, args=[entry_id]), "replay")
        outcome, *detail = (part.decode() for part in reply)
        return outcome, detail[0] if detail else ""

    async def purge_dead_letters(
        self, partition: int, target: str, entry_ids: Sequence[str]
    ) -> list[bool]:
        """Delete dead letters; per id, whether it was still there."""
        key = self.keys.dead(partition, target)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xdel(key, entry_id)
            deleted = await self._call(pipe.execute(), "purge")
        return [int(n) == 1 for n in deleted]

    @cached_property
    def _replay_dead(self) -> Any:
        return self.redis.register_script(lua.REPLAY_DEAD)

    # -- health -----------------------------------------------------------------

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
        for link in (self._link, *self._claim_links.values()):
            if link is not None:
                link.close()
        await self.redis.aclose()
        await self._pool.disconnect()

    @staticmethod
    async def _call(awaitable: Any, op: str) -> Any:
        """Await one Redis call, mapping every client error to StoreUnavailable."""
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"{op} failed: {exc}") from exc
