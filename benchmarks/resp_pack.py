"""What building one admit call's bytes costs: redis-py's pack_command against
gateway.store.resp, on a batch of seed events (the same bytes either way).

    python -m benchmarks.resp_pack [--events 64]
"""

from __future__ import annotations

import argparse
import timeit

from redis.asyncio.connection import Connection

from benchmarks.sizing import admissions
from gateway.store import resp
from gateway.store.redis import Keys, admit_arguments

SHA = "0" * 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=64)
    count = parser.parse_args().events
    keys, argv = admit_arguments(Keys("gw"), 0, admissions(count, ("app",)), 86_400_000)
    args = ("EVALSHA", SHA, len(keys), *keys, *argv)
    client = Connection()
    assert b"".join(client.pack_command(*args)) == resp.command(args)
    rounds = 2000
    theirs = timeit.timeit(lambda: client.pack_command(*args), number=rounds) / rounds
    ours = timeit.timeit(lambda: resp.command(args), number=rounds) / rounds
    print(f"{count} events per call: redis-py pack_command {theirs / count * 1e6:.2f} µs/event,")
    print(f"gateway.store.resp {ours / count * 1e6:.2f} µs/event ({theirs / ours:.1f}x)")


if __name__ == "__main__":
    main()
