"""Which hash for the body digest in a dedup marker (gateway.models.body_digest)?

The digest is made for every request, over the whole body, on the server's core. Each
candidate gives 96 bits as hex, as the marker stores them; best of 5 repeats, µs per body.
SHA-256 and SHA-1 run in hardware where the CPU has the SHA extensions (`sha_ni` in
/proc/cpuinfo, printed first); BLAKE2b never does; XXH3 (the xxhash package, not a
cryptographic hash: the digest guards nothing) uses the CPU's vector units.

    python -m benchmarks.digest_choice
"""

from __future__ import annotations

import hashlib
import timeit
from collections.abc import Callable
from pathlib import Path

import xxhash

from gateway.models import body_digest

SIZES = (1024, 64 * 1024)  # the harness' two payloads


def candidates(body: bytes) -> dict[str, Callable[[], str]]:
    return {
        "blake2b, 12 bytes (the digest before 2026-12-07)": lambda: hashlib.blake2b(
            body, digest_size=12
        ).hexdigest(),
        "sha256, first 12 bytes (2026-12-07 to 2026-12-08)": lambda: (
            hashlib.sha256(body).digest()[:12].hex()
        ),
        "sha1, first 12 bytes": lambda: hashlib.sha1(body).digest()[:12].hex(),
        "xxh3_128, first 12 bytes": lambda: xxhash.xxh3_128_hexdigest(body)[:24],
        "body_digest (what the gateway runs)": lambda: body_digest(body),
    }


def per_call_us(call: Callable[[], str], size: int) -> float:
    number = max(200, 20_000_000 // size)
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def main() -> None:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    print(f"CPU SHA extensions (sha_ni): {'yes' if 'sha_ni' in flags else 'no'}")
    for size in SIZES:
        body = bytes(range(256)) * (size // 256)
        print(f"{size:,}-byte body:")
        for name, call in candidates(body).items():
            print(f"  {name:52} {per_call_us(call, size):8.2f} µs")


if __name__ == "__main__":
    main()
