"""A real `python -m registry` process and the card servers it registers agents from, for tests.

`registry_process` runs the registry on a state dir; `card_server_on` serves real A2A agents whose cards are
signed by a chosen signer (by default the state dir's local publisher, whose JWKS is in the registry's trust
dir). The registration section adds the operator's side: an admin secret and a tool policy
(`registry_env`), and card servers on other loopback addresses (`card_server_at`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import httpx
import pytest
import uvicorn
import yaml
from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from accord.a2a_server import A2AServer
from accord.audit import AuditLog, verify_chain
from accord.card_signing import CardSigner
from accord.cards import SkillSchemas, build_card
from accord.service import OwnSignalsServer
from accord.storage import create_engine
from accord.testing.readiness import wait_until_ready

START_TIMEOUT_S = 30
OPEN_SCHEMA = {"type": "object"}
DEFAULT = "publisher"  # `serve_agent(signer=DEFAULT)`: signed by the card server's publisher


class Done(AgentExecutor):
    """The smallest real executor: the cards under test must belong to agents that actually run."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.add_artifact([new_text_part("done")], name="result")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def card_source(name: str, skills: Mapping[str, list[str]], version: str = "1.0.0") -> dict[str, Any]:
    return {
        "name": name,
        "description": f"{name} for tests",
        "version": version,
        "capabilities": {},
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [
            {"id": sid, "name": sid, "description": f"does {sid}", "tags": tags}
            for sid, tags in skills.items()
        ],
    }


@dataclass
class CardServer:
    """One uvicorn server: real A2A agents under path prefixes, and raw JSON documents at chosen paths.

    `hits` records every path requested outside the agents' mounts, so a test can prove a URL was never
    fetched.
    """

    app: Starlette
    base_url: str
    signer: CardSigner | None
    documents: dict[str, Any] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def serve_agent(
        self, name: str, skills: dict[str, list[str]], signer: CardSigner | str | None = DEFAULT
    ) -> str:
        """Mount a real A2A agent serving a card for `name`; returns its card URL."""
        return self.mount_agent(name, skills, signer)[1]

    def mount_agent(
        self,
        name: str,
        skills: dict[str, list[str]],
        signer: CardSigner | str | None = DEFAULT,
        version: str = "1.0.0",
    ) -> tuple[A2AServer, str]:
        """Mount a real A2A agent (signed by this server's publisher unless `signer` says otherwise)."""
        prefix = f"{name}-{uuid.uuid4().hex[:6]}"
        schemas = {sid: SkillSchemas(OPEN_SCHEMA, OPEN_SCHEMA) for sid in skills}
        card = build_card(card_source(name, skills, version), f"{self.base_url}/{prefix}", None, schemas)
        chosen = self.signer if signer == DEFAULT else signer
        assert chosen is None or isinstance(chosen, CardSigner)
        server = A2AServer(card, Done(), signer=chosen)
        self.app.router.routes.append(Mount(f"/{prefix}", routes=server.routes()))
        return server, f"{self.base_url}/{prefix}/.well-known/agent-card.json"

    def serve_json(self, document: Any, name: str | None = None) -> str:
        """Serve `document` at `/docs/<name>`; replace it later through `documents`. Returns its URL."""
        path = f"/docs/{name or uuid.uuid4().hex[:10] + '.json'}"
        self.documents[path] = document
        return self.base_url + path

    async def document(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        document = self.documents.get(request.url.path)
        if document is None:
            return Response(status_code=404)
        return JSONResponse(document)


@asynccontextmanager
async def card_server_on(signer: CardSigner | None) -> AsyncIterator[CardServer]:
    """A card server on a free loopback port; its agents are signed by `signer`."""
    app = Starlette(
        routes=[
            Route("/bad/text", lambda _r: PlainTextResponse("not a card")),
            Route("/bad/missing-fields", lambda _r: JSONResponse({"name": "incomplete"})),
        ]
    )
    async with running(app) as base_url:
        server = CardServer(app, base_url, signer)
        app.router.routes.append(Route("/docs/{rest:path}", server.document))
        app.router.routes.append(Route("/.well-known/{rest:path}", server.document))
        yield server


@dataclass(frozen=True)
class Registry:
    base_url: str
    grpc_target: str
    state: Path

    async def audit(self) -> list[dict[str, Any]]:
        """The registry's audit trail, read from its SQLite file, checked to be an intact chain."""
        engine = create_engine(f"sqlite+aiosqlite:///{self.state / 'registry.db'}")
        try:
            records: list[dict[str, Any]] = await AuditLog(engine, "registry").records()
        finally:
            await engine.dispose()
        assert verify_chain(records) is None
        return records

    async def agents(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            body: list[dict[str, Any]] = (await http.get("/v1/agents")).json()["agents"]
        return body


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with bound_socket() as sock:
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def running(app: Any, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port; yields its base URL."""
    sock = bound_socket()
    server = OwnSignalsServer(
        uvicorn.Config(app, log_config=None, lifespan=lifespan, timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@contextmanager
def registry_process(
    state: Path,
    *,
    start_timeout_s: float = START_TIMEOUT_S,
    require_clean_exit: bool = True,
    **env_overrides: str,
) -> Iterator[Registry]:
    """`python -m registry` on free ports with `state` as its state dir (trust: `<state>/trust`), stopped
    with SIGTERM; with `require_clean_exit` it must then exit with status 0."""
    port, grpc_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCORD_")}
    env |= {
        "ACCORD_HOST": "127.0.0.1",
        "ACCORD_PORT": str(port),
        "ACCORD_GRPC_PORT": str(grpc_port),
        "ACCORD_STATE_DIR": str(state),
        "ACCORD_CARD_FETCH_TIMEOUT_S": "2",
        # The card servers of these tests listen on loopback, which the SSRF checks refuse unless allowed.
        "ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true",
        **env_overrides,
    }
    log_path = state / f"registry-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "registry"], env=env, cwd=state, stdout=log, stderr=subprocess.STDOUT
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base_url, process, log_path, start_timeout_s)
            yield Registry(base_url, f"127.0.0.1:{grpc_port}", state)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code: int | None = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                code = None
    if require_clean_exit:
        assert code == 0, log_path.read_text()[-4000:]


def wait_ready(
    base_url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Poll /readyz until the service says ready, the process dies, or the deadline passes."""
    wait_until_ready(base_url, process, timeout_s, log)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Poll `check` until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def grpc_refusal(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str | None]:
    """The status code and `accord-reason` of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await asyncio.wait_for(call, timeout=10)
    reasons = [value for key, value in failed.value.trailing_metadata() or () if key == "accord-reason"]
    return failed.value.code(), reasons[0] if reasons else None


# --- registration: an operator's registry (admin secret, tool policy) and far card servers

ADMIN = "registry-admin-secret-0123456789"
POLICY = {
    "version": 1,
    "clients": {
        "partner-scorer": {
            "tools": [
                {"tool": "bureau.get_credit_file", "arguments": {"applicant_id": {"max_length": 64}}},
                {"tool": "ledger.*"},
            ]
        },
        "no-tools": {"tools": []},
    },
}
SCOPES = ["tool:bureau.get_credit_file", "tool:ledger.*"]
# A registry process imports the whole stack; on a busy 2-core machine that alone can take 30 s.
REGISTRATION_START_TIMEOUT_S = 120


def registration_registry(state: Path, **env_overrides: str) -> AbstractContextManager[Registry]:
    """A registry as the registration tests start it (pass `registry_env(...)`): a slower card fetch, a
    longer start, and no exit status asked of it."""
    return registry_process(
        state,
        start_timeout_s=REGISTRATION_START_TIMEOUT_S,
        require_clean_exit=False,
        **{"ACCORD_CARD_FETCH_TIMEOUT_S": "5", **env_overrides},
    )


def registry_env(state: Path, local_mode: bool, **extra: str) -> dict[str, str]:
    policy_file = state / "tools.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    return {
        "ACCORD_REGISTRY_ADMIN_SECRET": ADMIN,
        "ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true" if local_mode else "false",
        "ACCORD_REGISTRY_POLICY_FILE": str(policy_file),
        "ACCORD_REGISTRY_REFRESH_INTERVAL_S": "0",
        **extra,
    }


@asynccontextmanager
async def card_server_at(host: str, signer: CardSigner | None) -> AsyncIterator[CardServer]:
    """A card server (as `card_server_on`) on a free port of another loopback address."""
    app = Starlette(routes=[])
    port = free_port()
    server = OwnSignalsServer(uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        cards = CardServer(app, f"http://{host}:{port}", signer)
        app.router.routes.append(Route("/docs/{rest:path}", cards.document))
        yield cards
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
