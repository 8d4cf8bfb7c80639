"""The local span store: what a service's spans become on disk (or in PostgreSQL), and how a trace is
read back merged from every service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from accord.span_store import (
    PostgresSpanSink,
    SpanReader,
    SpanSink,
    SpanStoreExporter,
    SqliteSpanSink,
    asyncpg_dsn,
    span_file,
)
from accord.telemetry import RunContextProcessor, run_context
from accord.testing.backing_services import require_postgres


def service_provider(sink: SpanSink, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(RunContextProcessor())
    provider.add_span_processor(SimpleSpanProcessor(SpanStoreExporter(sink, service)))
    return provider


@pytest.fixture
def two_services(tmp_path: Path) -> Iterator[tuple[TracerProvider, TracerProvider]]:
    front = service_provider(SqliteSpanSink(span_file(tmp_path, "front")), "front")
    back = service_provider(SqliteSpanSink(span_file(tmp_path, "back")), "back")
    yield front, back
    front.shutdown()
    back.shutdown()


def call_across(front: TracerProvider, back: TracerProvider) -> tuple[str, dict[str, str]]:
    """front: server span -> client span; back: a server span continuing the client's context."""
    ids: dict[str, str] = {}
    with (
        run_context(run_id="run-42", workflow="credit-risk"),
        front.get_tracer("t").start_as_current_span("POST /v1/runs", kind=trace.SpanKind.SERVER) as server,
    ):
        with front.get_tracer("t").start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as client:
            client.set_attribute("http.request.header.authorization", "Bearer " + "A1b2C3d4" * 6)
            with back.get_tracer("t").start_as_current_span("GET /work", kind=trace.SpanKind.SERVER) as inner:
                inner.add_event("checked", {"client_secret": "swordfish"})
                ids["back"] = format(inner.get_span_context().span_id, "016x")
            ids["client"] = format(client.get_span_context().span_id, "016x")
        ids["server"] = format(server.get_span_context().span_id, "016x")
        trace_id = format(server.get_span_context().trace_id, "032x")
    return trace_id, ids


async def test_a_trace_is_read_back_merged_from_every_services_file_in_start_order(
    two_services: tuple[TracerProvider, TracerProvider], tmp_path: Path
) -> None:
    trace_id, ids = call_across(*two_services)

    spans = await SpanReader(tmp_path).trace(trace_id)

    assert [(s.service, s.name) for s in spans] == [
        ("front", "POST /v1/runs"),
        ("front", "GET"),
        ("back", "GET /work"),
    ]
    server, client, inner = spans
    assert server.parent_span_id is None
    assert server.kind == "server"
    assert client.parent_span_id == ids["server"]
    assert client.kind == "client"
    assert inner.parent_span_id == ids["client"]
    assert inner.span_id == ids["back"]
    assert all(s.start_ns <= s.end_ns for s in spans)
    assert server.start_ns <= client.start_ns <= inner.start_ns <= inner.end_ns <= server.end_ns


async def test_spans_are_found_by_the_run_they_carry(
    two_services: tuple[TracerProvider, TracerProvider], tmp_path: Path
) -> None:
    trace_id, _ = call_across(*two_services)

    reader = SpanReader(tmp_path)
    assert await reader.trace_ids_for_run("run-42") == [trace_id]
    assert {s.run_id for s in await reader.trace(trace_id)} == {"run-42"}
    assert await reader.trace_ids_for_run("no-such-run") == []


async def test_stored_attributes_and_events_hold_no_secrets(
    two_services: tuple[TracerProvider, TracerProvider], tmp_path: Path
) -> None:
    trace_id, _ = call_across(*two_services)

    spans = await SpanReader(tmp_path).trace(trace_id)

    stored = repr([s.to_dict() for s in spans])
    assert "A1b2C3d4" not in stored
    assert "swordfish" not in stored
    assert spans[2].events[0]["name"] == "checked"


async def test_a_state_dir_without_span_files_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / "spans-broken.db").write_text("not a database")
    assert await SpanReader(tmp_path / "missing").trace("0" * 32) == []
    assert await SpanReader(tmp_path).trace("1" * 32) == []


async def test_batched_export_writes_everything_by_shutdown(tmp_path: Path) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "batch"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            SpanStoreExporter(SqliteSpanSink(span_file(tmp_path, "batch")), "batch"),
            schedule_delay_millis=60_000,
        )
    )
    with provider.get_tracer("t").start_as_current_span("root") as root:
        for i in range(50):
            with provider.get_tracer("t").start_as_current_span(f"child {i}"):
                pass
    provider.shutdown()

    spans = await SpanReader(tmp_path).trace(format(root.get_span_context().trace_id, "032x"))
    assert len(spans) == 51


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A database of the test's own, dropped afterwards."""
    base = require_postgres()
    name = f"spans_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(base))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.postgres
async def test_services_sharing_postgresql_write_one_table_read_back_as_one_trace(postgres_url: str) -> None:
    front = service_provider(PostgresSpanSink(postgres_url), "front")
    back = service_provider(PostgresSpanSink(postgres_url), "back")
    try:
        trace_id, ids = call_across(front, back)
    finally:
        front.shutdown()
        back.shutdown()

    reader = SpanReader(database_url=postgres_url)
    spans = await reader.trace(trace_id)

    assert [(s.service, s.name) for s in spans] == [
        ("front", "POST /v1/runs"),
        ("front", "GET"),
        ("back", "GET /work"),
    ]
    assert spans[2].parent_span_id == ids["client"]
    assert await reader.trace_ids_for_run("run-42") == [trace_id]
