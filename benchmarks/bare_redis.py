"""The bare server plus the least Redis work a durable (or merely checked) ack needs.

Two baselines on the same uvloop + httptools server as `benchmarks.bare_server`:

- `--mode admit` (bare + admit): every POST is admitted durably before its 200, and
  all the POSTs completed in one event-loop tick go to Redis in ONE call (EVALSHA of
  `ADMIT` below, through redis-py's asyncio client with hiredis, like the gateway):
  per event one `SET marker NX PX ttl`, and when the marker was new, one `XADD` of
  the event (source, type, key, body: the gateway's stream fields) to a stream.
  This is the cost of durability alone: no JSON parsing (the idempotency key is
  found with two `bytes.find`s), no routing, signatures, metrics or forwarding.
- `--mode call` (bare + one awaited Redis call): every POST awaits one
  `SET marker 1 NX PX ttl` of its own before its 200: one round trip's latency.

Both answer `{"status":"accepted"}` or `{"status":"duplicate"}` (marker already
set), and any other method with a canned 200 at once (the harness's readiness
probe). Deliberately independent of the gateway's code (gateway/ingest.py,
gateway/admit.py): the script is our own minimal one, not gateway/store/lua.py's.

    python -m benchmarks.bare_redis --mode admit --port 8080 --store-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import collections
from typing import Any, cast

import redis.asyncio as aioredis
import uvloop

from benchmarks.serving import BAD_REQUEST, ReplyingProtocol, serve_until_signal

# One call per tick: KEYS = the batch's markers, then the stream. ARGV = ttl_ms,
# source, type, then key and body per event. Returns 1 (new) or 0 (seen) per event.
# `#!lua` makes Redis refuse the whole script when over maxmemory, as the gateway's
# does. The gateway's own script does one more command per event (GET, then XADD,
# then SET with its request token): it enqueues before it marks, so that a failure
# midway can only leave a duplicate.
ADMIT = """#!lua
local ttl, source, etype = ARGV[1], ARGV[2], ARGV[3]
local n = #KEYS - 1
local stream = KEYS[n + 1]
local out = {}
for i = 1, n do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ttl) then
    redis.call('XADD', stream, '*', 'source', source, 'type', etype,
      'key', ARGV[2 + 2 * i], 'body', ARGV[3 + 2 * i])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

SOURCE, EVENT_TYPE = b"inboxcomponents", b"message.received"
MARKER_PREFIX = b"{bench:0}:idem:"
STREAM = b"{bench:0}:q:app"
TTL_MS = 24 * 3600 * 1000
KEY_FIELD = b'"idempotency_key"'


def _reply(body: bytes, close: bool = False) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    return head % len(body) + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body


ACCEPTED = {False: _reply(b'{"status":"accepted"}'), True: _reply(b'{"status":"accepted"}', True)}
DUPLICATE = {
    False: _reply(b'{"status":"duplicate"}'),
    True: _reply(b'{"status":"duplicate"}', True),
}
UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


def idempotency_key(body: bytes) -> bytes | None:
    """The value of the first "idempotency_key" string member, without parsing JSON."""
    at = body.find(KEY_FIELD)
    if at < 0:
        return None
    start = body.find(b'"', body.find(b":", at + len(KEY_FIELD)) + 1) + 1
    end = body.find(b'"', start)
    return body[start:end] if 0 < start <= end else None


class Slot:
    """One request's place in its connection's reply order."""

    __slots__ = ("keep_alive", "reply")

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.reply: bytes | None = None


class Backend:
    """What a POST costs beyond the bare server: `submit` answers `slot` later."""

    def __init__(self, client: aioredis.Redis, mode: str) -> None:
        self._client = client
        self._script = client.register_script(ADMIT)
        self._mode = mode
        self._batch: list[tuple[Slot, RedisProtocol, bytes, bytes]] = []
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, slot: Slot, conn: RedisProtocol, key: bytes, body: bytes) -> None:
        if self._mode == "call":
            self._spawn(self._set_nx(slot, conn, key))
            return
        if not self._batch:  # the first admit of this tick: flush once the tick ends
            self._loop.call_soon(self._flush)
        self._batch.append((slot, conn, key, body))

    def _spawn(self, work: Any) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set_nx(self, slot: Slot, conn: RedisProtocol, key: bytes) -> None:
        try:
            fresh = await self._client.set(MARKER_PREFIX + key, b"1", nx=True, px=TTL_MS)
        except (aioredis.RedisError, OSError):
            conn.answer(slot, UNAVAILABLE)
            return
        conn.answer(slot, (ACCEPTED if fresh else DUPLICATE)[not slot.keep_alive])

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._spawn(self._admit(batch))

    async def _admit(self, batch: list[tuple[Slot, RedisProtocol, bytes, bytes]]) -> None:
        keys = [MARKER_PREFIX + key for _, _, key, _ in batch]
        keys.append(STREAM)
        args: list[bytes | int] = [TTL_MS, SOURCE, EVENT_TYPE]
        for _, _, key, body in batch:
            args += (key, body)
        try:
            flags = await self._script(keys=keys, args=args)
        except (aioredis.RedisError, OSError):
            flags = None
        for i, (slot, conn, _, _) in enumerate(batch):
            if flags is None:
                conn.answer(slot, UNAVAILABLE)
            else:
                conn.answer(slot, (ACCEPTED if flags[i] else DUPLICATE)[not slot.keep_alive])


class RedisProtocol(ReplyingProtocol):
    """One connection: collect each POST's body, hand it to the backend, reply in order."""

    __slots__ = ("_backend", "_body", "_pending")

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._body: list[bytes] = []
        self._pending: collections.deque[Slot] = collections.deque()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self._body)
        self._body.clear()
        slot = Slot(self._parser.should_keep_alive())
        self._pending.append(slot)
        if self._parser.get_method() != b"POST":
            self.answer(slot, ACCEPTED[not slot.keep_alive])
            return
        key = idempotency_key(body)
        if key is None:
            self.answer(slot, BAD_REQUEST)
            return
        self._backend.submit(slot, self, key, body)

    def answer(self, slot: Slot, reply: bytes) -> None:
        """Fill `slot`; write every reply that is now first in line."""
        slot.reply = reply
        pending = self._pending
        while pending and pending[0].reply is not None:
            done = pending.popleft()
            reply = cast(bytes, done.reply)
            self._write(reply, close=not done.keep_alive or reply in (BAD_REQUEST, UNAVAILABLE))


async def serve(host: str, port: int, store_url: str, mode: str) -> None:
    """Serve until SIGTERM or SIGINT, then close the listener and return."""
    client = aioredis.Redis.from_url(store_url)
    await client.ping()  # ready means Redis answers too
    backend = Backend(client, mode)
    try:
        await serve_until_signal(lambda: RedisProtocol(backend), host, port, f"bare_redis ({mode})")
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("admit", "call"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store-url", required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port, args.store_url, args.mode))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
