"""The upstream pool against scripted raw-socket targets on the same uvloop loop.

Each target connection runs a script: read request bytes, then send exact bytes
(split, delayed, truncated, garbage) or close. Synchronization is by events and
the target's own observations (requests read, EOF seen), never by sleeping.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar, cast

import pytest
import uvloop

from gateway.upstream import (
    ConnectError,
    Pool,
    PoolClosed,
    ProtocolError,
    Response,
    UpstreamError,
    UpstreamTimeout,
)

T = TypeVar("T")
GUARD_SECONDS = 10.0  # a hang fails the test instead of stalling the suite


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def guarded() -> T:
        async with asyncio.timeout(GUARD_SECONDS):
            return await coro

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(guarded())


def post(body: bytes = b'{"n":1}') -> tuple[bytes, bytes]:
    head = b"POST /events HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body), body


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class Peer:
    """The target's side of one connection."""

    def __init__(self, target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.target = target
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> bytes | None:
        """One whole request (head and Content-Length body), or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise AssertionError(f"EOF inside a request head: {exc.partial!r}") from exc
            self.target.saw_eof()
            return None
        except ConnectionResetError:  # an abort: closed all the same
            self.target.saw_eof()
            return None
        match = re.search(rb"(?i)content-length: *(\d+)", head)
        assert match is not None
        request = head + await self.reader.readexactly(int(match.group(1)))
        await self.target.received(request)
        return request

    async def send(self, *pieces: bytes) -> None:
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()
            if len(pieces) > 1:
                # A yield, not a wait: the client's read runs between our writes, so each
                # piece reaches its parser on its own. The assertions hold either way.
                await asyncio.sleep(0)

    async def until_closed_by_client(self) -> None:
        assert await self.read_request() is None


Script = Callable[[Peer], Awaitable[None]]


class Target:
    """A scripted HTTP server: connection i runs scripts[i], later ones the last script."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self.port = 0
        self.connections = 0
        self.closed_by_client = 0
        self.requests: list[bytes] = []
        self.changed = asyncio.Event()
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def received(self, request: bytes) -> None:
        self.requests.append(request)
        self.changed.set()

    def saw_eof(self) -> None:
        self.closed_by_client += 1
        self.changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until the target's observations satisfy `predicate`."""
        while not predicate():
            self.changed.clear()
            await self.changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        self.changed.set()
        try:
            await script(Peer(self, reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self.port
        finally:
            server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
        assert not self.errors, self.errors


@asynccontextmanager
async def pool_on(target: Target, **options: Any) -> AsyncIterator[Pool]:
    settings: dict[str, Any] = {"concurrency": 4, "connect_timeout": 2.0, "timeout": 5.0}
    async with target.serving() as port:
        pool = Pool("127.0.0.1", port, **(settings | options))
        try:
            yield pool
        finally:
            await pool.aclose()


async def request_by_post(pool: Pool, head: bytes, body: bytes) -> Response:
    """Pool.request's contract, kept by Pool.post: the forwarder's way in."""
    answered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def done(response: Response | None, error: UpstreamError | None) -> None:
        assert not answered.done(), "done ran twice"
        assert (response is None) != (error is None)
        if error is None:
            answered.set_result(cast(Response, response))
        else:
            answered.set_exception(error)

    pool.post(head + body, done)
    assert not answered.done(), "done ran inside post()"
    return await answered


@pytest.fixture(params=["request", "post"])
def way_in(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs a test through Pool.request as written, and again with every
    pool.request(...) going through Pool.post (a seam this project owns)."""
    if request.param == "post":
        monkeypatch.setattr(Pool, "request", request_by_post)


both_ways = pytest.mark.usefixtures("way_in")


async def answer_all(peer: Peer) -> None:
    while await peer.read_request() is not None:
        await peer.send(ok())


# -- response framing ----------------------------------------------------------


@both_ways
def test_content_length_response_is_returned_with_lower_cased_headers() -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b'{"accepted":true}', b"X-Request-Id: r-1\r\n"))
        await peer.until_closed_by_client()

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            response = await pool.request(*post(b'{"n":7}'))
        assert response.status == 200
        assert response.body == b'{"accepted":true}'
        assert response.header(b"x-request-id") == b"r-1"
        assert response.header(b"content-length") == b"17"
        assert response.header(b"missing") is None
        assert target.requests == [b"".join(post(b'{"n":7}'))]

    run(main())


@both_ways
def test_chunked_response_split_into_many_writes_is_reassembled() -> None:
    payload = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    payload += b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"

    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(*(payload[i : i + 1] for i in range(len(payload))))

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            first = await pool.request(*post())
            second = await pool.request(*post())
            assert (first.status, first.body) == (201, b"hello, world")
            assert second.body == b"hello, world"
            assert target.connections == 1  # chunked framing lets the connection be reused

    run(main())


@both_ways
def test_close_delimited_body_ends_at_eof_and_its_connection_is_not_reused() -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"until ", b"eof")

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            assert (await pool.request(*post())).body == b"until eof"
            assert pool.idle == 0
            assert (await pool.request(*post())).body == b"until eof"
            assert target.connections == 2

    run(main())


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhalf\r\n",
    ],
    ids=["content-length", "chunked"],
)
@both_ways
def test_truncated_body_is_a_protocol_error_and_not_retried(reply: bytes) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(reply)

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            with pytest.raises(ProtocolError, match="mid-response"):
                await pool.request(*post())
            assert (pool.active, pool.idle) == (0, 0)
        assert target.connections == 1

    run(main())


@both_ways
def test_interim_100_continue_is_skipped() -> None:
    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n", ok(b"final"))

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            response = await pool.request(*post())
            assert (response.status, response.body) == (200, b"final")
            assert pool.idle == 1

    run(main())


@both_ways
def test_malformed_response_is_a_protocol_error_and_the_connection_is_dropped() -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HELLO THERE\r\n\r\n")
        await peer.until_closed_by_client()

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            with pytest.raises(ProtocolError, match="malformed"):
                await pool.request(*post())
            assert (pool.active, pool.idle) == (0, 0)
            await target.until(lambda: target.closed_by_client == 1)

    run(main())


@both_ways
def test_oversized_body_is_capped_and_the_rest_read_and_discarded() -> None:
    big = bytes(range(256)) * 1024  # 256 KiB

    async def main() -> None:
        async def script(peer: Peer) -> None:
            while await peer.read_request() is not None:
                await peer.send(ok(big))

        target = Target(script)
        async with pool_on(target, max_body=1000) as pool:
            response = await pool.request(*post())
            assert response.body == big[:1000]
            assert response.header(b"content-length") == str(len(big)).encode()
            assert pool.idle == 1  # the whole body was read: the connection stays usable
            assert (await pool.request(*post())).body == big[:1000]
        assert target.connections == 1

    run(main())


@both_ways
def test_endless_response_head_is_a_protocol_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (128 << 10))
        await peer.until_closed_by_client()

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            with pytest.raises(ProtocolError, match="head larger"):
                await pool.request(*post())

    run(main())


@both_ways
def test_bytes_after_the_response_make_the_connection_unusable() -> None:
    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(ok() + b"HTTP/1.1 200 OK\r\n")

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            assert (await pool.request(*post())).body == b"ok"
            assert pool.idle == 0
            assert (await pool.request(*post())).body == b"ok"
        assert target.connections == 2

    run(main())


# -- keep-alive ------------------------------------------------------------------


@both_ways
def test_keep_alive_connection_is_reused() -> None:
    async def main() -> None:
        target = Target(answer_all)
        async with pool_on(target) as pool:
            for _ in range(3):
                assert (await pool.request(*post())).status == 200
            assert repr(pool).endswith("active=0 idle=1 queued=0 concurrency=4>")
        assert target.connections == 1
        assert len(target.requests) == 3

    run(main())


@pytest.mark.parametrize(
    "reply",
    [
        ok(extra=b"Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
@both_ways
def test_response_that_ends_the_connection_is_honoured(reply: bytes) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(reply)
        await peer.until_closed_by_client()

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            assert (await pool.request(*post())).body == b"ok"
            assert pool.idle == 0
            await target.until(lambda: target.closed_by_client == 1)  # we closed it
            assert (await pool.request(*post())).body == b"ok"
        assert target.connections == 2

    run(main())


@both_ways
def test_http_1_0_keep_alive_response_is_reused() -> None:
    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
            )

    async def main() -> None:
        target = Target(script)
        async with pool_on(target) as pool:
            await pool.request(*post())
            await pool.request(*post())
        assert target.connections == 1

    run(main())


@both_ways
def test_idle_connection_closed_by_the_target_is_dropped_before_reuse() -> None:
    async def first(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok())
        peer.writer.write_eof()  # an idle-timeout close, as a keep-alive server does
        await peer.until_closed_by_client()

    async def main() -> None:
        target = Target(first, answer_all)
        async with pool_on(target) as pool:
            await pool.request(*post())
            await target.until(lambda: target.closed_by_client == 1)
            assert pool.idle == 0  # seen as lost while idle, not discovered by a request
            assert (await pool.request(*post())).body == b"ok"
        assert target.connections == 2
        assert len(target.requests) == 2  # no request was spent on the dead connection

    run(main())


@both_ways
def test_stale_keep_alive_connection_is_retried_once_on_a_fresh_one() -> None:
    async def first(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b"one"))
        await peer.read_request()  # the race: the request arrives as we decide to close

    async def main() -> None:
        target = Target(first, answer_all)
        async with pool_on(target) as pool:
            assert (await pool.request(*post())).body == b"one"
            assert (await pool.request(*post(b"again"))).body == b"ok"
            assert pool.idle == 1
        assert target.connections == 2
        assert [r.endswith(b"again") for r in target.requests] == [False, True, True]

    run(main())


@both_ways
def test_fresh_connection_closed_unanswered_is_not_retried() -> None:
    async def first(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok())
        await peer.read_request()

    async def hang_up(peer: Peer) -> None:
        await peer.read_request()

    async def main() -> None:
        target = Target(first, hang_up)
        async with pool_on(target) as pool:
            await pool.request(*post())
            with pytest.raises(ProtocolError, match="before any response byte"):
                await pool.request(*post())  # stale, retried once, and the retry hung up too
            assert (pool.active, pool.idle) == (0, 0)
        assert target.connections == 2
        assert len(target.requests) == 3

    run(main())


# -- concurrency and slots -------------------------------------------------------


def holding(release: asyncio.Event) -> Script:
    async def script(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            await release.wait()
            await peer.send(ok(request.rpartition(b"\r\n\r\n")[2]))

    return script


def test_concurrency_cap_queues_callers_until_slots_free_up() -> None:
    async def main() -> None:
        release = asyncio.Event()
        target = Target(holding(release))
        async with pool_on(target, concurrency=3) as pool:
            calls = [asyncio.create_task(pool.request(*post(b"%d" % i))) for i in range(8)]
            await target.until(lambda: len(target.requests) == 3)
            assert repr(pool) == (
                f"<Pool 127.0.0.1:{target.port} active=3 idle=0 queued=5 concurrency=3>"
            )
            assert (pool.active, pool.queued) == (3, 5)
            release.set()
            bodies = [r.body for r in await asyncio.gather(*calls)]
            assert bodies == [b"%d" % i for i in range(8)]
            assert (pool.active, pool.idle, pool.queued) == (0, 3, 0)
        assert target.connections == 3

    run(main())


def test_queued_callers_are_served_in_arrival_order() -> None:
    async def main() -> None:
        release = asyncio.Event()
        target = Target(holding(release))
        async with pool_on(target, concurrency=1) as pool:
            calls = [asyncio.create_task(pool.request(*post(b"%d" % i))) for i in range(6)]
            await target.until(lambda: len(target.requests) == 1)
            release.set()
            await asyncio.gather(*calls)
        assert [r.rpartition(b"\r\n\r\n")[2] for r in target.requests] == [
            b"%d" % i for i in range(6)
        ]

    run(main())


def test_cancelled_request_closes_its_connection_and_releases_its_slot() -> None:
    async def never_answer(peer: Peer) -> None:
        await peer.read_request()
        await peer.until_closed_by_client()

    async def main() -> None:
        target = Target(never_answer, answer_all)
        async with pool_on(target, concurrency=1) as pool:
            call = asyncio.create_task(pool.request(*post()))
            await target.until(lambda: len(target.requests) == 1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert (pool.active, pool.idle, pool.queued) == (0, 0, 0)
            await target.until(lambda: target.closed_by_client == 1)
            assert (await pool.request(*post())).body == b"ok"  # the one slot is free
        assert target.connections == 2

    run(main())


def test_cancelled_queued_caller_leaves_the_queue() -> None:
    async def main() -> None:
        release = asyncio.Event()
        target = Target(holding(release))
        async with pool_on(target, concurrency=1) as pool:
            held = asyncio.create_task(pool.request(*post(b"held")))
            queued = asyncio.create_task(pool.request(*post(b"queued")))
            await target.until(lambda: len(target.requests) == 1)
            assert pool.queued == 1
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert (pool.active, pool.queued) == (1, 0)
            release.set()
            assert (await held).body == b"held"
            assert (pool.active, pool.idle) == (0, 1)
        assert len(target.requests) == 1

    run(main())


def test_slot_handed_to_a_caller_cancelled_before_it_resumes_is_passed_on() -> None:
    async def main() -> None:
        release = asyncio.Event()
        target = Target(holding(release))
        async with pool_on(target, concurrency=1) as pool:
            second: asyncio.Task[Any] | None = None

            async def first_then_cancel_second() -> None:
                await pool.request(*post(b"first"))
                # The slot was just handed to `second`, which has not run yet.
                assert second is not None
                second.cancel()

            first = asyncio.create_task(first_then_cancel_second())
            second = asyncio.create_task(pool.request(*post(b"second")))
            third = asyncio.create_task(pool.request(*post(b"third")))
            await target.until(lambda: len(target.requests) == 1)
            assert pool.queued == 2
            release.set()
            await first
            with pytest.raises(asyncio.CancelledError):
                await second
            assert (await third).body == b"third"
            assert (pool.active, pool.queued) == (0, 0)

    run(main())


# -- timeouts and connect errors -------------------------------------------------


@both_ways
def test_slow_response_head_raises_upstream_timeout_and_the_connection_is_closed() -> None:
    async def slow(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok())
        await peer.read_request()
        await peer.until_closed_by_client()  # never answers the second request

    async def main() -> None:
        target = Target(slow, answer_all)
        async with pool_on(target, timeout=0.2) as pool:
            await pool.request(*post())
            with pytest.raises(UpstreamTimeout):
                await pool.request(*post())
            assert (pool.active, pool.idle) == (0, 0)
            await target.until(lambda: target.closed_by_client == 1)
            assert (await pool.request(*post())).body == b"ok"
        assert target.connections == 2

    run(main())


@both_ways
def test_connect_refused_is_a_connect_error() -> None:
    async def main() -> None:
        with bound_port() as port:  # bound, not listening: the kernel refuses
            pool = Pool("127.0.0.1", port, concurrency=2, connect_timeout=2.0, timeout=5.0)
            with pytest.raises(ConnectError, match="refused"):
                await pool.request(*post())
            assert (pool.active, pool.idle) == (0, 0)
            await pool.aclose()

    run(main())


@both_ways
def test_connect_that_gets_no_answer_times_out_as_a_connect_error() -> None:
    async def main() -> None:
        with unanswered_port() as port:
            pool = Pool("127.0.0.1", port, concurrency=1, connect_timeout=0.2, timeout=5.0)
            try:
                with pytest.raises(ConnectError, match="no answer"):
                    await pool.request(*post())
                assert pool.active == 0
            finally:
                await pool.aclose()

    run(main())


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A listener whose accept queue is full drops further SYNs: a connect hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


@contextmanager
def bound_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- closing ---------------------------------------------------------------------


@both_ways
def test_aclose_closes_idle_connections_and_later_requests_raise() -> None:
    async def main() -> None:
        target = Target(answer_all)
        async with pool_on(target) as pool:
            await pool.request(*post())
            await pool.aclose()
            await target.until(lambda: target.closed_by_client == 1)
            with pytest.raises(PoolClosed):
                await pool.request(*post())

    run(main())


def test_aclose_fails_queued_callers() -> None:
    async def main() -> None:
        target = Target(holding(asyncio.Event()))
        async with pool_on(target, concurrency=1) as pool:
            held = asyncio.create_task(pool.request(*post()))
            queued = asyncio.create_task(pool.request(*post()))
            await target.until(lambda: len(target.requests) == 1)
            await pool.aclose()
            with pytest.raises(PoolClosed):
                await queued
            with pytest.raises(ProtocolError):
                await held
            assert (pool.active, pool.idle, pool.queued) == (0, 0, 0)

    run(main())


# -- post: the forwarder's callback path -------------------------------------------


def test_done_may_post_the_next_request_on_the_same_connection() -> None:
    # The forwarder posts its next entry from inside `done`. The connection that
    # just answered is the idle one it gets: the next request goes out on it while
    # its data_received is still on the stack. A 100 KiB answer also checks that
    # its bytes do not count against the next response's head limit.
    big = b"x" * (100 << 10)

    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(ok(big))

    async def main() -> None:
        target = Target(script)
        async with pool_on(target, concurrency=1) as pool:
            bodies: list[int] = []
            finished = asyncio.get_running_loop().create_future()

            def done(response: Response | None, error: UpstreamError | None) -> None:
                if error is not None:
                    finished.set_exception(error)
                    return
                assert response is not None
                bodies.append(len(response.body))
                if len(bodies) < 5:
                    pool.post(b"".join(post()), done)
                else:
                    finished.set_result(None)

            pool.post(b"".join(post()), done)
            await finished
            assert bodies == [len(big)] * 5
            assert (pool.active, pool.idle) == (0, 1)
        assert target.connections == 1

    run(main())


async def closing_answers_pool_closed(pool: Pool, outcome: asyncio.Future[Any]) -> None:
    """aclose() with a post on its way: its done gets PoolClosed, its slot is free."""
    await pool.aclose()
    response, error = await outcome
    assert response is None
    assert isinstance(error, PoolClosed)
    assert pool.active == 0


def test_aclose_answers_a_post_still_connecting_with_pool_closed() -> None:
    async def main() -> None:
        with unanswered_port() as port:
            pool = Pool("127.0.0.1", port, concurrency=1, connect_timeout=5.0, timeout=5.0)
            outcome = asyncio.get_running_loop().create_future()
            pool.post(b"".join(post()), lambda *answer: outcome.set_result(answer))
            await closing_answers_pool_closed(pool, outcome)

    run(main())


def test_aclose_during_a_posts_resend_answers_it_and_frees_its_slot() -> None:
    async def first(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b"one"))
        await peer.read_request()  # then closes unanswered: a stale keep-alive

    async def main() -> None:
        target = Target(first, holding(asyncio.Event()))  # the resend is never answered
        async with pool_on(target) as pool:
            assert (await request_by_post(pool, *post())).body == b"one"
            outcome = asyncio.get_running_loop().create_future()
            pool.post(b"".join(post(b"again")), lambda *answer: outcome.set_result(answer))
            await target.until(lambda: len(target.requests) == 3)  # resent, held
            await closing_answers_pool_closed(pool, outcome)

    run(main())
