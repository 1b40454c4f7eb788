"""The gateway with a heap census on SIGUSR1: what benchmarks/heap_census.sh runs.

On each SIGUSR1, after a full collection, writes `<out>/census<N>.txt`: for every type
of object the collector tracks, the sum of `sys.getsizeof` over its objects (bytes),
largest first. Two censuses taken far apart under the same load show whether any
container grows with the events (a leak) or the RSS only moved with the allocator's
high-water mark.

    python -m benchmarks.heap_census OUT_DIR -- run --config config/gateway.yaml
"""

from __future__ import annotations

import collections
import gc
import signal
import sys
from pathlib import Path
from types import FrameType


def census() -> collections.Counter[str]:
    gc.collect()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        sizes[type(obj).__qualname__] += sys.getsizeof(obj)
    return sizes


def main() -> int:
    usage = "usage: python -m benchmarks.heap_census OUT_DIR -- GATEWAY-ARGS...\n\n" + __doc__
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        print(usage, file=sys.stderr)
        return 2
    out, taken = Path(sys.argv[1]), [0]

    def dump(signum: int, frame: FrameType | None) -> None:
        taken[0] += 1
        lines = (f"{size} {name}\n" for name, size in census().most_common())
        partial = out / f"census{taken[0]}.partial"
        partial.write_text("".join(lines))
        partial.rename(out / f"census{taken[0]}.txt")  # whole, once it is there

    signal.signal(signal.SIGUSR1, dump)
    from gateway.cli import main as gateway_main

    return gateway_main(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())
