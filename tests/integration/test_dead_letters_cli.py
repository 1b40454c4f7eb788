"""`webhook-gateway dead-letters list|show|replay|purge` as an operator runs it:
a real gateway dead-letters events into a real redis-server, the CLI is a
subprocess, and a replayed event is delivered by the running gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import redis

from gateway.deadletters_cli import age
from tests.support.configs import config_variant
from tests.support.processes import ROOT, GatewayProcess, RedisServer, free_port, wait_until
from tests.support.sink import Sink
from tests.support.webhooks import post_once, seed, with_key

pytestmark = pytest.mark.integration

QUEUE, DEAD = "{gw:0}:q:app", "{gw:0}:dead:app"
AUDIT_DEAD = "{gw:0}:dead:audit"
ENTRY_ID = r"[0-9]+-[0-9]+"
SEED_KEY = b"ae74038cfaa2ead7095ef0517ead67f58eeca1abeb8dc60fa7a39b3bdfb04793"


class Cli:
    """`python -m gateway dead-letters ...` against one Redis and config file."""

    def __init__(self, store_url: str, config: str = "config/gateway.yaml") -> None:
        self.store_url = store_url
        self.config = config

    def __call__(self, action: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "gateway", "dead-letters", action, "--config"]
        return subprocess.run(
            [*command, self.config, *args],
            cwd=ROOT,
            env={**os.environ, "STORE_URL": self.store_url},
            capture_output=True,
            timeout=30,
        )


def lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stdout.decode().splitlines()


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert "Traceback" not in err + result.stdout.decode()
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture
def cli(redis_server: RedisServer, redis_db: redis.Redis) -> Cli:
    return Cli(redis_server.url)


@pytest.fixture
def failing_gateway(start_gateway: Callable[..., GatewayProcess], sink: Sink) -> GatewayProcess:
    """A gateway that dead-letters every event after one attempt: the app answers 500."""
    sink.default_status = 500
    return start_gateway(FORWARD_MAX_ATTEMPTS="1")


def dead_letter(gw: GatewayProcess, db: redis.Redis, *keys: str) -> list[bytes]:
    """Post one event per key, each dead-lettered before the next is posted
    (so their order is known); their dead-letter ids."""
    for n, key in enumerate(keys, start=1):
        assert post_once(gw.port, with_key(key)).status == 200
        wait_until(lambda n=n: db.xlen(DEAD) == n, what=f"dead letter {key}")
    return [entry_id for entry_id, _ in db.xrange(DEAD)]


def settled(db: redis.Redis) -> bool:
    if db.xlen(QUEUE):
        return False
    return db.xpending(QUEUE, "gateway")["pending"] == 0


def test_list_shows_each_dead_letter_oldest_first_then_the_count(
    failing_gateway: GatewayProcess, redis_db: redis.Redis, cli: Cli
) -> None:
    ids = dead_letter(failing_gateway, redis_db, "dl-first", "dl-second")
    result = cli("list")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    *events, count = lines(result)
    assert count == "2 dead letters"
    assert len(events) == 2
    for line, entry_id, key in zip(events, ids, ("dl-first", "dl-second"), strict=True):
        expected = (
            f"{entry_id.decode()} key={key} target=app attempts=1 status=500 "
            r'age=[0-9]+s error="HTTP 500"'
        )
        assert re.fullmatch(expected, line), line


def test_show_prints_every_field_and_the_body_byte_identical(
    failing_gateway: GatewayProcess, redis_db: redis.Redis, cli: Cli
) -> None:
    # The provider's formatting, escapes, UTF-8 and trailing newline, byte for byte.
    body = seed().replace(SEED_KEY, b"dl-show") + b"\n"
    body = body.replace(b'"body": "test"', '"body": "t\u00e9st \\u00e9 ✓"'.encode())
    assert "✓".encode() in body
    assert post_once(failing_gateway.port, body).status == 200
    wait_until(lambda: redis_db.xlen(DEAD) == 1, what="the dead letter")
    ((entry_id, stored),) = redis_db.xrange(DEAD)
    result = cli("show", "--id", entry_id.decode())
    assert result.returncode == 0, result.stderr
    head, marker, rest = result.stdout.partition(f"body:      {len(body)} bytes".encode())
    assert marker, result.stdout
    assert rest.split(b"\n", 1)[1] == body + b"\n"
    fields = dict(line.split(":", 1) for line in head.decode().splitlines())
    fields = {name: value.strip() for name, value in fields.items()}
    assert fields["id"] == entry_id.decode()
    assert fields["target"] == "app"
    assert fields["source"] == "inboxcomponents"
    assert fields["type"] == "message.received"
    assert fields["key"] == "dl-show"
    assert fields["attempts"] == "1"
    assert fields["status"] == "500"
    assert fields["error"] == "HTTP 500"
    assert fields["queued_id"] == stored[b"queued_id"].decode()
    failed_at = fields["failed_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", failed_at), failed_at
    moment = datetime.fromisoformat(failed_at.replace("Z", "+00:00")).timestamp()
    assert round(moment * 1000) == int(stored[b"failed_at"])
    assert abs(moment - time.time()) < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["since"])


def test_replay_id_is_delivered_by_the_running_gateway_as_attempt_1(
    failing_gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis, cli: Cli
) -> None:
    first, second = dead_letter(failing_gateway, redis_db, "dl-again", "dl-stays")
    sink.default_status = 200
    result = cli("replay", "--id", first.decode())
    assert result.returncode == 0, result.stderr
    replayed, count = lines(result)
    assert re.fullmatch(
        rf"{first.decode()} key=dl-again target=app replayed as {ENTRY_ID}", replayed
    )
    assert count == "replayed 1 dead letter"
    sink.wait_for(lambda s: len(s.received("dl-again")) == 2, what="the replayed delivery")
    assert [r.headers["ce-attempt"] for r in sink.received("dl-again")] == ["1", "1"]
    assert sink.received("dl-again")[-1].body == sink.received("dl-again")[0].body
    wait_until(lambda: settled(redis_db), what="the replayed event to be acked")
    assert [entry_id for entry_id, _ in redis_db.xrange(DEAD)] == [second]
    assert len(sink.received("dl-stays")) == 1


def test_replay_all_puts_every_dead_letter_back(
    failing_gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis, cli: Cli
) -> None:
    keys = ["dl-1", "dl-2", "dl-3"]
    ids = dead_letter(failing_gateway, redis_db, *keys)
    sink.default_status = 200
    result = cli("replay", "--all")
    assert result.returncode == 0, result.stderr
    *replayed, count = lines(result)
    assert count == "replayed 3 dead letters"
    for line, entry_id, key in zip(replayed, ids, keys, strict=True):
        assert line.startswith(f"{entry_id.decode()} key={key} target=app replayed as ")
    sink.wait_for(lambda s: all(len(s.received(k)) == 2 for k in keys), what="redeliveries")
    assert redis_db.xlen(DEAD) == 0
    assert lines(cli("list")) == ["no dead letters"]
    wait_until(lambda: settled(redis_db), what="the replayed events to be acked")


def test_every_target_is_listed_and_target_narrows_list_and_replay(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis,
    redis_server: RedisServer, tmp_path: Path,
) -> None:  # fmt: skip
    audit = {"url": sink.url + "/audit", "format": "raw", "max_attempts": 1}
    changes = {
        "targets": {"audit": audit},
        "routes": [{"source": "inboxcomponents", "targets": ["app", "audit"]}],
    }
    config = config_variant(tmp_path, changes)
    sink.default_status = 500
    gw = start_gateway(config=config, FORWARD_MAX_ATTEMPTS="1")
    assert post_once(gw.port, with_key("dl-fan")).status == 200
    wait_until(lambda: redis_db.xlen(DEAD) == redis_db.xlen(AUDIT_DEAD) == 1, what="both")
    cli = Cli(redis_server.url, config)

    everything = lines(cli("list"))
    assert sorted(re.findall(r"target=(\w+)", " ".join(everything))) == ["app", "audit"]
    assert everything[-1] == "2 dead letters"
    audit_only = lines(cli("list", "--target", "audit"))
    assert len(audit_only) == 2
    assert " key=dl-fan target=audit attempts=1 status=500 " in audit_only[0]
    assert audit_only[-1] == "1 dead letter"

    sink.default_status = 200
    result = cli("replay", "--all", "--target", "audit")
    assert result.returncode == 0, result.stderr
    assert lines(result)[-1] == "replayed 1 dead letter"
    audit_paths = lambda s: [r for r in s.received("dl-fan") if r.path == "/events/audit"]  # noqa: E731
    sink.wait_for(lambda s: len(audit_paths(s)) == 2, what="the audit redelivery")
    assert redis_db.xlen(AUDIT_DEAD) == 0
    assert redis_db.xlen(DEAD) == 1  # the app's dead letter was not touched
    assert len([r for r in sink.received("dl-fan") if r.path == "/events"]) == 1


def test_an_id_in_two_targets_needs_target(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis,
    redis_server: RedisServer, tmp_path: Path,
) -> None:  # fmt: skip
    audit = {"url": sink.url + "/audit", "max_attempts": 1}
    config = config_variant(tmp_path, {"targets": {"audit": audit}})
    sink.default_status = 500
    gw = start_gateway(config=config, FORWARD_MAX_ATTEMPTS="1")
    (entry_id,) = dead_letter(gw, redis_db, "dl-twin")
    # Two targets failing in the same millisecond get the same id in their streams.
    ((_, fields),) = redis_db.xrange(DEAD)
    redis_db.xadd(AUDIT_DEAD, fields, id=entry_id)
    cli = Cli(redis_server.url, config)
    result = cli("purge", "--id", entry_id.decode())
    assert result.returncode == 2
    assert "several targets (app, audit); add --target" in one_error_line(result)
    assert redis_db.xlen(DEAD) == redis_db.xlen(AUDIT_DEAD) == 1
    result = cli("purge", "--id", entry_id.decode(), "--target", "audit")
    assert result.returncode == 0, result.stderr
    assert (redis_db.xlen(DEAD), redis_db.xlen(AUDIT_DEAD)) == (1, 0)


def test_purge_id_then_purge_all(
    failing_gateway: GatewayProcess, sink: Sink, redis_db: redis.Redis, cli: Cli
) -> None:
    first, second, third = dead_letter(failing_gateway, redis_db, "dl-a", "dl-b", "dl-c")
    result = cli("purge", "--id", second.decode())
    assert result.returncode == 0, result.stderr
    purged = f"{second.decode()} key=dl-b target=app purged"
    assert lines(result) == [purged, "purged 1 dead letter"]
    assert [entry_id for entry_id, _ in redis_db.xrange(DEAD)] == [first, third]

    result = cli("purge", "--all")
    assert result.returncode == 0, result.stderr
    assert lines(result) == [
        f"{first.decode()} key=dl-a target=app purged",
        f"{third.decode()} key=dl-c target=app purged",
        "purged 2 dead letters",
    ]
    assert redis_db.xlen(DEAD) == 0
    assert redis_db.xlen(QUEUE) == 0  # deleted, not re-queued
    assert sink.keys() == {"dl-a": 1, "dl-b": 1, "dl-c": 1}


@pytest.mark.parametrize("args", [["list"], ["replay", "--all"], ["purge", "--all"]])
def test_with_nothing_to_do_it_says_no_dead_letters(cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"no dead letters\n"
    assert result.stderr == b""


def test_an_unknown_id_is_exit_3_and_changes_nothing(
    failing_gateway: GatewayProcess, redis_db: redis.Redis, cli: Cli
) -> None:
    (entry_id,) = dead_letter(failing_gateway, redis_db, "dl-kept")
    ms, seq = entry_id.decode().split("-")
    missing = f"{ms}-{int(seq) + 1}"
    for action in ("show", "replay", "purge"):
        for unknown in (missing, "not-an-id", f"7/{entry_id.decode()}"):
            result = cli(action, "--id", unknown)
            assert result.returncode == 3, (action, unknown, result.stderr)
            assert f'no dead letter with id "{unknown}"' in one_error_line(result)
            assert result.stdout == b""
    assert [i for i, _ in redis_db.xrange(DEAD)] == [entry_id]
    assert redis_db.xlen(QUEUE) == 0


@pytest.mark.parametrize(
    "args", [["list"], ["show", "--id", "1-0"], ["replay", "--all"], ["purge", "--id", "1-0"]]
)
def test_an_unknown_target_is_exit_2(cli: Cli, args: list[str]) -> None:
    result = cli(*args, "--target", "nope")
    assert result.returncode == 2
    line = one_error_line(result)
    assert line == 'webhook-gateway: --target "nope" is not a configured target (app)'
    assert result.stdout == b""


@pytest.mark.parametrize(
    "args", [["list"], ["show", "--id", "1-0"], ["replay", "--all"], ["purge", "--all"]]
)
def test_redis_down_is_exit_1_with_one_line(args: list[str]) -> None:
    down = Cli(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    result = down(*args)
    assert result.returncode == 1
    assert one_error_line(result).startswith("webhook-gateway: store unreachable: ")
    assert result.stdout == b""


@pytest.mark.parametrize(
    "args", [["replay"], ["purge"], ["replay", "--id", "1-0", "--all"], ["show"], ["list", "--all"]]
)
def test_replay_and_purge_need_exactly_one_of_id_or_all(cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert b"usage: webhook-gateway" in result.stderr
    assert re.search(rb"error: .*(--id|--all)", result.stderr), result.stderr
    assert b"Traceback" not in result.stderr


def test_a_bad_config_is_one_line_naming_the_key_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    bad = config_variant(tmp_path, {"store": {"partitions": 0}})
    result = Cli(cli.store_url, bad)("list")
    assert result.returncode == 2
    assert "store.partitions: " in one_error_line(result)


def test_a_dead_letter_without_a_body_is_not_replayed(redis_db: redis.Redis, cli: Cli) -> None:
    fields = {"source": "inboxcomponents", "type": "message.received", "key": "dl-broken"}
    entry_id = redis_db.xadd(DEAD, {**fields, "attempts": 1, "status": 500, "error": "HTTP 500"})
    result = cli("replay", "--all")
    assert result.returncode == 1
    assert 'has no "body" field; left in place' in one_error_line(result)
    assert lines(result) == ["replayed 0 dead letters"]
    assert [i for i, _ in redis_db.xrange(DEAD)] == [entry_id]
    assert not redis_db.exists(QUEUE)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-5, "0s"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (192, "3m12s"),
     (7500, "2h05m"), (86399, "23h59m"), (4 * 86400 + 3 * 3600 + 59, "4d03h")],
)  # fmt: skip
def test_age_is_two_units_at_most(seconds: float, shown: str) -> None:
    assert age(seconds) == shown
