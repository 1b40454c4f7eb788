"""Start-up: the public port listens before the I/O stack is imported.

A restarted gateway (a crash, kill -9, an OOM kill) used to refuse connections
for the whole 0.5-0.65 s of its start: each refused delivery counts toward a
provider disabling the endpoint (InboxComponents: 5 in a row). Now the port
listens once the config is read, and a request that arrives while the rest
loads waits in the kernel's accept queue and gets its answer once the gateway
runs (gateway.listeners).

The gateway here is paused, deterministically, at the import of
gateway.service (a meta path finder that waits for a line on stdin), so the
test knows the request it sends arrives before the I/O stack exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from gateway import listeners
from tests.support.processes import ROOT, GatewayProcess, RedisServer, http_status, wait_until
from tests.support.rawhttp import RawClient, post
from tests.support.sink import Sink
from tests.support.webhooks import with_key

pytestmark = pytest.mark.integration

PAUSED_AT_THE_IO_STACK = """
import sys
import gateway.cli

class Pause:
    # Consulted before the real finders: at gateway.service, say so and wait.
    def find_spec(self, name, path=None, target=None):
        if name == "gateway.service":
            sys.meta_path.remove(self)
            print("paused", file=sys.stderr, flush=True)
            sys.stdin.readline()
        return None

sys.meta_path.insert(0, Pause())
sys.exit(gateway.cli.main(["run", "--config", "config/gateway.yaml"]))
"""


def test_a_request_sent_while_the_gateway_starts_waits_and_is_accepted(
    redis_server: RedisServer, sink: Sink
) -> None:
    gw = GatewayProcess({"STORE_URL": redis_server.url, "FORWARD_URL": sink.url})
    log = gw.log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_AT_THE_IO_STACK],
        cwd=ROOT, env=gw.env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.PIPE,
    )  # fmt: skip
    log.close()
    gw.proc = proc  # stopped and its files removed by close()
    assert proc.stdin is not None
    assert proc.stderr is not None
    try:
        assert proc.stderr.readline() == b"paused\n", gw.logs()
        client = RawClient.connect(gw.port, timeout=30)  # refused before this change
        client.send(post("/webhooks/inbox", with_key("sent-during-start-up")))
        assert http_status(gw.admin("/readyz")) == 0  # nothing serves yet: no admin port
        proc.stdin.write(b"go on\n")
        proc.stdin.close()
        answer = client.read_response()
        client.close()
        assert answer.status == 200, answer
        assert answer.json() == {"status": "accepted"}
        wait_until(
            lambda: "sent-during-start-up" in sink.delivered(), timeout=15, what="the delivery"
        )
    finally:
        proc.stderr.close()
        gw.close()


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) not found")
def test_the_public_port_keeps_its_deep_accept_queue(gateway: GatewayProcess) -> None:
    """The loop calls listen() again on a socket it is given, with its own default
    backlog (100) unless told: the queue that holds a start-up's connections, and a
    burst's, stays 2048 deep (gateway.listeners.BACKLOG)."""
    shown = subprocess.run(
        ["ss", "-Hltn", f"sport = :{gateway.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert shown[:3] == ["LISTEN", "0", str(listeners.BACKLOG)], shown


def test_what_loads_before_the_bind_stays_small() -> None:
    """The CLI reads the config and binds before anything heavy is imported: each of
    these took 20-120 ms (python -X importtime), time the port would stay closed."""
    heavy = ("asyncio", "redis", "prometheus_client", "structlog", "uvloop", "msgspec")
    probe = (
        "import sys, gateway.cli, gateway.listeners\n"
        "gateway.cli.load('config/gateway.yaml')\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "", loaded.stdout
