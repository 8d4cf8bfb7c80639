"""One trace across an A2A call on each transport (JSON-RPC, HTTP+JSON, gRPC), with the a2a-sdk's own
client and server and no tracing code in either service: the process-wide instrumentation carries the
caller's context, and the run context (baggage) arrives at the agent."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler, GrpcHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentSkill,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
    a2a_pb2_grpc,
)
from a2a.utils.constants import TransportProtocol
from fastapi import FastAPI
from opentelemetry.trace import SpanKind
from starlette.routing import Mount

from accord.cards import JSONRPC_PATH, REST_PATH, interfaces
from accord.logs import configure_logging
from accord.service import create_service_app, serve
from accord.span_store import SpanReader, StoredSpan
from accord.telemetry import invoke_agent
from accord.testing.ports import free_port
from tests.role_processes import start_role, wait_ready


class EchoExecutor(AgentExecutor):
    """Completes every task at once, inside an `invoke_agent` span of its own."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task or new_task(
            task_id=context.task_id or "",
            context_id=context.context_id or "",
            state=TaskState.TASK_STATE_SUBMITTED,
            history=[context.message] if context.message is not None else [],
        )
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        with invoke_agent("echo-agent", kind=SpanKind.INTERNAL):
            await updater.start_work()
            await updater.add_artifact([Part(text="echo")], name="result")
            await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def create_agent(base_url: str, grpc_address: str) -> tuple[FastAPI, DefaultRequestHandler]:
    card = AgentCard(
        name="echo-agent",
        description="Echoes",
        version="1.0.0",
        supported_interfaces=interfaces(base_url, grpc_address),
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="Echoes", tags=["test"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(), task_store=InMemoryTaskStore(), agent_card=card
    )
    app = create_service_app("echo-agent")
    app.router.routes.extend(create_agent_card_routes(card))
    app.router.routes.extend(create_jsonrpc_routes(handler, rpc_url=JSONRPC_PATH))
    app.router.routes.append(Mount(REST_PATH, routes=create_rest_routes(handler)))
    return app, handler


def a2a_grpc_server(handler: DefaultRequestHandler, address: str) -> object:
    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        server = grpc.aio.server()
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(address)
        await server.start()
        try:
            yield
        finally:
            await server.stop(grace=1)

    return running


def create_caller(agent_url: str) -> FastAPI:
    app = create_service_app("caller")

    @app.post("/call/{transport}")
    async def call(transport: str) -> dict[str, str]:
        async with httpx.AsyncClient(timeout=30) as http:
            card = await A2ACardResolver(http, agent_url).get_agent_card()
            config = ClientConfig(
                streaming=False,
                httpx_client=http,
                grpc_channel_factory=grpc.aio.insecure_channel,
                supported_protocol_bindings=[TransportProtocol(transport)],
            )
            client = ClientFactory(config).create(card)
            message = Message(role=Role.ROLE_USER, message_id=secrets.token_hex(8), parts=[Part(text="hi")])
            with invoke_agent(
                "echo-agent", skill="echo", workflow="echo-flow", step="only", run_id="run-a2a"
            ):
                events = [event async for event in client.send_message(SendMessageRequest(message=message))]
            await client.close()
        return {"state": TaskState.Name(events[-1].task.status.state)}

    return app


def run_service() -> None:
    role, port = os.environ["ROLE"], int(os.environ["PORT"])
    configure_logging(role)
    if role == "agent":
        grpc_address = os.environ["GRPC_ADDRESS"]
        app, handler = create_agent(f"http://127.0.0.1:{port}", grpc_address)
        asyncio.run(serve(app, "127.0.0.1", port, extra=[a2a_grpc_server(handler, grpc_address)]))  # type: ignore[list-item]
    else:
        asyncio.run(serve(create_caller(os.environ["AGENT_URL"]), "127.0.0.1", port))


def _start(role: str, state_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return start_role("tests.integration.test_trace_a2a_transports", role, state_dir, env)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    state_dir = tmp_path_factory.mktemp("a2a-trace")
    agent_port, caller_port = free_port(), free_port()
    agent_url, caller_url = f"http://127.0.0.1:{agent_port}", f"http://127.0.0.1:{caller_port}"
    agent = _start("agent", state_dir, {"PORT": str(agent_port), "GRPC_ADDRESS": f"127.0.0.1:{free_port()}"})
    caller = _start("caller", state_dir, {"PORT": str(caller_port), "AGENT_URL": agent_url})
    try:
        wait_ready(agent_url, agent)
        wait_ready(caller_url, caller)
        yield caller_url, state_dir
    finally:
        for process in (caller, agent):
            process.terminate()
        for process in (caller, agent):
            process.wait(15)


def _ancestry(span: StoredSpan, by_id: dict[str, StoredSpan]) -> list[StoredSpan]:
    chain = [span]
    while chain[-1].parent_span_id in by_id:
        chain.append(by_id[chain[-1].parent_span_id])
    return chain


async def _work_chain(
    state_dir: Path, trace_id: str, root_parent: str, timeout_s: float = 15.0
) -> list[StoredSpan]:
    """The trace's spans once the agent's work span is stored with every ancestor up to the caller's root
    (each service exports on its own schedule)."""
    reader = SpanReader(state_dir)
    deadline = time.monotonic() + timeout_s
    while True:
        spans = await reader.trace(trace_id)
        by_id = {s.span_id: s for s in spans}
        work = [s for s in spans if s.service == "echo-agent" and s.name == "invoke_agent echo-agent"]
        if work and _ancestry(work[0], by_id)[-1].parent_span_id == root_parent:
            return spans
        assert time.monotonic() < deadline, f"trace {trace_id} incomplete: {[s.name for s in spans]}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("transport", "client_hop", "server_hop"),
    [
        (TransportProtocol.JSONRPC, "POST", "POST /a2a/jsonrpc"),
        (TransportProtocol.HTTP_JSON, "POST", "POST /a2a/rest/{path}"),
        (TransportProtocol.GRPC, "lf.a2a.v1.A2AService/SendMessage", "lf.a2a.v1.A2AService/SendMessage"),
    ],
)
async def test_an_a2a_call_is_one_trace_from_the_caller_into_the_agents_work_on_each_transport(
    mesh: tuple[str, Path], transport: TransportProtocol, client_hop: str, server_hop: str
) -> None:
    caller_url, state_dir = mesh
    trace_id, root_parent = secrets.token_hex(16), secrets.token_hex(8)
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{caller_url}/call/{transport.value}", headers={"traceparent": f"00-{trace_id}-{root_parent}-01"}
        )
    assert response.json() == {"state": "TASK_STATE_COMPLETED"}

    spans = await _work_chain(state_dir, trace_id, root_parent)

    by_id = {s.span_id: s for s in spans}
    work = next(s for s in spans if s.service == "echo-agent" and s.name == "invoke_agent echo-agent")
    assert [(s.service, s.kind, s.name) for s in _ancestry(work, by_id)] == [
        ("echo-agent", "internal", "invoke_agent echo-agent"),
        ("echo-agent", "server", server_hop),
        ("caller", "client", client_hop),
        ("caller", "client", "invoke_agent echo-agent"),
        ("caller", "server", "POST /call/{transport}"),
    ]
    assert {s.trace_id for s in spans} == {trace_id}
    # The run context set by the caller arrived with the call.
    assert work.attributes["accord.run_id"] == "run-a2a"
    assert work.attributes["accord.step"] == "only"
    # SDK-internal spans are left out of the store without breaking the tree.
    assert not [s for s in spans if s.scope == "a2a-python-sdk"]
    assert all(s.parent_span_id in by_id or s.parent_span_id == root_parent for s in spans)
