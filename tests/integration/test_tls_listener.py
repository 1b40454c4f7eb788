"""TLS on the public port, configured in YAML."""

from __future__ import annotations

import http.client
import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.configs import config_variant
from tests.support.processes import GatewayProcess
from tests.support.sink import Sink
from tests.support.webhooks import with_key
from tests.unit.test_tls import make_cert

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not found"),
]


def test_webhooks_over_tls_are_acked_and_forwarded(
    start_gateway: Callable[..., GatewayProcess], sink: Sink, tmp_path: Path
) -> None:
    cert, key = make_cert(tmp_path, "gateway")
    config = config_variant(tmp_path, {"listen": {"tls": {"cert": cert, "key": key}}})
    gw = start_gateway(config=config)
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False  # a self-signed cert for CN=gateway, reached by IP
    conn = http.client.HTTPSConnection("127.0.0.1", gw.port, timeout=10, context=context)
    try:
        conn.request(
            "POST", "/webhooks/inbox", with_key("over-tls"), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b'{"status":"accepted"}')
    finally:
        conn.close()
    sink.wait_for(lambda s: s.keys()["over-tls"] == 1, what="the event sent over TLS")
    plain = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    plain.request("POST", "/webhooks/inbox", with_key("plaintext"))
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain.getresponse()  # plain HTTP on the TLS port gets no HTTP answer
    plain.close()
