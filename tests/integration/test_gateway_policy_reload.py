"""The tool policy is data: the running gateway picks up a changed file without a restart, refuses an
invalid one (keeping the policy in force, and saying so in the audit trail), and `accord policy check`
gives the same verdict beforehand.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from accord.topology import repo_root
from tests.gateway_mesh import (
    APPLICANT,
    CREDIT_FILE,
    SEARCH,
    GatewayMesh,
    assert_rejected,
    deploy_policy,
    eventually,
    gateway_mesh,
)

INVALID = """version: 1
clients:
  sanctions-agent:
    tools:
      - tool: sanctions.search
        arguments:
          name: {max_length: -1}
      - tool: everything
"""


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayMesh]:
    async with gateway_mesh(tmp_path_factory.mktemp("gw-policy-reload"), port_offset=22500) as running:
        yield running


def write_policy(path: Path, document: dict[str, Any] | str) -> None:
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)  # atomic, as a deployment tool would do it


async def reloads(mesh: GatewayMesh, outcome: str) -> list[dict[str, Any]]:
    return [
        r for r in await mesh.audit.records() if r["action"] == "policy.reload" and r["outcome"] == outcome
    ]


async def check_cli(path: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "accord.cli.main",
        "policy",
        "check",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_a_changed_policy_applies_without_restart_and_an_invalid_one_is_refused(
    mesh: GatewayMesh, tmp_path: Path
) -> None:
    sanctions, _ = await mesh.agent_token("sanctions-agent", [SEARCH])
    bureau, _ = await mesh.agent_token("bureau-agent", [CREDIT_FILE], {"applicant_id": APPLICANT})
    assert (await mesh.call(sanctions, "sanctions.search", {"name": "Ana"})).status_code == 200

    narrowed = deploy_policy()
    del narrowed["clients"]["sanctions-agent"]
    write_policy(mesh.policy_file, narrowed)

    async def sanctions_denied() -> bool:
        return (await mesh.call(sanctions, "sanctions.search", {"name": "Ana"})).status_code == 403

    await eventually(sanctions_denied)
    assert_rejected(await mesh.call(sanctions, "sanctions.search", {"name": "Ana"}), 403, "policy_denied")
    assert (await mesh.call(bureau, "bureau.get_credit_file", {"applicant_id": APPLICANT})).status_code == 200
    assert await mesh.list_tools(sanctions) == []
    [applied] = await reloads(mesh, "allowed")
    assert len(applied["details"]["sha256"]) == 64

    # A broken edit: the CLI says what is wrong, and the gateway refuses it and keeps the narrowed policy.
    invalid_copy = tmp_path / "tools.yaml"
    invalid_copy.write_text(INVALID)
    status, output = await check_cli(invalid_copy)
    assert status == 1
    assert f"{invalid_copy}:7: clients.sanctions-agent.tools[0].arguments.name.max_length" in output
    assert f"{invalid_copy}:8: clients.sanctions-agent.tools[1].tool" in output
    write_policy(mesh.policy_file, INVALID)

    async def refusal_audited() -> bool:
        return bool(await reloads(mesh, "denied"))

    await eventually(refusal_audited)
    [refused] = await reloads(mesh, "denied")
    assert refused["reason"] == "invalid_input"
    assert any(":7: " in problem for problem in refused["details"]["problems"])
    assert_rejected(await mesh.call(sanctions, "sanctions.search", {"name": "Ana"}), 403, "policy_denied")
    assert (await mesh.call(bureau, "bureau.get_credit_file", {"applicant_id": APPLICANT})).status_code == 200

    # Fixed: the valid file applies again.
    write_policy(mesh.policy_file, deploy_policy())

    async def sanctions_allowed() -> bool:
        return (await mesh.call(sanctions, "sanctions.search", {"name": "Ana"})).status_code == 200

    await eventually(sanctions_allowed)
    assert len(await reloads(mesh, "allowed")) == 2


async def test_accord_policy_check_accepts_the_deployed_policy() -> None:
    status, output = await check_cli(repo_root() / "deploy" / "policies" / "tools.yaml")
    assert status == 0, output
    assert "valid" in output
    assert "ledger-agent: ledger.*" in output
