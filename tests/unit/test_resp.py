"""gateway.store.resp builds the bytes redis-py would send, byte for byte."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection

from gateway.models import Admission, body_digest
from gateway.store import resp
from gateway.store.redis import Keys, admit_arguments


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
