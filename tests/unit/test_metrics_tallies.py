"""The hot path's tallies (gateway.metrics.Tally, Timings) must expose exactly what
prometheus_client's own inc()/observe() would have, once folded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import ACK_BUCKETS, Metrics


def exposed(metrics: Metrics, prefix: str) -> list[str]:
    text = metrics.exposition().decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


@given(st.lists(st.floats(min_value=0.0, max_value=5.0), max_size=50))
def test_folded_ack_timings_equal_histogram_observe(seconds: list[float]) -> None:
    tallied, direct = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    source = tallied.source("inbox")
    child = direct.ack_duration.labels("inbox")
    for value in seconds:
        source.ack.observe(value)
        child.observe(value)
    name = "webhook_gateway_ack_duration_seconds"
    assert exposed(tallied, name) == exposed(direct, name)


def test_bucket_bounds_are_inclusive_as_prometheus_counts_them() -> None:
    tallied, direct = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    for bound in ACK_BUCKETS[:-1]:  # a value on a bound goes into that bound's bucket
        tallied.source("inbox").ack.observe(bound)
        direct.ack_duration.labels("inbox").observe(bound)
    name = "webhook_gateway_ack_duration_seconds_bucket"
    assert exposed(tallied, name) == exposed(direct, name)


def test_counts_show_in_the_exposition_and_fold_once() -> None:
    metrics = Metrics(CollectorRegistry())
    source, target = metrics.source("inbox"), metrics.target("app")
    for _ in range(3):
        source.answered(200)
        source.admitted.inc()
        target.outcome("delivered")
    source.answered(503)
    target.outcome("timeout")
    lines = exposed(metrics, "webhook_gateway_")
    assert 'webhook_gateway_requests_total{code="200",source="inbox"} 3.0' in lines
    assert 'webhook_gateway_requests_total{code="503",source="inbox"} 1.0' in lines
    assert 'webhook_gateway_events_admitted_total{source="inbox"} 3.0' in lines
    delivered = 'webhook_gateway_forward_attempts_total{outcome="delivered",target="app"} 3.0'
    assert delivered in lines
    assert 'webhook_gateway_forward_attempts_total{outcome="timeout",target="app"} 1.0' in lines
    assert exposed(metrics, "webhook_gateway_") == lines  # a second fold adds nothing


def test_a_workers_values_are_written_at_once_not_tallied() -> None:
    # A worker's values live in its shared file, read by the supervisor without
    # asking it: a tally held back would be invisible there, and lost at a kill -9.
    metrics = Metrics(CollectorRegistry())
    metrics._worker = "0"  # what Metrics(worker=0) sets, without the shared files
    source = metrics.source("inbox")
    source.answered(200)
    source.ack.observe(0.001)
    text = generate_latest(metrics.registry).decode()  # no fold
    assert 'webhook_gateway_requests_total{code="200",source="inbox"} 1.0' in text
    assert 'webhook_gateway_ack_duration_seconds_count{source="inbox"} 1.0' in text


def test_requests_no_source_took_show_no_200_series() -> None:
    metrics = Metrics(CollectorRegistry())
    unknown = metrics.statuses("unknown")
    unknown.answered(404)
    lines = exposed(metrics, "webhook_gateway_requests_total")
    assert 'webhook_gateway_requests_total{code="404",source="unknown"} 1.0' in lines
    assert not any('source="unknown"' in line and 'code="200"' in line for line in lines)
