"""What building one admit call's bytes costs: redis-py's pack_command against
gateway.store.resp's generic `command` and its one-pass AdmitPacker (what the
gateway uses), on a batch of seed events (the same bytes every way).

    python -m benchmarks.resp_pack [--events 64]
"""

from __future__ import annotations

import argparse
import timeit

from redis.asyncio.connection import Connection

from benchmarks.sizing import admissions
from gateway.models import Admission
from gateway.store import resp
from gateway.store.redis_shapes import Keys, admit_arguments, packed_admit

SHA = "0" * 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=64)
    count = parser.parse_args().events
    batch, names, ttl = admissions(count, ("app",)), Keys("gw"), 86_400_000
    args = _args(names, batch, ttl)
    client = Connection()
    packer = resp.AdmitPacker(SHA)
    assert b"".join(client.pack_command(*args)) == resp.command(args)
    assert packed_admit(packer, names, 0, batch, ttl) == resp.command(args)
    rounds = 2000
    ways = {
        "redis-py pack_command (args ready)": lambda: client.pack_command(*args),
        "resp.command (args ready)": lambda: resp.command(args),
        "admit_arguments + resp.command": lambda: resp.command(_args(names, batch, ttl)),
        "packed_admit (resp.AdmitPacker), what admit runs": lambda: packed_admit(
            packer, names, 0, batch, ttl
        ),
    }
    print(f"{count} events per call:")
    for name, way in ways.items():
        seconds = timeit.timeit(way, number=rounds) / rounds
        print(f"  {name:52} {seconds / count * 1e6:.2f} µs/event")


def _args(names: Keys, batch: list[Admission], ttl: int) -> tuple[str | bytes | int, ...]:
    keys, argv = admit_arguments(names, 0, batch, ttl)
    return ("EVALSHA", SHA, len(keys), *keys, *argv)


if __name__ == "__main__":
    main()
