"""The gateway on the embedded SQLite store (STORE_URL=sqlite:///...): no Redis at all."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_delivery import load_until_killed
from tests.support.configs import config_variant
from tests.support.disks import grow, padded, post_until_full, tiny_tmpfs
from tests.support.processes import ROOT, GatewayProcess, wait_until
from tests.support.sink import Sink
from tests.support.webhooks import Poster, post_once, seed, with_key
from tests.unit.test_delivery_rules import data_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store/gateway.db"  # an absolute path: sqlite:////tmp/...


def test_seeds_are_acked_deduplicated_and_delivered_without_redis(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, sqlite_url: str
) -> None:
    gw = start_gateway(STORE_URL=sqlite_url)
    for name in ("message.received", "message.sent"):
        assert post_once(gw.port, seed(name)).json()["status"] == "accepted"
    poster = Poster(gw.port)
    assert [poster.post(seed()).json()["status"] for _ in range(3)] == ["duplicate"] * 3
    poster.close()
    sink.wait_for(lambda s: len(s.received()) == 2, what="both seeds")
    bodies = sorted(r.body for r in sink.received())
    assert bodies == sorted(data_bytes(seed(n)) for n in ("message.received", "message.sent"))
    assert all(r.headers["ce-specversion"] == "1.0" for r in sink.received())


def test_a_500_is_retried_on_sqlite(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, sqlite_url: str
) -> None:
    gw = start_gateway(STORE_URL=sqlite_url, FORWARD_BACKOFF_INITIAL="50ms")
    sink.plan("retry-me", 500, 503)
    assert post_once(gw.port, with_key("retry-me")).status == 200
    sink.wait_for(lambda s: len(s.received("retry-me")) == 3, what="two retries")
    assert [r.headers["ce-attempt"] for r in sink.received("retry-me")] == ["1", "2", "3"]


def test_kill_9_then_restart_on_sqlite_delivers_every_acked_event(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, sqlite_url: str
) -> None:
    sink.delay = 0.05
    gw = start_gateway(STORE_URL=sqlite_url)
    acked = load_until_killed(gw, lambda n: n >= 300, signal.SIGKILL)
    gw.proc = None
    gw.start()
    sink.wait_for(lambda s: set(acked) <= set(s.keys()), timeout=30, what="every acked event")


def dead_letters(sqlite_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["dead-letters", *args, "--config", "config/gateway.yaml"]
    return subprocess.run(
        [sys.executable, "-m", "gateway", *command],
        cwd=ROOT, env={"STORE_URL": sqlite_url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_dead_letters_on_sqlite_are_listed_replayed_and_purged(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, sqlite_url: str
) -> None:
    gw = start_gateway(STORE_URL=sqlite_url, FORWARD_MAX_ATTEMPTS="1")
    sink.default_status = 500
    for key in ("dl-1", "dl-2"):
        assert post_once(gw.port, with_key(key)).status == 200
    wait_until(lambda: "2 dead letters" in dead_letters(sqlite_url, "list").stdout, what="2")
    listing = dead_letters(sqlite_url, "list").stdout.splitlines()
    assert "key=dl-1 target=app attempts=1 status=500" in listing[0]
    first_id = listing[0].split()[0]
    shown = dead_letters(sqlite_url, "show", "--id", first_id)
    assert shown.returncode == 0
    assert shown.stdout.rstrip("\n").endswith(with_key("dl-1").decode())
    sink.default_status = 200
    replayed = dead_letters(sqlite_url, "replay", "--id", first_id)
    assert (replayed.returncode, "replayed 1 dead letter" in replayed.stdout) == (0, True)
    sink.wait_for(lambda s: s.keys()["dl-1"] == 2, what="the replayed delivery")
    assert sink.received("dl-1")[-1].headers["ce-attempt"] == "1"
    purged = dead_letters(sqlite_url, "purge", "--all")
    assert "purged 1 dead letter" in purged.stdout
    assert dead_letters(sqlite_url, "list").stdout.strip() == "no dead letters"


def test_sqlite_readiness_turns_green_without_redis(
    start_gateway: Callable[..., GatewayProcess], sqlite_url: str
) -> None:
    gw = start_gateway(STORE_URL=sqlite_url)
    wait_until(gw.ready, what="readiness")
    assert Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_a_gateway_on_sqlite_never_loads_the_redis_client(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, sqlite_url: str
) -> None:
    """redis-py is the largest import (README "What the numbers say": about 8 MB of RSS
    and 0.1 s of start); a gateway on the SQLite store admits, delivers and answers
    probes without it. hiredis, its parser, is a shared library: mapped once loaded."""
    gw = start_gateway(STORE_URL=sqlite_url)
    wait_until(gw.ready, what="readiness")
    assert post_once(gw.port, seed()).json()["status"] == "accepted"
    sink.wait_for(lambda s: len(s.received()) == 1, what="the delivery")
    assert gw.proc is not None
    maps = Path(f"/proc/{gw.proc.pid}/maps").read_text()
    assert "hiredis" not in maps
    assert "/msgspec/" in maps  # what this reads is the gateway's own mappings


def test_a_full_disk_under_the_sqlite_store_answers_503_and_recovers_when_space_returns(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, tmp_path: Path
) -> None:
    # A delivery whose bookkeeping failed on the full disk stays claimed until
    # visibility_timeout: 2 s here instead of 60 s.
    changes = {"forwarder": {"visibility_timeout": "2s"}, "targets": {"app": {"timeout": "1s"}}}
    config = config_variant(tmp_path, changes)
    with tiny_tmpfs(tmp_path / "tiny") as disk:
        gw = start_gateway(config=config, STORE_URL=f"sqlite:///{disk}/gateway.db")
        sink.default_status = 503  # nothing leaves the store
        poster = Poster(gw.port)
        try:
            accepted = post_until_full(poster, "full")
            assert gw.healthy()
            grow(disk, "8m")
            assert poster.post(padded(with_key("after"))).status == 200
        finally:
            poster.close()
        sink.default_status = 200
        wanted = {f"full-{i}" for i in range(accepted)} | {"after"}
        sink.wait_for(lambda s: wanted <= set(s.delivered()), timeout=15, what="every acked one")
        gw.stop()
