"""Each example config end to end: good, bad, stale and rotated signatures."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.configs import config_variant
from tests.support.processes import GatewayProcess
from tests.support.signing import SIGNERS, TIMESTAMPED, Signed, new_secret
from tests.support.sink import Sink
from tests.support.webhooks import Answer

pytestmark = pytest.mark.integration

KINDS = sorted(SIGNERS)


def send(gw: GatewayProcess, kind: str, signed: Signed) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", **signed.headers}
        conn.request("POST", f"/webhooks/{kind}", signed.body, headers)
        response = conn.getresponse()
        body = response.read()
        return Answer(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def markers(db: redis.Redis) -> list[bytes]:
    return list(db.keys("*:idem:*"))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(
    start_gateway: Callable[..., GatewayProcess], kind: str, **secrets: str
) -> GatewayProcess:
    return start_gateway(config=f"config/examples/{kind}.yaml", **secrets)


def test_a_good_signature_is_acked_and_forwarded(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, kind: str
) -> None:
    secret = new_secret(kind)
    gw = start(start_gateway, kind, WEBHOOK_SECRET=secret)
    signed = SIGNERS[kind](secret)
    answer = send(gw, kind, signed)
    assert (answer.status, answer.json()["status"]) == (200, "accepted")
    sink.wait_for(lambda s: s.keys()[signed.key] == 1, what=f"the {kind} event")
    (delivered,) = sink.received(signed.key)
    assert delivered.headers["ce-type"].endswith(signed.event_type)
    assert delivered.body == signed.body


def test_a_bad_signature_is_401_and_nothing_is_stored_or_forwarded(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, redis_db: redis.Redis, kind: str
) -> None:
    gw = start(start_gateway, kind, WEBHOOK_SECRET=new_secret(kind))
    forged = SIGNERS[kind](new_secret(kind))  # signed with a secret the gateway does not hold
    answer = send(gw, kind, forged)
    assert answer.status == 401
    assert answer.json()["error"] == "bad_signature"
    unsigned = SIGNERS[kind](new_secret(kind))
    unsigned.headers = {
        k: v for k, v in unsigned.headers.items() if "ignature" not in k and "Hmac" not in k
    }
    assert send(gw, kind, unsigned).status == 401
    assert markers(redis_db) == []
    assert sink.received() == []
    metrics = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=5)
    metrics.request("GET", "/metrics")
    text = metrics.getresponse().read().decode()
    metrics.close()
    assert f'webhook_gateway_rejected_total{{reason="bad_signature",source="{kind}"}} 1.0' in text


def test_a_stale_timestamp_is_400_and_not_stored(
    start_gateway: Callable[..., GatewayProcess], redis_db: redis.Redis, kind: str
) -> None:
    if kind not in TIMESTAMPED:
        pytest.skip(f"{kind} signs no timestamp: there is no replay window to test")
    secret = new_secret(kind)
    gw = start(start_gateway, kind, WEBHOOK_SECRET=secret)
    for skew in (-3600, 3600):  # an hour old, and an hour in the future
        answer = send(gw, kind, SIGNERS[kind](secret, at=time.time() + skew))
        assert (answer.status, answer.json()["error"]) == (400, "stale_timestamp")
    assert markers(redis_db) == []


def test_a_rotated_secret_verifies_with_the_old_and_the_new(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, kind: str, tmp_path: Path
) -> None:
    new, old = new_secret(kind), new_secret(kind)
    secrets = [{"env": "WEBHOOK_SECRET"}, {"env": "WEBHOOK_SECRET_PREVIOUS"}]
    rotated = config_variant(
        tmp_path, {"sources": {kind: {"secrets": secrets}}}, base=f"config/examples/{kind}.yaml"
    )
    gw = start_gateway(config=rotated, WEBHOOK_SECRET=new, WEBHOOK_SECRET_PREVIOUS=old)
    by_new, by_old = SIGNERS[kind](new), SIGNERS[kind](old)
    assert send(gw, kind, by_new).status == 200
    assert send(gw, kind, by_old).status == 200
    sink.wait_for(lambda s: s.keys()[by_new.key] == s.keys()[by_old.key] == 1, what="both")
