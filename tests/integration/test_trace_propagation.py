"""Trace context across real processes: two services made by `create_service_app` and run by `serve`
(nothing else wires telemetry), called over HTTP and gRPC; every span lands in the local span store."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import secrets
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from accord.logs import configure_logging
from accord.service import create_service_app, serve
from accord.span_store import SpanReader, StoredSpan
from accord.testing.ports import free_port
from tests.role_processes import start_role, wait_ready

ECHO_METHOD = "/accord.test.Echo/Say"
STREAM_METHOD = "/accord.test.Echo/Count"
# Planted in what the services log: none of it may reach the log output.
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXZhbHVlLXRoYXQtaXMtbG9uZw"
CLIENT_SECRET = "s3cr3t-" + "9f8e7d6c5b4a" * 3


def create_backend() -> FastAPI:
    app = create_service_app("backend")

    @app.get("/work/{item}")
    async def work(item: str) -> dict[str, str]:
        logging.getLogger("backend").info("working on %s with Bearer %s", item, JWT)
        return {"item": item}

    return app


def create_frontend(backend_url: str, backend_grpc: str) -> FastAPI:
    app = create_service_app("frontend")

    @app.post("/relay")
    async def relay() -> dict[str, str]:
        logging.getLogger("frontend").info("relaying", extra={"client_secret": CLIENT_SECRET})
        async with httpx.AsyncClient() as client:
            item = (await client.get(f"{backend_url}/work/42")).json()["item"]
        async with grpc.aio.insecure_channel(backend_grpc) as channel:
            said = await channel.unary_unary(ECHO_METHOD)(b"hello", timeout=10)
            counted = [n async for n in channel.unary_stream(STREAM_METHOD)(b"3", timeout=10)]
        return {"item": item, "said": said.decode(), "counted": b"".join(counted).decode()}

    return app


def echo_server(host: str, port: int) -> object:
    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        async def say(request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
            return b"echo:" + request

        async def count(request: bytes, _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            for n in range(int(request)):
                yield str(n).encode()

        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "accord.test.Echo",
            {
                "Say": grpc.unary_unary_rpc_method_handler(say),
                "Count": grpc.unary_stream_rpc_method_handler(count),
            },
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"{host}:{port}")
        await server.start()
        try:
            yield
        finally:
            await server.stop(grace=1)

    return running


def run_service() -> None:
    """Entry point of the child processes (`python -c`), as a service's `__main__` would be."""
    role, port = os.environ["ROLE"], int(os.environ["PORT"])
    configure_logging(role)
    if role == "backend":
        grpc_port = int(os.environ["GRPC_PORT"])
        asyncio.run(serve(create_backend(), "127.0.0.1", port, extra=[echo_server("127.0.0.1", grpc_port)]))  # type: ignore[list-item]
    else:
        app = create_frontend(os.environ["BACKEND_URL"], os.environ["BACKEND_GRPC"])
        asyncio.run(serve(app, "127.0.0.1", port))


def _start(role: str, state_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return start_role("tests.integration.test_trace_propagation", role, state_dir, env)


class OtlpReceiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP trace receiver: keeps (service.name, trace id, span name) of every span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _OtlpHandler)


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.server.spans.extend(
                        (attributes["service.name"], span.trace_id.hex(), span.name)
                        for span in scope_spans.spans
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[tuple[str, Path]]:
    state_dir = tmp_path_factory.mktemp("trace-state")
    backend_port, grpc_port, frontend_port = free_port(), free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}"
    frontend_url = f"http://127.0.0.1:{frontend_port}"
    exporting = {
        "ACCORD_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    backend = _start(
        "backend", state_dir, {"PORT": str(backend_port), "GRPC_PORT": str(grpc_port), **exporting}
    )
    frontend = _start(
        "frontend",
        state_dir,
        {
            "PORT": str(frontend_port),
            "BACKEND_URL": backend_url,
            "BACKEND_GRPC": f"127.0.0.1:{grpc_port}",
            **exporting,
        },
    )
    try:
        wait_ready(backend_url, backend)
        wait_ready(frontend_url, frontend)
        yield frontend_url, state_dir
    finally:
        for process in (frontend, backend):
            process.terminate()
        for process in (frontend, backend):
            process.wait(15)


async def _spans_of(
    state_dir: Path, trace_id: str, at_least: int, timeout_s: float = 15.0
) -> list[StoredSpan]:
    reader = SpanReader(state_dir)
    deadline = time.monotonic() + timeout_s
    while True:
        spans = await reader.trace(trace_id)
        if len(spans) >= at_least or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.05)


async def _relay(frontend_url: str) -> tuple[str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(frontend_url + "/relay", headers=headers)
    assert response.json() == {"item": "42", "said": "echo:hello", "counted": "012"}
    return trace_id, parent_id


async def test_a_request_through_two_services_is_one_trace_with_the_callers_span_as_root_parent(
    services: tuple[str, Path],
) -> None:
    frontend_url, state_dir = services
    trace_id, caller_span = await _relay(frontend_url)

    spans = await _spans_of(state_dir, trace_id, at_least=7)

    by_name = {(s.service, s.name): s for s in spans}
    assert len(spans) == len(by_name) == 7
    assert {s.trace_id for s in spans} == {trace_id}
    inbound = by_name[("frontend", "POST /relay")]
    http_out = by_name[("frontend", "GET")]
    http_in = by_name[("backend", "GET /work/{item}")]
    grpc_out = by_name[("frontend", "accord.test.Echo/Say")]
    grpc_in = by_name[("backend", "accord.test.Echo/Say")]
    assert inbound.kind == "server"
    assert inbound.parent_span_id == caller_span
    assert http_out.kind == "client"
    assert http_out.parent_span_id == inbound.span_id
    assert http_in.kind == "server"
    assert http_in.parent_span_id == http_out.span_id
    assert grpc_out.kind == "client"
    assert grpc_out.parent_span_id == inbound.span_id
    assert grpc_in.kind == "server"
    assert grpc_in.parent_span_id == grpc_out.span_id
    assert http_in.attributes["http.route"] == "/work/{item}"
    assert http_in.attributes["http.response.status_code"] == 200
    assert grpc_in.attributes["rpc.grpc.status_code"] == 0
    assert grpc_out.attributes["rpc.service"] == "accord.test.Echo"
    stream_out = by_name[("frontend", "accord.test.Echo/Count")]
    stream_in = by_name[("backend", "accord.test.Echo/Count")]
    assert stream_out.parent_span_id == inbound.span_id
    assert stream_in.parent_span_id == stream_out.span_id
    assert stream_in.end_ns <= stream_out.end_ns  # the client span lasts until the stream is done


async def test_each_service_keeps_its_spans_in_its_own_file_under_the_state_dir(
    services: tuple[str, Path],
) -> None:
    frontend_url, state_dir = services
    trace_id, _ = await _relay(frontend_url)
    await _spans_of(state_dir, trace_id, at_least=7)

    assert {p.name for p in SpanReader(state_dir).files()} == {"spans-backend.db", "spans-frontend.db"}


async def test_health_and_metrics_polls_leave_no_spans(services: tuple[str, Path]) -> None:
    frontend_url, state_dir = services
    trace_id = secrets.token_hex(16)
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            await client.get(frontend_url + path, headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"})
    marker, _ = await _relay(frontend_url)  # spans written after the polls: the polls had their chance
    await _spans_of(state_dir, marker, at_least=7)

    assert await SpanReader(state_dir).trace(trace_id) == []


async def test_log_lines_carry_the_trace_and_span_ids_and_never_the_secrets(
    services: tuple[str, Path],
) -> None:
    frontend_url, state_dir = services
    trace_id, _ = await _relay(frontend_url)
    spans = await _spans_of(state_dir, trace_id, at_least=7)
    handler_spans = {s.span_id for s in spans if s.kind == "server"}

    deadline = time.monotonic() + 10
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(lines) < 2:
        output = (state_dir / "frontend.log").read_text() + (state_dir / "backend.log").read_text()
        lines = [json.loads(line) for line in output.splitlines() if trace_id in line]
        await asyncio.sleep(0.05)

    assert {line["logger"] for line in lines} == {"frontend", "backend"}
    assert all(line["span_id"] in handler_spans for line in lines)
    everything = (state_dir / "frontend.log").read_text() + (state_dir / "backend.log").read_text()
    assert JWT not in everything
    assert CLIENT_SECRET not in everything
    assert "[REDACTED]" in everything


async def test_spans_are_also_exported_over_otlp_when_an_endpoint_is_configured(
    services: tuple[str, Path], otlp: OtlpReceiver
) -> None:
    frontend_url, state_dir = services
    trace_id, _ = await _relay(frontend_url)
    stored = await _spans_of(state_dir, trace_id, at_least=7)

    deadline = time.monotonic() + 15
    exported: set[tuple[str, str, str]] = set()
    while time.monotonic() < deadline and len(exported) < len(stored):
        with otlp.lock:
            exported = {span for span in otlp.spans if span[1] == trace_id}
        await asyncio.sleep(0.05)

    assert exported == {(s.service, s.trace_id, s.name) for s in stored}
