"""The span helpers others call (GenAI conventions, run context), and the processors between spans and
the stores: run context from baggage, SDK-internal spans hidden with their children re-attached,
secrets redacted before export."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from accord import telemetry
from accord.errors import AccordError
from accord.telemetry import (
    HiddenScopeProcessor,
    RedactingExporter,
    RunContextProcessor,
    TelemetrySettings,
    client_call,
    execute_tool,
    invoke_agent,
    record_budget,
    record_queue_wait,
    record_retry,
    record_usage,
    run_context,
)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A provider of the test's own (the process-global one can be set only once per process)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(RunContextProcessor())
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", lambda: tracer_provider.get_tracer("accord"))
    yield tracer_provider, exporter
    tracer_provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_invoke_agent_follows_the_genai_conventions_and_carries_workflow_step_skill_and_run(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = provider
    with invoke_agent(
        "sanctions-agent", skill="sanctions-screening", workflow="credit-risk", step="screen", run_id="run-1"
    ) as span:
        record_usage(input_tokens=120, output_tokens=30, cost_usd=0.0042, model="local-rules", span=span)

    attributes = dict(by_name(exporter)["invoke_agent sanctions-agent"].attributes or {})
    assert attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "sanctions-agent",
        "accord.run_id": "run-1",
        "accord.workflow": "credit-risk",
        "accord.step": "screen",
        "accord.skill": "sanctions-screening",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "accord.usage.cost_usd": 0.0042,
        "gen_ai.request.model": "local-rules",
    }
    assert by_name(exporter)["invoke_agent sanctions-agent"].kind == trace.SpanKind.CLIENT


def test_spans_inside_an_agent_invocation_inherit_its_run_context_and_it_travels_as_baggage(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = provider
    with invoke_agent("ledger-agent", skill="transaction-profile", workflow="credit-risk", step="ledger"):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        with execute_tool("ledger.aggregate_by_period", call_id="c-1"):
            record_queue_wait(0.0125)

    tool = dict(by_name(exporter)["execute_tool ledger.aggregate_by_period"].attributes or {})
    assert tool["gen_ai.operation.name"] == "execute_tool"
    assert tool["gen_ai.tool.name"] == "ledger.aggregate_by_period"
    assert tool["gen_ai.tool.call.id"] == "c-1"
    assert tool["accord.step"] == "ledger"
    assert tool["accord.workflow"] == "credit-risk"
    assert tool["accord.queue.wait_ms"] == 12.5
    assert "accord.step=ledger" in carrier["baggage"]
    assert "traceparent" in carrier


def test_run_context_labels_spans_started_inside_it_only(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer_provider, exporter = provider
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        with run_context(run_id="run-7", workflow="credit-risk"), tracer.start_as_current_span("inside"):
            pass
        with tracer.start_as_current_span("after"):
            pass

    spans = by_name(exporter)
    assert dict(spans["inside"].attributes or {}) == {
        "accord.run_id": "run-7",
        "accord.workflow": "credit-risk",
    }
    assert not spans["request"].attributes
    assert not spans["after"].attributes


def test_a_failure_inside_a_helper_span_marks_it_with_the_reason_code(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = provider

    def failing_call() -> None:
        with execute_tool("bureau.get_credit_file") as span:
            record_retry(1, "upstream_unavailable", span=span)
            raise AccordError("upstream_unavailable")

    with pytest.raises(AccordError):
        failing_call()

    [failed] = exporter.get_finished_spans()
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "upstream_unavailable"
    assert (failed.attributes or {})["accord.retries"] == 1
    assert [event.name for event in failed.events] == ["retry"]


def test_budget_is_recorded_as_used_and_allowed(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = provider
    with invoke_agent("orchestrator", kind=trace.SpanKind.INTERNAL) as span:
        record_budget(0.8, 1.0, "usd", span=span)

    attributes = dict(exporter.get_finished_spans()[0].attributes or {})
    assert (attributes["accord.budget.used"], attributes["accord.budget.allowed"]) == (0.8, 1.0)


def test_sdk_internal_spans_are_hidden_and_their_children_attach_to_the_nearest_kept_ancestor() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        HiddenScopeProcessor(SimpleSpanProcessor(exporter), frozenset({"a2a-python-sdk"}))
    )
    ours, sdk = tracer_provider.get_tracer("fastapi"), tracer_provider.get_tracer("a2a-python-sdk")
    with (
        ours.start_as_current_span("POST /a2a") as server,
        sdk.start_as_current_span("on_message_send"),
        sdk.start_as_current_span("event_queue"),
        ours.start_as_current_span("invoke_agent x"),
    ):
        pass

    spans = by_name(exporter)
    assert set(spans) == {"POST /a2a", "invoke_agent x"}
    parent = spans["invoke_agent x"].parent
    assert parent is not None
    assert parent.span_id == server.get_span_context().span_id


def test_exported_spans_lose_secret_attributes_whatever_the_exporter() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exporter)))
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    with tracer_provider.get_tracer("t").start_as_current_span("call") as span:
        span.set_attribute("http.request.header.authorization", (f"Bearer {token}",))
        span.set_attribute("url.query", f"code=abc&access_token={token}")
        span.set_attribute("gen_ai.tool.name", "sanctions.search")

    attributes = dict(exporter.get_finished_spans()[0].attributes or {})
    assert token not in repr(attributes)
    assert attributes["gen_ai.tool.name"] == "sanctions.search"


def test_settings_come_from_the_environment_with_otlp_optional_and_the_local_store_on_by_default(
    tmp_path: Path,
) -> None:
    default = TelemetrySettings.from_env({"ACCORD_STATE_DIR": str(tmp_path)})
    assert (default.enabled, default.span_store, default.otlp_endpoint) == (True, True, None)
    assert default.state_dir == tmp_path

    configured = TelemetrySettings.from_env(
        {
            "ACCORD_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "ACCORD_SPAN_STORE": "off",
            "ACCORD_DATABASE_URL": "postgresql://postgres@127.0.0.1/accord",
        }
    )
    assert configured.otlp_endpoint == "http://127.0.0.1:4318"
    assert configured.span_store is False
    assert configured.database_url == "postgresql://postgres@127.0.0.1/accord"
    assert TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}).otlp_endpoint
    assert TelemetrySettings.from_env({"ACCORD_TELEMETRY": "off"}).enabled is False


def test_a_call_over_an_uninstrumented_transport_gets_a_client_span_and_the_headers_that_continue_it(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = provider
    with client_call(
        "tools/call search", {"mcp.method.name": "tools/call", "gen_ai.tool.name": "search"}
    ) as headers:
        pass

    [span] = exporter.get_finished_spans()
    assert span.kind == trace.SpanKind.CLIENT
    context = span.get_span_context()
    assert headers["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
