"""The trace id an inbound request's records carry: the caller's, else the request's own trace, and only
outside any trace a fresh one."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from accord.trace_context import trace_id_from

CALLER = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER}-00f067aa0ba902b7-01"


def test_the_callers_trace_id_wins_from_meta_then_headers() -> None:
    assert trace_id_from({"traceparent": TRACEPARENT}, {}) == CALLER
    assert trace_id_from(None, {"traceparent": TRACEPARENT}) == CALLER
    assert trace_id_from({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, {}) != "0" * 32


def test_without_one_every_record_of_a_request_carries_the_requests_own_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        first, second = trace_id_from(None, {}), trace_id_from({}, {})
    assert first == second == format(span.get_span_context().trace_id, "032x")


def test_outside_any_trace_each_gets_a_fresh_id() -> None:
    first, second = trace_id_from(None, {}), trace_id_from(None, {})
    assert first != second
    assert len(first) == 32 and int(first, 16) >= 0  # noqa: PT018
