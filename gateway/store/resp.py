"""RESP, the Redis wire format, for the commands on the hot path.

Per event of a 24-event admit call (`python -m benchmarks.resp_pack`): redis-py's
`pack_command` 5.1 µs (it encodes argument by argument through several layers),
`command` here 1.8 µs plus 0.6 µs for building the argument list, AdmitPacker
1.8 µs in all. gateway/store/link.py sends these bytes; the commands off the hot
path go through redis-py.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

from gateway.models import Admission

K = TypeVar("K", bound=Hashable)
Kind = tuple[str, str, tuple[int, ...]]  # an event's source, type and stream offsets


def command(args: Iterable[str | bytes | int]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts: list[bytes] = []
    add = parts.append  # three appends beat `parts += (...)` by ~10 %
    for arg in args:
        if isinstance(arg, bytes):
            value = arg
        elif isinstance(arg, str):
            value = arg.encode()
        else:
            value = b"%d" % arg
        add(b"$%d\r\n" % len(value))
        add(value)
        add(b"\r\n")
    return b"*%d\r\n" % (len(parts) // 3) + b"".join(parts)


class AdmitPacker:
    """The admit call's bytes (lua.ADMIT's KEYS and ARGV, see
    gateway.store.redis_shapes.admit_arguments) built in one pass.

    The top Python frame of the ingest profile was `command` on this call (9.5 %
    of samples, benchmarks.profile): per event it took eleven arguments one by
    one. Here an event is one format and its body; the values that repeat
    (a kind's source, type and stream offsets, stream keys) are encoded once and
    kept. The bytes equal `command()`'s (tests/unit/test_resp.py).
    """

    def __init__(self, sha: str) -> None:
        self._head = b"$7\r\nEVALSHA\r\n" + _bulk(sha.encode())
        self._kept: dict[str, bytes] = {}
        self._kinds: dict[Kind, bytes] = {}

    def pack(
        self,
        markers: Sequence[str],
        streams: Sequence[str],
        ttl_ms: int,
        batch: Sequence[Admission],
        offsets: Sequence[tuple[int, ...]],
    ) -> bytes:
        """`markers`: each event's marker key; `streams`: the stream keys;
        `offsets`: each event's 1-based offsets into `streams`."""
        kept = self._kept_bulk
        head = [b"", self._head, kept(str(len(markers) + len(streams)))]
        head += [_bulk(marker.encode()) for marker in markers]
        head += [kept(stream) for stream in streams]
        head += (_bulk(b"%d" % ttl_ms), kept(str(len(batch))))
        # This call's kinds, numbered as first seen: kind -> its number, a bulk string.
        numbered: dict[Kind, bytes] = {}
        events: list[bytes] = []
        for a, its in zip(batch, offsets, strict=True):
            kind = (a.source, a.event_type, its)
            number = numbered.get(kind) or self._number(numbered, kind)
            value, key = f"{a.token}|{a.digest}".encode(), a.key.encode()  # marker_value
            # Each event's bulk strings open with the CRLF that ends the body before it.
            events.append(
                b"\r\n$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n"
                % (len(value), value, number, len(key), key, len(a.body))
            )
            events.append(a.body)
        if events:
            events[0] = events[0][2:]
            events.append(b"\r\n")
        head.append(kept(str(len(numbered))))
        head += [self._kinds.get(kind) or self._kind_of(kind) for kind in numbered]
        count = 6 + len(markers) + len(streams) + 4 * len(batch)
        head[0] = b"*%d\r\n" % (count + sum(3 + len(kind[2]) for kind in numbered))
        head += events
        return b"".join(head)

    def _number(self, numbered: dict[Kind, bytes], kind: Kind) -> bytes:
        number = numbered[kind] = self._kept_bulk(str(len(numbered) + 1))
        return number

    def _kind_of(self, kind: Kind) -> bytes:
        """A kind's source and type, its count of stream offsets, then each."""
        source, event_type, offsets = kind
        names = _bulk(source.encode()) + _bulk(event_type.encode())
        tail = b"".join(_bulk(b"%d" % n) for n in (len(offsets), *offsets))
        return _keep(self._kinds, kind, names + tail)

    def _kept_bulk(self, value: str) -> bytes:
        found = self._kept.get(value)
        return found if found is not None else _keep(self._kept, value, _bulk(value.encode()))


_MAX_KEPT = 4096  # per cache: kinds (sources, types, offsets) and stream keys are few


def _keep(cache: dict[K, bytes], key: K, value: bytes) -> bytes:
    """Remember `value`; a full cache starts over (event types are the provider's:
    never unbounded)."""
    if len(cache) >= _MAX_KEPT:
        cache.clear()
    cache[key] = value
    return value


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)
