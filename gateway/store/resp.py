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
    (source, event type, targets' offsets, stream keys) are encoded once and kept.
    The bytes equal `command()`'s (tests/unit/test_resp.py).
    """

    def __init__(self, sha: str) -> None:
        self._head = b"$7\r\nEVALSHA\r\n" + _bulk(sha.encode())
        self._kept: dict[str, bytes] = {}
        self._names: dict[tuple[str, str], bytes] = {}  # (source, type) -> two bulk strings
        self._tails: dict[tuple[int, ...], bytes] = {}  # an event's stream offsets, packed

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
        parts = [b"", self._head, kept(str(len(markers) + len(streams)))]
        parts += [_bulk(marker.encode()) for marker in markers]
        parts += [kept(stream) for stream in streams]
        parts += (_bulk(b"%d" % ttl_ms), kept(str(len(batch))))
        count = 5 + len(markers) + len(streams)
        # An event's source and type, and its offsets' tail, repeat from event to event:
        # one dict lookup each (the bulk strings kept) instead of a call per argument.
        names, tails = self._names, self._tails
        for a, its in zip(batch, offsets, strict=True):
            token, key, digest = a.token.encode(), a.key.encode(), a.digest.encode()
            pair = names.get((a.source, a.event_type)) or self._names_of(a.source, a.event_type)
            tail = tails.get(its) or self._tail_of(its)
            parts.append(
                b"$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n"
                % (len(token), token, pair, len(key), key, len(a.body))
            )
            parts.append(a.body)
            parts.append(b"\r\n$%d\r\n%b\r\n%b" % (len(digest), digest, tail))
            count += 7 + len(its)
        parts[0] = b"*%d\r\n" % count
        return b"".join(parts)

    def _names_of(self, source: str, event_type: str) -> bytes:
        pair = _bulk(source.encode()) + _bulk(event_type.encode())
        return _keep(self._names, (source, event_type), pair)

    def _tail_of(self, offsets: tuple[int, ...]) -> bytes:
        """The count of an event's stream offsets, then each: bulk strings."""
        tail = b"".join(_bulk(b"%d" % n) for n in (len(offsets), *offsets))
        return _keep(self._tails, offsets, tail)

    def _kept_bulk(self, value: str) -> bytes:
        found = self._kept.get(value)
        return found if found is not None else _keep(self._kept, value, _bulk(value.encode()))


_MAX_KEPT = 4096  # per cache: sources, types, offsets and stream keys are few


def _keep(cache: dict[K, bytes], key: K, value: bytes) -> bytes:
    """Remember `value`; a full cache starts over (event types are the provider's:
    never unbounded)."""
    if len(cache) >= _MAX_KEPT:
        cache.clear()
    cache[key] = value
    return value


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)
