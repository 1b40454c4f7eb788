"""Routes: source + event-type pattern -> targets, with the unrouted fallback."""

from __future__ import annotations

from gateway.config import RouteConfig
from gateway.routing import Routes

ROUTES = (
    RouteConfig("inbox", ("message.*",), ("app",)),
    RouteConfig("inbox", ("message.sent", "contact.created"), ("audit", "app")),
    RouteConfig("other", ("*",), ("other-app",)),
)


def test_patterns_and_exact_names_fan_out_without_repeating_a_target() -> None:
    routes = Routes(ROUTES, unrouted=None)
    assert routes.targets("inbox", "message.received") == (("app",), True)
    assert routes.targets("inbox", "message.sent") == (("app", "audit"), True)
    assert routes.targets("inbox", "contact.created") == (("audit", "app"), True)


def test_routes_are_per_source() -> None:
    routes = Routes(ROUTES, unrouted=None)
    assert routes.targets("other", "message.sent") == (("other-app",), True)
    assert routes.targets("third", "message.sent") == ((), False)


def test_unrouted_events_are_dropped_or_sent_to_the_default_target() -> None:
    assert Routes(ROUTES, unrouted=None).targets("inbox", "invoice.paid") == ((), False)
    assert Routes(ROUTES, unrouted="app").targets("inbox", "invoice.paid") == (("app",), False)


def test_the_memo_stays_bounded_under_many_event_types() -> None:
    routes = Routes(ROUTES, unrouted=None)
    for i in range(5000):
        routes.targets("inbox", f"spam.{i}")
    assert len(routes._memo) <= 1024
    assert routes.targets("inbox", "message.sent") == (("app", "audit"), True)
