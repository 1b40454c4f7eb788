"""The Redis store's shapes, pure: its key names, the admit call's arguments and
bytes, a claimed entry as a Queued, and which server settings put events at risk.
Tested without Redis; gateway/store/redis.py makes the calls.

Key layout (every key of one call shares the `{prefix:partition}` hash tag,
so each call stays in one Redis Cluster slot):

    {gw:0}:idem:<source>:<event>:<key>   dedup marker: "<token>|<body digest>", PX TTL
    {gw:0}:q:<target>                    the target's stream of undelivered events
    {gw:0}:retry:<target>                sorted set: old entry id -> due time (ms)
    {gw:0}:retrydata:<target>            hash: old entry id -> the event waiting to retry
    {gw:0}:dead:<target>                 dead-letter stream
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.models import Admission, AdmitOutcome, Queued, marker_value
from gateway.store import resp


class Keys:
    """Named key builders: the only place key shapes are written."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{partition}}}"

    def marker(self, partition: int, dedup_key: str) -> str:
        return f"{self.tag(partition)}:idem:{dedup_key}"

    def stream(self, partition: int, target: str) -> str:
        return f"{self.tag(partition)}:q:{target}"

    def retry(self, partition: int, target: str) -> list[str]:
        tag = self.tag(partition)
        return [f"{tag}:q:{target}", f"{tag}:retry:{target}", f"{tag}:retrydata:{target}"]

    def dead(self, partition: int, target: str) -> str:
        return f"{self.tag(partition)}:dead:{target}"


def admit_arguments(
    keys: Keys, partition: int, batch: Sequence[Admission], ttl_ms: int
) -> tuple[list[str], list[str | bytes | int]]:
    """KEYS and ARGV of one admit call (pure, so it is tested without Redis): the
    markers, then the streams; ttl, the event count, the kinds (source, type and
    stream offsets, each once), then per event its marker value, kind, key, body."""
    markers = [keys.marker(partition, a.dedup_key) for a in batch]
    streams: dict[str, int] = {}
    kinds: dict[tuple[str, str, tuple[int, ...]], int] = {}
    events: list[str | bytes | int] = []
    for a in batch:
        offsets = tuple([streams.setdefault(t, len(streams) + 1) for t in a.targets])
        kind = kinds.setdefault((a.source, a.event_type, offsets), len(kinds) + 1)
        events += [marker_value(a), kind, a.key, a.body]
    argv: list[str | bytes | int] = [ttl_ms, len(batch), len(kinds)]
    for source, event_type, offsets in kinds:
        argv += [source, event_type, len(offsets), *offsets]
    return markers + [keys.stream(partition, t) for t in streams], argv + events


def packed_admit(
    packer: resp.AdmitPacker, keys: Keys, partition: int, batch: Sequence[Admission], ttl_ms: int
) -> bytes:
    """The EVALSHA of admit_arguments' KEYS and ARGV, built in one pass."""
    start = keys.marker(partition, "")  # once per call, not a call per event
    markers = [start + a.dedup_key for a in batch]
    streams: dict[str, int] = {}
    offsets = [tuple([streams.setdefault(t, len(streams) + 1) for t in a.targets]) for a in batch]
    names = [keys.stream(partition, t) for t in streams]
    return packer.pack(markers, names, ttl_ms, batch, offsets)


# The admit script's flags as outcomes: a dict lookup per event where the enum's
# own constructor took two Python calls (enum __call__ and __new__; the profile's).
_OUTCOME_OF = {int(o): o for o in AdmitOutcome}


def outcomes(flags: list[int]) -> list[AdmitOutcome]:
    """KeyError on a flag the script never returns: the batch is then answered 503."""
    of = _OUTCOME_OF
    return [of[flag] for flag in flags]


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields as a dict (RESP gives them as one flat list)."""
    it = iter(flat)
    return dict(zip(it, it, strict=True))


_FRESH = [b"source", b"type", b"key", b"body"]  # the admit script's XADD, in its order


class MalformedEntry(Exception):
    """A stream entry without an event's fields (written by something else)."""


def first_claim(partition: int, entry_id: bytes, flat: list[bytes]) -> Queued:
    """An entry read for the first time (XREADGROUP >), from its flat field list.
    Entries the admit script wrote are read by position, without a dict (a tenth of
    the drain's claim cost); any other shape (a retried entry) goes through pairs()."""
    if len(flat) == 8 and flat[0::2] == _FRESH:
        source, event_type, key, body = flat[1::2]
        try:
            return Queued(
                partition, entry_id, source.decode(), event_type.decode(), key.decode(), body, 1
            )
        except UnicodeDecodeError as exc:
            raise MalformedEntry(str(exc)) from exc
    try:
        fields = pairs(flat)
    except ValueError as exc:  # an odd number of fields
        raise MalformedEntry(str(exc)) from exc
    return queued(partition, entry_id, fields, 1)


def queued(partition: int, entry_id: bytes, fields: dict[bytes, bytes], count: int) -> Queued:
    """MalformedEntry when a field is missing or is not what the admit script writes."""
    try:
        return Queued(
            partition=partition,
            id=entry_id,
            source=fields[b"source"].decode(),
            event_type=fields[b"type"].decode(),
            key=fields[b"key"].decode(),
            body=fields[b"body"],
            attempt=int(fields.get(b"attempts", 0)) + count,
        )
    except KeyError as exc:
        raise MalformedEntry(f"no {exc.args[0].decode(errors='replace')!r} field") from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise MalformedEntry(str(exc)) from exc


def durability_problems(version: str, settings: dict[str, str]) -> list[str]:
    problems = []
    if _version_tuple(version) < (7, 0):
        problems.append(f"Redis {version} is older than 7.0: the admit script needs 7.0")
    policy = settings.get("maxmemory-policy", "")
    if policy and policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: eviction can delete dedup markers or queued "
            "events; set it to noeviction"
        )
    if settings.get("appendonly", "") == "no":
        problems.append(
            "appendonly is no: a Redis restart loses every event queued since the last "
            "snapshot; enable AOF (appendonly yes, appendfsync everysec or always)"
        )
    return problems


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return (0,)
