"""`accord new agent`: scaffold a specialist into a COPY of the repo, start it the way `accord up` does
(MeshRunner, from that copy, the new package on PYTHONPATH: nothing is installed), register it with the
`accord agents` CLI, call its skill with a real A2A client through the gateway's relay, and remove it
with the CLI, after which the relay no longer reaches it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from a2a.client import A2AClientError, ClientConfig, ClientFactory
from a2a.types import SendMessageRequest, Task, TaskState
from a2a.utils.constants import TransportProtocol

from accord.cards import card_from_dict
from accord.mesh import MeshRunner
from accord.payloads import skill_request, task_result
from accord.scaffold import ScaffoldError, plan_agent
from accord.topology import load_topology, repo_root

NAME = "fraud"
AGENT = "fraud-agent"
SKILL = "fraud-summary"
RELAY_REGISTRY_TTL_S = 2.0
ADMIN = "scaffold-registry-admin-0123456789"
IGNORED = shutil.ignore_patterns(".venv", ".accord", ".git", "node_modules", "__pycache__", ".tools", "*.pyc")
# Starting the agent with the gateway, registry and tool servers takes a while on a loaded machine.
pytestmark = pytest.mark.timeout(600)
TOOL_SERVERS = {"sanctions-tools", "bureau-tools", "ledger-tools", "support-tools", "compliance-tools"}


def accord(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it (a fresh process)."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "accord.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_offset(ports: list[int]) -> int:
    for offset in range(41000, 52000, 131):
        if all(_free(port + offset) for port in ports):
            return offset
    raise RuntimeError("no free port offset")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Scaffolded:
    root: Path
    runner: MeshRunner

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return accord(*args, "--registry-url", self.runner.url("registry"), cwd=self.root)


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scaffold") / "repo"
    shutil.copytree(repo_root(), root, ignore=IGNORED)
    return root


@pytest.fixture(scope="module")
def scaffolded(copy: Path) -> Iterator[Scaffolded]:
    created = accord("new", "agent", NAME, "--repo-root", str(copy), cwd=copy)
    assert created.returncode == 0, created.stderr
    topology = load_topology(copy / "deploy" / "topology.yaml")
    wanted = TOOL_SERVERS | {"gateway", "registry", AGENT}
    ports = [p for s in topology.services if s.name in wanted for p in (s.port, s.grpc_port) if p]
    runner = MeshRunner(copy / ".accord", port_offset=free_offset(ports), topology=topology, only=wanted)
    # Every service runs from the copy; the new package is importable only there (nothing installed).
    common = {"ACCORD_REPO_ROOT": str(copy), "PYTHONPATH": str(copy / "services" / AGENT)}
    runner.extra_env = {name: dict(common) for name in wanted}
    runner.extra_env["registry"] |= {
        "ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true",
        "ACCORD_REGISTRY_ADMIN_SECRET": ADMIN,
    }
    runner.extra_env["gateway"]["ACCORD_REGISTRY_URL"] = runner.url("registry")
    runner.start(timeout_s=240)
    try:
        yield Scaffolded(copy, runner)
    finally:
        runner.stop()


def test_the_scaffold_writes_every_piece_and_leaves_the_real_checkout_alone(scaffolded: Scaffolded) -> None:
    copy, real = scaffolded.root, repo_root()
    assert not (real / "services" / AGENT).exists()
    assert AGENT not in (real / "deploy" / "topology.yaml").read_text()
    card = json.loads((copy / "agent-cards" / f"{AGENT}.json").read_text())
    assert (card["name"], [s["id"] for s in card["skills"]]) == (AGENT, [SKILL])
    assert (copy / "services" / AGENT / "fraud_agent" / "agent.py").exists()
    assert (copy / "tests" / "unit" / "test_fraud_agent.py").exists()
    tools = yaml.safe_load((copy / "deploy" / "policies" / "tools.yaml").read_text())
    assert tools["clients"][AGENT]["tools"] == []
    clients = yaml.safe_load((copy / "deploy" / "policies" / "clients.yaml").read_text())["clients"]
    assert {"client_id": AGENT, "kind": "agent"}.items() <= next(
        c for c in clients if c["client_id"] == AGENT
    ).items()
    spec = load_topology(copy / "deploy" / "topology.yaml").by_name(AGENT)
    assert (spec.module, spec.depends_on) == ("fraud_agent", ["gateway", "registry"])
    again = accord("new", "agent", NAME, "--repo-root", str(copy), cwd=copy)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_the_new_agent_starts_registers_serves_its_skill_through_the_relay_and_is_removed(
    scaffolded: Scaffolded,
) -> None:
    card_url = scaffolded.runner.url(AGENT) + "/.well-known/agent-card.json"

    registered = scaffolded.cli(
        "agents", "register", card_url, "--owner", "fraud-team", "--policy", AGENT,
        "--purpose", "Summarizes fraud reports", "--model", "none", "--risk", "limited",
        "--admin-secret", ADMIN,
    )  # fmt: skip
    shown = scaffolded.cli("agents", "show", AGENT, "--json")
    result = asyncio.run(
        call_through_relay(scaffolded.runner, {"subject_id": "C-1", "text": "Card used twice. Odd."})
    )
    removed = scaffolded.cli("agents", "remove", AGENT, "--admin-secret", ADMIN)
    listed = scaffolded.cli("agents", "list", "--json")
    after = asyncio.run(refused_once_forgotten(scaffolded.runner, {"subject_id": "C-2", "text": "Again."}))

    assert registered.returncode == 0, registered.stderr
    view = json.loads(shown.stdout)
    assert (view["status"], view["skills"]) == ("active", [SKILL])
    assert (view["inventory"]["owner"], view["inventory"]["risk"]) == ("fraud-team", "limited")
    assert view["inventory"]["data_access"] == []  # its policy entry grants no tools yet
    assert result == {"subject_id": "C-1", "summary": "Card used twice", "word_count": 4, "confidence": 0.52}
    assert removed.returncode == 0, removed.stderr
    assert AGENT not in [agent["name"] for agent in json.loads(listed.stdout)]
    assert after == "not_found"


async def refused_once_forgotten(runner: MeshRunner, data: dict[str, Any]) -> dict[str, Any] | str:
    """The relay's answer once its view of the registry has expired: it caches each agent's registration
    for `ACCORD_GATEWAY_RELAY_REGISTRY_TTL_SECONDS` (2 s), so a removed agent stops being reachable
    within that long, not at the instant of removal."""
    deadline = time.monotonic() + RELAY_REGISTRY_TTL_S + 3
    while True:
        answer = await call_through_relay(runner, data)
        if answer == "not_found" or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.25)


async def call_through_relay(runner: MeshRunner, data: dict[str, Any]) -> dict[str, Any] | str:
    """As the orchestrator would: its client-credentials token, the relay's card, the agent as tenant."""
    gateway = runner.url("gateway")
    secrets = json.loads((runner.state_dir / "secrets.json").read_text())
    async with httpx.AsyncClient(timeout=30) as http:
        token = await http.post(
            gateway + "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "a2a:delegate", "resource": gateway},
            auth=("orchestrator", secrets["orchestrator-client"]),
        )
        token.raise_for_status()
        relay_card = (await http.get(gateway + "/a2a/relay/.well-known/agent-card.json")).json()
    card = card_from_dict(relay_card)
    for interface in card.supported_interfaces:
        interface.tenant = AGENT
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    refusals: list[str] = []

    async def keep_refusal(response: httpx.Response) -> None:
        # The a2a-sdk client reports an HTTP refusal by status only; the relay's body names the reason.
        if response.status_code >= 400:
            await response.aread()
            refusals.extend(re.findall(r'"reason":\s*"([a-z_]+)"', response.text))

    async with httpx.AsyncClient(
        timeout=30, headers=headers, event_hooks={"response": [keep_refusal]}
    ) as http:
        config = ClientConfig(
            streaming=False, httpx_client=http, supported_protocol_bindings=[TransportProtocol.JSONRPC]
        )
        client = ClientFactory(config).create(card)
        request = SendMessageRequest(message=skill_request(SKILL, data, str(uuid.uuid4())))
        try:
            events = [event async for event in client.send_message(request)]
        except A2AClientError:
            return refusals[0] if refusals else "refused without a reason"
        finally:
            await client.close()
    task: Task = events[-1].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    result = task_result(task)
    assert result is not None
    return result


@pytest.mark.parametrize("name", ["Fraud", "fraud_check", "fraud-agent", "-fraud", "x" * 41, "ledger"])
def test_a_bad_or_taken_name_is_refused_and_nothing_is_written(copy: Path, name: str) -> None:
    before = source_files(copy)
    with pytest.raises(ScaffoldError):
        plan_agent(copy, name, "")
    assert source_files(copy) == before


def source_files(root: Path) -> dict[Path, bytes]:
    """Every file of the copy but the running mesh's state (`.accord`: logs and stores keep changing)."""
    state = root / ".accord"
    return {
        path: path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.is_relative_to(state) and "__pycache__" not in path.parts
    }
