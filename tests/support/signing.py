"""Sign requests the way each provider does, for end-to-end tests.

Written from the providers' documentation, independently of gateway/sources
(Standard Webhooks uses its own reference library), so the gateway is checked
against the schemes and not against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from standardwebhooks import Webhook

from tests.support.secrecy import remember


@dataclass
class Signed:
    key: str  # the idempotency key the gateway should find
    event_type: str
    body: bytes
    headers: dict[str, str]


def _hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def standard_webhooks(secret: str, at: float | None = None) -> Signed:
    key = f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"type": "invoice.paid", "data": {"n": 1}}).encode()
    stamp = int(time.time() if at is None else at)
    from datetime import UTC, datetime

    signature = Webhook(secret).sign(key, datetime.fromtimestamp(stamp, UTC), body.decode())
    remember(signature)
    headers = {"webhook-id": key, "webhook-timestamp": str(stamp), "webhook-signature": signature}
    return Signed(key, "invoice.paid", body, headers)


def github(secret: str, at: float | None = None) -> Signed:
    key = str(uuid.uuid4())
    body = json.dumps({"action": "opened", "number": 7}).encode()
    signature = "sha256=" + _hex(secret, body)
    remember(signature)
    headers = {
        "X-GitHub-Delivery": key,
        "X-GitHub-Event": "issues",
        "X-Hub-Signature-256": signature,
    }
    return Signed(key, "issues", body, headers)


def stripe(secret: str, at: float | None = None) -> Signed:
    key = f"evt_{uuid.uuid4().hex}"
    stamp = int(time.time() if at is None else at)
    body = json.dumps({"id": key, "type": "invoice.paid", "created": stamp}).encode()
    header = f"t={stamp},v1={_hex(secret, str(stamp).encode() + b'.' + body)}"
    remember(header)
    return Signed(key, "invoice.paid", body, {"Stripe-Signature": header})


def shopify(secret: str, at: float | None = None) -> Signed:
    key = str(uuid.uuid4())
    body = json.dumps({"id": 820982911946154508, "email": "jon@example.com"}).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    remember(signature)
    headers = {
        "X-Shopify-Webhook-Id": key,
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": signature,
    }
    return Signed(key, "orders/create", body, headers)


def slack(secret: str, at: float | None = None) -> Signed:
    key = f"Ev{uuid.uuid4().hex[:10].upper()}"
    stamp = int(time.time() if at is None else at)
    doc = {"type": "event_callback", "event_id": key, "event": {"type": "message"}}
    body = json.dumps(doc).encode()
    signature = "v0=" + _hex(secret, b"v0:" + str(stamp).encode() + b":" + body)
    remember(signature)
    headers = {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": signature}
    return Signed(key, "message", body, headers)


SIGNERS = {
    "standard-webhooks": standard_webhooks,
    "github": github,
    "stripe": stripe,
    "shopify": shopify,
    "slack": slack,
}
TIMESTAMPED = {"standard-webhooks", "stripe", "slack"}


def new_secret(kind: str) -> str:
    raw = uuid.uuid4().bytes + uuid.uuid4().bytes
    secret = "whsec_" + base64.b64encode(raw).decode() if kind == "standard-webhooks" else raw.hex()
    remember(secret)
    return secret
