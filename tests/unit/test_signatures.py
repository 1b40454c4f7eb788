"""Provider signature schemes, key and type extraction, normalization: pure, no sockets.

Where a provider publishes a test vector, the test signs nothing itself and
checks the provider's own numbers: a vector we computed would only prove the
verifier agrees with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from gateway.config_sources import (
    KINDS,
    FieldRef,
    GenericSignature,
    Secret,
    SourceConfig,
    TokenAuth,
)
from gateway.errors import Rejection
from gateway.sources import PATH_TOKEN, Headers, Source, build_source, token_auth
from gateway.sources import base as sources_base
from tests.support.webhooks import seed

NOW = 1_700_000_000.0
SECRET = b"test-signing-secret-0123456789"
OTHER = b"some-other-secret-9876543210"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example
WHSEC_OTHER = "whsec_" + base64.b64encode(b"another-key-of-24-bytes!").decode()


def config(kind: str, *secrets: bytes | str, **fields: Any) -> SourceConfig:
    defaults = KINDS[kind]
    values: dict[str, Any] = {
        "key": defaults.key or FieldRef("header", "X-Id"),
        "event_type": defaults.event_type or FieldRef("body", "type"),
        "ce_type_prefix": defaults.ce_type_prefix,
        "secrets": tuple(
            Secret(f"env:S{i}", s.encode() if isinstance(s, str) else s)
            for i, s in enumerate(secrets)
        ),
        **fields,
    }
    return SourceConfig(kind, kind, f"/webhooks/{kind}", defaults.ce_source or "urn:x", **values)


def source(kind: str, *secrets: bytes | str, **fields: Any) -> Source:
    return build_source(config(kind, *secrets, **fields))


def headers(**named: bytes | str) -> Headers:
    """Keyword names as the listener gives them: lower-cased, '_' as '-'."""
    return [
        (name.replace("_", "-").lower().encode(), v.encode() if isinstance(v, str) else v)
        for name, v in named.items()
    ]


def rejection(call: Callable[[], object]) -> Rejection:
    with pytest.raises(Rejection) as caught:
        call()
    return caught.value


def assert_rejected(
    src: Source, hdrs: Headers, body: bytes, now: float, status: int, code: str
) -> None:
    """parse refuses; so does early_check, for anything the headers alone show."""
    refused = rejection(lambda: src.parse(hdrs, body, now))
    assert (refused.status, refused.code) == (status, code), refused.reason
    if code in ("missing_signature", "stale_timestamp", "bad_token"):
        early = src.early_check(hdrs, now)
        assert early is not None
        assert (early.status, early.code) == (status, code)


def hex_mac(key: bytes, data: bytes, digest: str = "sha256") -> str:
    return hmac.new(key, data, digest).hexdigest()


def b64_mac(key: bytes, data: bytes, digest: str = "sha256") -> str:
    return base64.b64encode(hmac.new(key, data, digest).digest()).decode()


# --- Standard Webhooks -------------------------------------------------------

SW_BODY = b'{"type":"invoice.paid","data":{"id":"in_1"}}'


def sw_headers(
    secret: str = WHSEC, body: bytes = SW_BODY, at: float = NOW, family: str = "webhook"
) -> Headers:
    signature = Webhook(secret).sign("msg_2bVdGZ", datetime.fromtimestamp(at, UTC), body.decode())
    return [
        (f"{family}-id".encode(), b"msg_2bVdGZ"),
        (f"{family}-timestamp".encode(), str(int(at)).encode()),
        (f"{family}-signature".encode(), signature.encode()),
    ]


def test_standard_webhooks_spec_example_verifies() -> None:
    src = source("standard-webhooks", WHSEC, event_type=FieldRef("body", "test"))
    hdrs = headers(
        webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        webhook_timestamp="1614265330",
        webhook_signature="v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    )
    assert src.early_check(hdrs, 1614265330) is None
    parsed = src.parse(hdrs, b'{"test": 2432232314}', 1614265330)
    assert (parsed.key, parsed.event_type) == ("msg_p5jXN8AQM9LWM0D4loKWxJek", "2432232314")


@pytest.mark.parametrize("family", ["webhook", "svix"])
def test_standard_webhooks_signed_by_the_reference_library_is_accepted(family: str) -> None:
    src = source("standard-webhooks", WHSEC)
    hdrs = sw_headers(family=family)
    assert src.early_check(hdrs, NOW) is None
    parsed = src.parse(hdrs, SW_BODY, NOW)
    assert (parsed.key, parsed.event_type) == ("msg_2bVdGZ", "invoice.paid")  # svix-id too


def test_standard_webhooks_secret_without_its_prefix_works_as_in_the_reference_library() -> None:
    src = source("standard-webhooks", WHSEC.removeprefix("whsec_"))
    assert src.parse(sw_headers(), SW_BODY, NOW).key == "msg_2bVdGZ"


def test_standard_webhooks_wrong_secret_is_401_bad_signature() -> None:
    assert_rejected(
        source("standard-webhooks", WHSEC),
        sw_headers(WHSEC_OTHER),
        SW_BODY,
        NOW,
        401,
        "bad_signature",
    )


def test_standard_webhooks_tampered_body_is_401() -> None:
    tampered = SW_BODY.replace(b"in_1", b"in_2")
    assert_rejected(
        source("standard-webhooks", WHSEC), sw_headers(), tampered, NOW, 401, "bad_signature"
    )


@pytest.mark.parametrize("missing", [b"webhook-id", b"webhook-timestamp", b"webhook-signature"])
def test_standard_webhooks_missing_header_is_401_missing_signature(missing: bytes) -> None:
    hdrs = [(name, value) for name, value in sw_headers() if name != missing]
    assert_rejected(
        source("standard-webhooks", WHSEC), hdrs, SW_BODY, NOW, 401, "missing_signature"
    )


def test_standard_webhooks_rotated_secret_second_in_the_list_is_accepted() -> None:
    src = source("standard-webhooks", WHSEC_OTHER, WHSEC)
    assert src.parse(sw_headers(WHSEC), SW_BODY, NOW).key == "msg_2bVdGZ"


def test_standard_webhooks_one_valid_signature_among_several_is_accepted() -> None:
    hdrs = sw_headers()
    valid = hdrs[2][1]
    wrong = sw_headers(WHSEC_OTHER)[2][1]
    hdrs[2] = (b"webhook-signature", b"v1a,bm90LWVkMjU1MTk= " + wrong + b" " + valid)
    assert source("standard-webhooks", WHSEC).parse(hdrs, SW_BODY, NOW).key == "msg_2bVdGZ"


@pytest.mark.parametrize("skew", [-301, 301, -86400, 86400])
def test_standard_webhooks_timestamp_too_old_or_too_new_is_400(skew: float) -> None:
    hdrs = sw_headers(at=NOW + skew)
    assert_rejected(source("standard-webhooks", WHSEC), hdrs, SW_BODY, NOW, 400, "stale_timestamp")


@pytest.mark.parametrize("skew", [-300, 300])
def test_standard_webhooks_timestamp_at_the_tolerance_is_accepted(skew: float) -> None:
    src = source("standard-webhooks", WHSEC)
    assert src.parse(sw_headers(at=NOW + skew), SW_BODY, NOW).key == "msg_2bVdGZ"


def test_the_tolerance_is_configurable() -> None:
    src = source("standard-webhooks", WHSEC, tolerance=30.0)
    assert src.early_check(sw_headers(at=NOW - 31), NOW) is not None
    assert src.early_check(sw_headers(at=NOW - 29), NOW) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"webhook-timestamp", b"1700000000.5"),
        (b"webhook-timestamp", b"soon"),
        (b"webhook-signature", b"v1,not base64!"),
        (b"webhook-signature", b"v2,AAAA"),
    ],
)
def test_standard_webhooks_malformed_headers_are_401(name: bytes, value: bytes) -> None:
    hdrs = [(n, value if n == name else v) for n, v in sw_headers()]
    refused = source("standard-webhooks", WHSEC).early_check(hdrs, NOW)
    assert refused is not None
    assert (refused.status, refused.code) == (401, "bad_signature")


# --- GitHub -----------------------------------------------------------------

# GitHub's documented test vector ("Validating webhook deliveries").
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def gh_headers(signature: str = GH_SIGNATURE) -> Headers:
    return headers(
        x_hub_signature_256=signature,
        x_github_delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        x_github_event="push",
    )


def test_github_documented_example_verifies() -> None:
    # Key and type come from headers, so the body is never parsed: not JSON is fine.
    parsed = source("github", GH_SECRET).parse(gh_headers(), GH_BODY, NOW)
    assert (parsed.key, parsed.event_type) == ("72d3162e-cc78-11e3-81ab-4c9367dc0958", "push")


def test_github_has_no_replay_window() -> None:
    assert source("github", GH_SECRET).early_check(gh_headers(), 0.0) is None


def test_github_wrong_secret_and_tampered_body_are_401() -> None:
    assert_rejected(source("github", OTHER), gh_headers(), GH_BODY, NOW, 401, "bad_signature")
    assert_rejected(
        source("github", GH_SECRET), gh_headers(), b"Hello, World?", NOW, 401, "bad_signature"
    )


def test_github_rotated_secret_is_accepted() -> None:
    assert source("github", OTHER, GH_SECRET).parse(gh_headers(), GH_BODY, NOW).event_type == "push"


@pytest.mark.parametrize(
    "signature",
    [
        "sha1=0a4d55a8d778e5022fab701977c5d840bbc486d0",  # the legacy header's scheme
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=not-hex",
        "sha256=",
    ],
)
def test_github_malformed_signature_is_401(signature: str) -> None:
    refused = source("github", GH_SECRET).early_check(gh_headers(signature), NOW)
    assert refused is not None
    assert (refused.status, refused.code) == (401, "bad_signature")


def test_github_missing_signature_is_401() -> None:
    hdrs = [(n, v) for n, v in gh_headers() if n != b"x-hub-signature-256"]
    assert_rejected(source("github", GH_SECRET), hdrs, GH_BODY, NOW, 401, "missing_signature")


# --- Stripe -----------------------------------------------------------------

STRIPE_SECRET = "whsec_test_stripe_signing_secret"
STRIPE_BODY = b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"invoice.paid","created":1686089970}'


def stripe_headers(*entries: str, at: float = NOW, body: bytes = STRIPE_BODY) -> Headers:
    """Per Stripe's docs: `t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`."""
    stamp = str(int(at))
    v1 = hex_mac(STRIPE_SECRET.encode(), stamp.encode() + b"." + body)
    return headers(stripe_signature=",".join([f"t={stamp}", *entries, f"v1={v1}"]))


def test_stripe_signature_is_accepted_and_the_event_read_from_the_body() -> None:
    parsed = source("stripe", STRIPE_SECRET).parse(stripe_headers(), STRIPE_BODY, NOW)
    assert (parsed.key, parsed.event_type) == ("evt_1NG8Du2eZvKYlo2CUI79vXWy", "invoice.paid")


def test_stripe_one_valid_v1_among_several_is_accepted() -> None:
    hdrs = stripe_headers("v1=" + "ab" * 32, "v0=" + "cd" * 32)
    assert (
        source("stripe", STRIPE_SECRET).parse(hdrs, STRIPE_BODY, NOW).event_type == "invoice.paid"
    )


def test_stripe_wrong_secret_tampered_body_and_missing_header_are_401() -> None:
    assert_rejected(
        source("stripe", OTHER), stripe_headers(), STRIPE_BODY, NOW, 401, "bad_signature"
    )
    tampered = STRIPE_BODY.replace(b"paid", b"void")
    src = source("stripe", STRIPE_SECRET)
    assert_rejected(src, stripe_headers(), tampered, NOW, 401, "bad_signature")
    assert_rejected(src, [], STRIPE_BODY, NOW, 401, "missing_signature")


@pytest.mark.parametrize("skew", [-301, 301])
def test_stripe_rejects_timestamps_outside_the_tolerance_both_ways(skew: float) -> None:
    hdrs = stripe_headers(at=NOW + skew)
    assert_rejected(source("stripe", STRIPE_SECRET), hdrs, STRIPE_BODY, NOW, 400, "stale_timestamp")


@pytest.mark.parametrize("value", ["v1=" + "ab" * 32, "t=1700000000", "t=soon,v1=" + "ab" * 32, ""])
def test_stripe_malformed_header_is_401(value: str) -> None:
    refused = source("stripe", STRIPE_SECRET).early_check(headers(stripe_signature=value), NOW)
    assert refused is not None
    assert (refused.status, refused.code) == (401, "bad_signature")


# --- Shopify ----------------------------------------------------------------

SHOPIFY_BODY = b'{"id":820982911946154508,"email":"jon@example.com"}'


def shopify_headers(secret: bytes = SECRET, body: bytes = SHOPIFY_BODY) -> Headers:
    return headers(
        x_shopify_hmac_sha256=b64_mac(secret, body),
        x_shopify_webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        x_shopify_topic="orders/create",
    )


def test_shopify_base64_signature_is_accepted() -> None:
    parsed = source("shopify", SECRET).parse(shopify_headers(), SHOPIFY_BODY, NOW)
    assert (parsed.key, parsed.event_type) == (
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "orders/create",
    )


def test_shopify_old_and_new_client_secrets_both_verify_during_a_rotation() -> None:
    src = source("shopify", OTHER, SECRET)
    assert src.parse(shopify_headers(SECRET), SHOPIFY_BODY, NOW).event_type == "orders/create"
    assert src.parse(shopify_headers(OTHER), SHOPIFY_BODY, NOW).event_type == "orders/create"


def test_shopify_hex_instead_of_base64_is_refused() -> None:
    hdrs = shopify_headers()
    hdrs[0] = (b"x-shopify-hmac-sha256", hex_mac(SECRET, SHOPIFY_BODY).encode())
    assert_rejected(source("shopify", SECRET), hdrs, SHOPIFY_BODY, NOW, 401, "bad_signature")


def test_shopify_wrong_secret_and_missing_header_are_401() -> None:
    assert_rejected(
        source("shopify", SECRET), shopify_headers(OTHER), SHOPIFY_BODY, NOW, 401, "bad_signature"
    )
    assert_rejected(
        source("shopify", SECRET),
        shopify_headers()[1:],
        SHOPIFY_BODY,
        NOW,
        401,
        "missing_signature",
    )


# --- Slack ------------------------------------------------------------------

# Slack's documented example ("Verifying requests from Slack").
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = 1531420618
SLACK_FORM = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmib"
    b"IGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK_EVENT = b'{"event_id":"Ev08MFMKH6","event_time":1531420618,"event":{"type":"app_mention"}}'


def slack_headers(
    body: bytes = SLACK_EVENT, at: float = NOW, secret: str = SLACK_SECRET
) -> Headers:
    stamp = str(int(at))
    mac = hex_mac(secret.encode(), f"v0:{stamp}:".encode() + body)
    return headers(x_slack_signature=f"v0={mac}", x_slack_request_timestamp=stamp)


def test_slack_documented_example_verifies() -> None:
    hdrs = headers(x_slack_signature=SLACK_SIGNATURE, x_slack_request_timestamp=str(SLACK_TS))
    src = source("slack", SLACK_SECRET)
    assert src.early_check(hdrs, SLACK_TS + 10) is None
    src.authenticate(hdrs, SLACK_FORM, SLACK_TS + 10)
    # A slash command is form-encoded: authentic, but it has no JSON event to key on.
    assert rejection(lambda: src.parse(hdrs, SLACK_FORM, SLACK_TS + 10)).code == "invalid_json"


def test_slack_event_key_and_nested_type_come_from_the_body() -> None:
    parsed = source("slack", SLACK_SECRET).parse(slack_headers(), SLACK_EVENT, NOW)
    assert (parsed.key, parsed.event_type) == ("Ev08MFMKH6", "app_mention")


@pytest.mark.parametrize("skew", [-301, 301])
def test_slack_rejects_requests_more_than_five_minutes_off(skew: float) -> None:
    hdrs = slack_headers(at=NOW + skew)
    assert_rejected(source("slack", SLACK_SECRET), hdrs, SLACK_EVENT, NOW, 400, "stale_timestamp")


def test_slack_wrong_secret_and_missing_timestamp_are_401() -> None:
    src = source("slack", SLACK_SECRET)
    assert_rejected(src, slack_headers(secret="x" * 32), SLACK_EVENT, NOW, 401, "bad_signature")
    assert_rejected(src, slack_headers()[:1], SLACK_EVENT, NOW, 401, "missing_signature")


# --- Generic HMAC -----------------------------------------------------------

GENERIC_BODY = b'{"type":"order.shipped","order":{"id":42}}'


def generic(**signature: Any) -> Source:
    return source(
        "generic-hmac",
        SECRET,
        signature=GenericSignature("X-Signature", **signature),
        key=FieldRef("body", "order.id"),
    )


def test_generic_hex_signature_over_the_body() -> None:
    hdrs = headers(x_signature=hex_mac(SECRET, GENERIC_BODY))
    parsed = generic().parse(hdrs, GENERIC_BODY, NOW)
    assert (parsed.key, parsed.event_type) == ("42", "order.shipped")  # a numeric id, as text


def test_generic_prefixed_sha512_base64_over_a_timestamped_template() -> None:
    stamp = str(int(NOW))
    mac = b64_mac(SECRET, f"{stamp}.".encode() + GENERIC_BODY + b".d-1", "sha512")
    hdrs = headers(x_signature=f"sha512={mac}", x_timestamp=stamp, x_delivery="d-1")
    src = generic(
        algorithm="sha512",
        encoding="base64",
        prefix="sha512=",
        signed="{timestamp}.{body}.{id}",
        timestamp_header="X-Timestamp",
        id_header="X-Delivery",
    )
    assert src.parse(hdrs, GENERIC_BODY, NOW).event_type == "order.shipped"
    assert_rejected(src, hdrs, GENERIC_BODY, NOW + 301, 400, "stale_timestamp")
    assert_rejected(src, hdrs[:2], GENERIC_BODY, NOW, 401, "missing_signature")
    swapped = [(n, b"d-2" if n == b"x-delivery" else v) for n, v in hdrs]
    assert_rejected(src, swapped, GENERIC_BODY, NOW, 401, "bad_signature")


def test_generic_signature_without_its_prefix_is_malformed() -> None:
    src = generic(prefix="sha256=")
    refused = src.early_check(headers(x_signature=hex_mac(SECRET, GENERIC_BODY)), NOW)
    assert refused is not None
    assert refused.code == "bad_signature"


# --- Token ------------------------------------------------------------------


def token_source(kind: str = "token", auth: TokenAuth | None = None) -> Source:
    return source(kind, OTHER, SECRET, token=auth or TokenAuth("X-Webhook-Token"))


def test_token_in_a_header_any_secret_of_the_list() -> None:
    src = token_source()
    for secret in (SECRET, OTHER):
        hdrs = headers(x_webhook_token=secret, x_id="k1")
        assert src.early_check(hdrs, NOW) is None
        assert src.parse(hdrs, GENERIC_BODY, NOW).key == "k1"


def test_wrong_or_missing_token_is_401() -> None:
    src = token_source()
    assert_rejected(
        src, headers(x_webhook_token="nope", x_id="k1"), GENERIC_BODY, NOW, 401, "bad_token"
    )
    assert_rejected(src, headers(x_id="k1"), GENERIC_BODY, NOW, 401, "missing_signature")


def test_token_as_the_path_segment_arrives_as_a_pseudo_header() -> None:
    src = token_source(auth=TokenAuth(path_segment=True))
    assert src.parse([(PATH_TOKEN, SECRET), (b"x-id", b"k1")], GENERIC_BODY, NOW).key == "k1"
    assert_rejected(
        src, [(PATH_TOKEN, b"x"), (b"x-id", b"k1")], GENERIC_BODY, NOW, 401, "bad_token"
    )


def test_inboxcomponents_can_require_a_token() -> None:
    src = token_source("inboxcomponents")
    body = seed("message.received")
    assert src.parse(headers(x_webhook_token=SECRET), body, NOW).event_type == "message.received"
    assert_rejected(src, [], body, NOW, 401, "missing_signature")


def test_inboxcomponents_without_a_token_takes_everything() -> None:
    src = source("inboxcomponents")
    assert src.early_check([], NOW) is None
    assert src.parse([], seed("message.sent"), NOW).event_type == "message.sent"


# --- Constant time ----------------------------------------------------------


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    seen: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(sources_base, "compare_digest", spy)
    monkeypatch.setattr(token_auth, "compare_digest", spy)
    return seen


def test_signatures_are_compared_in_constant_time(comparisons: list[tuple[bytes, bytes]]) -> None:
    source("github", GH_SECRET).parse(gh_headers(), GH_BODY, NOW)
    expected = bytes.fromhex(GH_SIGNATURE.removeprefix("sha256="))
    assert comparisons == [(expected, expected)]


def test_every_secret_is_tried_when_none_matches(comparisons: list[tuple[bytes, bytes]]) -> None:
    rejection(lambda: source("github", OTHER, SECRET).parse(gh_headers(), GH_BODY, NOW))
    assert len(comparisons) == 2


def test_tokens_are_compared_in_constant_time(comparisons: list[tuple[bytes, bytes]]) -> None:
    token_source().parse(headers(x_webhook_token=SECRET, x_id="k"), GENERIC_BODY, NOW)
    # Fixed-size digests, all of them: neither length nor position leaks.
    assert [len(a) for a, _ in comparisons] == [32, 32]


# --- Key and type -----------------------------------------------------------


def test_the_signature_is_checked_before_the_body_is_parsed() -> None:
    body = b"{not json"
    hdrs = headers(x_hub_signature_256="sha256=" + hex_mac(OTHER, body))
    src = source("github", SECRET, key=FieldRef("body", "id"))
    assert rejection(lambda: src.parse(hdrs, body, NOW)).code == "bad_signature"


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b"{not json", "invalid_json", "invalid JSON"),
        (b'{"type": "invoice.paid"}', "missing_key", "missing or empty id"),
        (b'{"id": "", "type": "invoice.paid"}', "missing_key", "missing or empty id"),
        (b'{"id": "evt_1"}', "missing_event", "missing or empty type"),
        (b'{"id": "evt 1", "type": "x"}', "invalid_payload", "id must be 1-256 visible ASCII"),
        (
            b'{"id": "evt_1", "type": "' + b"t" * 129 + b'"}',
            "invalid_payload",
            "type must be 1-128",
        ),
        (b'{"id": ["evt_1"], "type": "x"}', "invalid_payload", "id must be a string"),
        (b'{"id": true, "type": "x"}', "invalid_payload", "id must be a string"),
        (b'["evt_1"]', "missing_key", "missing or empty id"),
    ],
)
def test_bad_keys_and_types_are_400_naming_the_problem(body: bytes, code: str, reason: str) -> None:
    src = source("stripe", STRIPE_SECRET)
    refused = rejection(lambda: src.parse(stripe_headers(body=body), body, NOW))
    assert (refused.status, refused.code) == (400, code)
    assert reason in refused.reason


def test_json_nested_beyond_the_decoder_limit_is_400_not_a_crash() -> None:
    deep = b'{"id": "evt_1", "type": "x", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    refused = rejection(
        lambda: source("stripe", STRIPE_SECRET).parse(stripe_headers(body=deep), deep, NOW)
    )
    assert (refused.status, refused.code) == (400, "invalid_json")
    inbox = (
        b'{"idempotency_key": "k", "event": "e", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    assert rejection(lambda: source("inboxcomponents").parse([], inbox, NOW)).code == "invalid_json"


def test_a_body_path_through_a_non_object_is_missing() -> None:
    src = source("slack", SLACK_SECRET)
    body = b'{"event_id": "Ev1", "event": "app_mention"}'
    assert rejection(lambda: src.parse(slack_headers(body), body, NOW)).code == "missing_event"


def test_a_header_key_must_be_visible_ascii() -> None:
    hdrs = gh_headers()
    hdrs[1] = (b"x-github-delivery", "délivery".encode())
    refused = rejection(lambda: source("github", GH_SECRET).parse(hdrs, GH_BODY, NOW))
    assert (refused.code, refused.reason) == (
        "invalid_payload",
        "header X-GitHub-Delivery must be 1-256 visible ASCII characters",
    )


def test_a_missing_key_header_is_named() -> None:
    hdrs = [(n, v) for n, v in gh_headers() if n != b"x-github-event"]
    refused = rejection(lambda: source("github", GH_SECRET).parse(hdrs, GH_BODY, NOW))
    assert (refused.status, refused.code, refused.reason) == (
        400,
        "missing_event",
        "missing or empty header X-GitHub-Event",
    )


def test_inboxcomponents_with_custom_fields_reads_them_generically() -> None:
    src = source("inboxcomponents", key=FieldRef("header", "X-Request-Id"))
    parsed = src.parse(headers(x_request_id="r-1"), seed("message.received"), NOW)
    assert (parsed.key, parsed.event_type) == ("r-1", "message.received")


# --- Normalization ----------------------------------------------------------


def test_inboxcomponents_cloudevent_carries_the_data_object_time_and_subject() -> None:
    body = seed("message.sent")
    key = json.loads(body)["idempotency_key"]
    event = source("inboxcomponents").cloudevent("https://src", body, "message.sent", key)
    assert (event.id, event.type, event.source) == (
        key,
        "com.inboxcomponents.message.sent",
        "https://src",
    )
    assert (event.time, event.subject) == (
        "2025-04-01T13:14:05Z",
        "0195f0b1-5f4c-7bbe-8826-de31472446d0",
    )
    assert json.loads(event.data) == json.loads(body)["data"]


def test_inboxcomponents_with_custom_fields_delivers_the_stored_key() -> None:
    src = source("inboxcomponents", key=FieldRef("header", "X-Request-Id"))
    event = src.cloudevent("https://src", seed("message.sent"), "message.sent", "r-1")
    assert (event.id, event.type) == ("r-1", "com.inboxcomponents.message.sent")


@pytest.mark.parametrize(
    ("kind", "body", "time"),
    [
        ("stripe", STRIPE_BODY, "2023-06-06T22:19:30Z"),
        ("slack", SLACK_EVENT, "2018-07-12T18:36:58Z"),
        ("standard-webhooks", SW_BODY, None),  # webhook-timestamp is a header: not stored
        ("github", GH_BODY, None),
        ("stripe", b'{"created": "yesterday"}', None),
    ],
)
def test_other_kinds_deliver_the_whole_body(kind: str, body: bytes, time: str | None) -> None:
    secret = WHSEC if kind == "standard-webhooks" else SECRET
    event = source(kind, secret).cloudevent("urn:src", body, "thing.happened", "id-1")
    prefix = KINDS[kind].ce_type_prefix
    assert (event.id, event.type, event.source, event.subject) == (
        "id-1",
        f"{prefix}thing.happened",
        "urn:src",
        None,
    )
    assert (event.time, event.data) == (time, body)


def test_a_source_repr_names_it_without_secrets() -> None:
    src = source("github", SECRET)
    assert repr(src) == "<GitHub github kind=github>"
    assert SECRET.decode() not in repr(src)


def test_a_checked_digest_matches_hashlib() -> None:
    # The MAC is fed in pieces (framing, body, framing); the result must be the one-shot MAC.
    claim = sources_base.Claim((hashlib.sha256(b"").digest(),), b"a.", b".z")
    mac = hmac.new(SECRET, b"a.body.z", "sha256").digest()
    assert sources_base.verify(
        (SECRET,), "sha256", sources_base.Claim((mac,), b"a.", b".z"), b"body"
    )
    assert not sources_base.verify((SECRET,), "sha256", claim, b"body")


def test_only_sources_without_any_header_check_let_the_listener_skip_it() -> None:
    """checks_headers False lets the listener skip early_check per request: it must
    be False only where early_check can never reject."""
    plain = source("inboxcomponents")
    assert not plain.checks_headers
    assert plain.early_check([], NOW) is None
    assert token_source("inboxcomponents").checks_headers
    assert token_source().checks_headers
    assert generic().checks_headers
    for kind in ("standard-webhooks", "github", "stripe", "shopify", "slack"):
        signed = source(kind, WHSEC if kind == "standard-webhooks" else SECRET)
        assert signed.checks_headers, kind
        assert signed.early_check([], NOW) is not None, kind  # no signature: refused early
