"""What the admit script costs Redis: the gateway's (gateway/store/lua.py ADMIT)
against bare_admit's minimal one (benchmarks/bare_redis.py ADMIT), per event.

Both run as EVALSHA calls of `--batch` fresh events (1 KiB bodies, one target), in
interleaved rounds on one redis-server (AOF everysec, as the harness starts it), with
the server's own account of each script's time: INFO commandstats' usec_per_call for
EVALSHA, divided by the batch. The ratio is what the gateway's extra work per event
(the request token and body digest in the marker, the duplicate-with-another-body
check, the unmark after a failed XADD) costs Redis, the process it shares a CPU with
wrk in the harness.

    python -m benchmarks.lua_admit [--calls 2000] [--batch 24] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import redis

from benchmarks import bare_redis
from benchmarks.bench import redis_beside
from gateway.models import Admission, body_digest
from gateway.store import lua
from gateway.store.redis_shapes import Keys, admit_arguments

BODY = b'{"padding":"' + b"x" * 1000 + b'"}'
Call = Callable[[int, int], list[object]]  # (round, call) -> KEYS + ARGV


def gateway_call(batch: int) -> Call:
    """The gateway's own KEYS and ARGV (redis_shapes.admit_arguments), one target."""
    keys, digest = Keys("gw"), body_digest(BODY)

    def build(rnd: int, call: int) -> list[object]:
        names = [f"g{rnd}-{call}-{i}" for i in range(batch)]
        events = [
            Admission(f"src:e:{k}", f"t:{k}", "src", "e", k, BODY, digest, ("app",)) for k in names
        ]
        call_keys, argv = admit_arguments(keys, 0, events, 86_400_000)
        return [len(call_keys), *call_keys, *argv]

    return build


def bare_call(batch: int) -> Call:
    def build(rnd: int, call: int) -> list[object]:
        keys = [f"{{bench:0}}:idem:b{rnd}-{call}-{i}" for i in range(batch)]
        argv: list[object] = [86_400_000, "src", "e"]
        for i in range(batch):
            argv += [f"b{rnd}-{call}-{i}", BODY]
        return [len(keys) + 1, *keys, "{bench:0}:q:app", *argv]

    return build


def per_event(client: redis.Redis, script: str, build: Call, rnd: int, calls: int) -> float:
    """µs of Redis' time per event over `calls` EVALSHAs (each fresh: nothing is a duplicate)."""
    sha = client.script_load(script)
    client.config_resetstat()
    batch = 0
    for call in range(calls):
        args = build(rnd, call)
        batch = int(str(args[0])) - 1
        client.evalsha(sha, *args)  # type: ignore[arg-type]
    stats = client.info("commandstats")["cmdstat_evalsha"]
    client.flushall()
    return float(stats["usec_per_call"]) / batch


def measure(url: str, calls: int, batch: int, rounds: int) -> list[tuple[float, float]]:
    with redis.Redis.from_url(url) as client:
        per_event(client, lua.ADMIT, gateway_call(batch), -1, 50)  # warm up
        return [
            (
                per_event(client, lua.ADMIT, gateway_call(batch), rnd, calls),
                per_event(client, bare_redis.ADMIT, bare_call(batch), rnd, calls),
            )
            for rnd in range(rounds)
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="EVALSHAs per script per round")
    parser.add_argument("--batch", type=int, default=24, help="events per call (ADMIT_CHUNK)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args()
    with redis_beside(pin_self=False) as (url, _):
        results = measure(url, args.calls, args.batch, args.rounds)
    print(f"{args.calls:,} EVALSHAs of {args.batch} fresh 1 KiB events per script and round")
    for rnd, (gateway, bare) in enumerate(results, 1):
        print(
            f"round {rnd}: gateway {gateway:5.2f} µs/event, bare_admit {bare:5.2f} µs/event, "
            f"{gateway / bare:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
