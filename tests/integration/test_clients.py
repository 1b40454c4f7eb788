"""Who may call and how often: rate limits per client IP, allowlists, path tokens."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import config_variant
from tests.support.processes import GatewayProcess
from tests.support.secrecy import remember
from tests.support.sink import Sink
from tests.support.webhooks import Answer, with_key

pytestmark = pytest.mark.integration


def post_from(
    gw: GatewayProcess, source_ip: str, key: str, path: str = "/webhooks/inbox", **headers: str
) -> Answer:
    conn = http.client.HTTPConnection(
        "127.0.0.1", gw.port, timeout=10, source_address=(source_ip, 0)
    )
    try:
        conn.request("POST", path, with_key(key), {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        body = response.read()
        return Answer(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


@pytest.fixture
def with_config(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> Callable[..., GatewayProcess]:
    def start(changes: dict[str, Any], **env: str) -> GatewayProcess:
        return start_gateway(config=config_variant(tmp_path, changes), **env)

    return start


def test_a_burst_over_the_per_ip_budget_gets_429_and_other_ips_are_unaffected(
    with_config: Callable[..., GatewayProcess],
) -> None:
    gw = with_config({"clients": {"rate_limit": 0.5, "burst": 3}})
    assert [post_from(gw, "127.0.0.1", f"rl-{i}").status for i in range(3)] == [200] * 3
    throttled = post_from(gw, "127.0.0.1", "rl-3")
    assert throttled.status == 429
    assert throttled.json()["error"] == "rate_limited"
    assert int(throttled.headers["retry-after"]) >= 1
    assert post_from(gw, "127.0.0.2", "rl-other").status == 200
    # With no trusted proxy, a forged X-Forwarded-For does not buy a new budget.
    assert post_from(gw, "127.0.0.1", "rl-4", **{"X-Forwarded-For": "9.9.9.9"}).status == 429


def test_x_forwarded_for_counts_only_through_trusted_hops(
    with_config: Callable[..., GatewayProcess],
) -> None:
    gw = with_config({"clients": {"rate_limit": 0.5, "burst": 1, "trusted_hops": 1}})
    xff = {"X-Forwarded-For": "203.0.113.7"}
    assert post_from(gw, "127.0.0.1", "x-1", **xff).status == 200
    assert post_from(gw, "127.0.0.1", "x-2", **xff).status == 429
    # The client wrote the left entry itself; our one trusted proxy appended the right one.
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    assert post_from(gw, "127.0.0.1", "x-3", **spoofed).status == 429
    assert post_from(gw, "127.0.0.1", "x-4", **{"X-Forwarded-For": "203.0.113.8"}).status == 200


def test_a_source_allowlist_refuses_other_addresses_with_403(
    with_config: Callable[..., GatewayProcess], sink: Sink
) -> None:
    gw = with_config({"sources": {"inboxcomponents": {"allow_ips": ["127.0.0.2/32"]}}})
    refused = post_from(gw, "127.0.0.1", "al-1")
    assert (refused.status, refused.json()["error"]) == (403, "ip_not_allowed")
    assert post_from(gw, "127.0.0.2", "al-2").status == 200
    sink.wait_for(lambda s: s.keys()["al-2"] == 1, what="the allowed event")
    assert sink.keys()["al-1"] == 0


def test_a_token_in_the_path_authenticates_and_stays_out_of_the_logs(
    with_config: Callable[..., GatewayProcess], sink: Sink
) -> None:
    secret = "path-token-" + "7f3a9c2e5b1d4086"
    remember(secret)
    source = {
        "kind": "token",
        "path": "/webhooks/tok",
        "secrets": [{"env": "WEBHOOK_SECRET"}],
        "token": {"path_segment": True},
        "key": "body:idempotency_key",
        "event_type": "body:event",
        "ce_source": "urn:example:tok",
    }
    routes = [{"source": "tok", "events": ["*"], "targets": ["app"]}]
    gw = with_config({"sources": {"tok": source}, "routes": routes}, WEBHOOK_SECRET=secret)
    assert post_from(gw, "127.0.0.1", "pt-1", path=f"/webhooks/tok/{secret}").status == 200
    wrong = post_from(gw, "127.0.0.1", "pt-2", path="/webhooks/tok/not-the-token")
    assert (wrong.status, wrong.json()["error"]) == (401, "bad_token")
    assert post_from(gw, "127.0.0.1", "pt-3", path="/webhooks/tok").status == 404
    sink.wait_for(lambda s: s.keys()["pt-1"] == 1, what="the token-authenticated event")
    assert json.loads(sink.received("pt-1")[0].body)["idempotency_key"] == "pt-1"
