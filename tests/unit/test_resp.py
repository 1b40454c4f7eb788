"""gateway.store.resp builds the bytes redis-py would send, byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from gateway.models import Admission, body_digest
from gateway.store import resp
from gateway.store.redis_shapes import Keys, admit_arguments, packed_admit


def packed_by_redis_py(args: tuple[str | bytes | int, ...]) -> bytes:
    return b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("PING",),
        ("SET", "k", b"v", "PX", 60000),
        ("EVALSHA", "0" * 40, 0),
        ("ECHO", b""),
        ("ECHO", "ünïcödé"),
        ("ECHO", b"\r\n\x00" * 5000),  # past redis-py's 6000-byte buffer cutoff
        ("ECHO", -7),
    ],
)
def test_a_command_is_packed_as_redis_py_packs_it(args: tuple[str | bytes | int, ...]) -> None:
    assert resp.command(args) == packed_by_redis_py(args)


def test_an_admit_call_is_packed_as_redis_py_packs_it() -> None:
    batch = []
    for i in range(20):
        body = b'{"idempotency_key": "k%d", "data": {"x": "\\r\\n"}}' % i
        digest = body_digest(body)
        targets = ("app", "other")[: 1 + i % 2]
        batch.append(Admission(f"s:e:k{i}", f"t:{i}", "s", "e", f"k{i}", body, digest, targets))
    keys, argv = admit_arguments(Keys("gw"), 3, batch, 86_400_000)
    args = ("EVALSHA", "f" * 40, len(keys), *keys, *argv)
    assert resp.command(args) == packed_by_redis_py(args)


_TEXT = st.text(min_size=0, max_size=12)


@st.composite
def batches(draw: st.DrawFn) -> list[Admission]:
    batch = []
    for n in range(draw(st.integers(1, 30))):
        key, body = draw(_TEXT), draw(st.binary(max_size=300))
        targets = draw(st.lists(st.sampled_from(["app", "audit", "ünï"]), min_size=0, max_size=3))
        source, event = draw(st.sampled_from(["inbox", "stripe"])), draw(_TEXT)
        batch.append(
            Admission(
                f"{source}:{event}:{key}",
                f"t:{n}",
                source,
                event,
                key,
                body,
                body_digest(body),
                tuple(dict.fromkeys(targets)),
            )
        )
    return batch


@settings(max_examples=200)
@given(batch=batches(), partition=st.integers(0, 1023), ttl_ms=st.integers(1, 10**10))
def test_the_one_pass_admit_bytes_equal_the_generic_packing(
    batch: list[Admission], partition: int, ttl_ms: int
) -> None:
    keys = Keys("gw")
    sha = "a" * 40
    markers, argv = admit_arguments(keys, partition, batch, ttl_ms)
    expected = resp.command(("EVALSHA", sha, len(markers), *markers, *argv))
    packer = resp.AdmitPacker(sha)
    assert packed_admit(packer, keys, partition, batch, ttl_ms) == expected
    assert packed_admit(packer, keys, partition, batch, ttl_ms) == expected  # kept values
