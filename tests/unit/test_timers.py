"""gateway.timers.Timeouts: asyncio.timeout's behaviour on one shared lazy timer."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from gateway.timers import Timeouts

DELAY = 0.05


def run(main: object) -> object:
    return uvloop.run(main)  # type: ignore[arg-type]


def test_a_scope_not_done_within_the_delay_raises_timeout_error() -> None:
    async def main() -> None:
        timeouts = Timeouts(DELAY)
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with pytest.raises(TimeoutError):
            async with timeouts.scope():
                await never

    run(main())


def test_a_scope_done_in_time_returns_and_a_later_one_still_expires() -> None:
    async def main() -> str:
        timeouts = Timeouts(DELAY)
        async with timeouts.scope():
            await asyncio.sleep(0)
        done = asyncio.Event()
        with pytest.raises(TimeoutError):
            async with timeouts.scope():
                await done.wait()  # never set: only the shared timer can end this
        return "ok"

    assert run(main()) == "ok"


def test_every_one_of_many_open_scopes_expires_and_the_finished_ones_do_not() -> None:
    async def main() -> list[str]:
        timeouts = Timeouts(DELAY)
        release = asyncio.Event()

        async def waiter(finishes: bool) -> str:
            try:
                async with timeouts.scope():
                    if finishes:
                        await asyncio.sleep(0)
                    else:
                        await release.wait()
            except TimeoutError:
                return "timed out"
            return "finished"

        tasks = [asyncio.create_task(waiter(i % 3 == 0)) for i in range(30)]
        return list(await asyncio.gather(*tasks))

    outcomes = run(main())
    assert outcomes == ["finished" if i % 3 == 0 else "timed out" for i in range(30)]


def test_a_cancel_from_elsewhere_is_a_cancel_not_a_timeout() -> None:
    async def main() -> None:
        timeouts = Timeouts(60.0)
        started = asyncio.Event()

        async def inside() -> None:
            async with timeouts.scope():
                started.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(inside())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_an_inner_scope_expiring_leaves_the_outer_one_running() -> None:
    async def main() -> str:
        outer, inner = Timeouts(60.0), Timeouts(DELAY)
        async with outer.scope():
            with pytest.raises(TimeoutError):
                async with inner.scope():
                    await asyncio.Event().wait()
            await asyncio.sleep(0)  # the outer scope's task is not cancelled any more
            return "outer went on"

    assert run(main()) == "outer went on"


def test_finished_scopes_are_let_go_at_once_even_when_they_finish_out_of_order() -> None:
    async def main() -> list[int]:
        timeouts = Timeouts(60.0)  # never fires here: only closing can let scopes go
        first_may_end = asyncio.Event()
        held: list[int] = []

        async def first() -> None:
            async with timeouts.scope():
                await first_may_end.wait()

        async def quick() -> None:
            async with timeouts.scope():
                await asyncio.sleep(0)

        head = asyncio.create_task(first())
        await asyncio.sleep(0)
        await asyncio.gather(*(quick() for _ in range(10)))
        held.append(len(timeouts))  # the open head keeps the closed ones behind it
        first_may_end.set()
        await head
        held.append(len(timeouts))
        return held

    assert run(main()) == [11, 0]
