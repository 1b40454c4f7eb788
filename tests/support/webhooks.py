"""Seed payloads and a small blocking client for posting them."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

from tests.support.processes import SEEDS


def seed(name: str = "message.received") -> bytes:
    return (SEEDS / f"{name}.json").read_bytes()


def with_key(key: str, name: str = "message.received") -> bytes:
    doc = json.loads(seed(name))
    doc["idempotency_key"] = key
    return json.dumps(doc).encode()


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> dict[str, object]:
        return dict(json.loads(self.body))


class Poster:
    """One keep-alive connection to the gateway's public port."""

    def __init__(self, port: int, path: str = "/webhooks/inbox", timeout: float = 10) -> None:
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, body: bytes, method: str = "POST") -> Answer:
        self.conn.request(method, self.path, body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        return Answer(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    def close(self) -> None:
        self.conn.close()


def post_once(port: int, body: bytes, path: str = "/webhooks/inbox") -> Answer:
    poster = Poster(port, path)
    try:
        return poster.post(body)
    finally:
        poster.close()
