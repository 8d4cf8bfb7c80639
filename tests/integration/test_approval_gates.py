"""Credit-risk's approval gate through real processes (the session mesh): a refer decision waits for a
person, who approves or rejects it with `accord approve` (as the operator, over the orchestrator's API);
the decision is recorded with who made it and why, and audited."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from accord.audit import AuditLog
from accord.cli.main import app as cli
from accord.mesh import MeshRunner
from accord.storage import create_engine
from accord.topology import repo_root

INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")


def thin_file_applicant() -> dict[str, Any]:
    applicants = json.loads((repo_root() / "data" / "applicants.json").read_text())
    chosen = next(a for a in applicants if a["scenario"] == "thin_file")
    return {key: chosen[key] for key in INPUT_FIELDS if key in chosen}


async def refer_run(mesh: MeshRunner) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60, auth=mesh.operator_auth()) as http:
        response = await http.post(
            mesh.url("orchestrator") + "/v1/workflows/credit-risk/runs",
            params={"wait": 45},
            json=thin_file_applicant(),
        )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def approve(mesh: MeshRunner, run_id: str, *extra: str) -> Any:
    args = ["approve", run_id, "refer", "--state-dir", str(mesh.state_dir), *extra]
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


async def approvals_audited(mesh: MeshRunner, run_id: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{mesh.state_dir / 'orchestrator.db'}")
    try:
        records = await AuditLog(engine, "orchestrator").records(run_id)
    finally:
        await engine.dispose()
    return [r for r in records if r["action"] in ("run.approval_requested", "run.approval")]


@pytest.mark.parametrize(("flag", "status"), [((), "completed"), (("--reject",), "failed")])
async def test_a_refer_decision_waits_for_a_person_who_decides_with_accord_approve(
    mesh: MeshRunner, flag: tuple[str, ...], status: str
) -> None:
    run = await refer_run(mesh)
    assert (run["status"], run["result"]["decision"]) == ("waiting_approval", "refer")
    assert run["approvals"]["refer"]["status"] == "pending"

    decided = await approve(mesh, run["id"], *flag, "--reason", "income verified by phone")
    assert decided.exit_code == 0, decided.output

    async with httpx.AsyncClient(timeout=30, auth=mesh.operator_auth()) as http:
        final = (await http.get(f"{mesh.url('orchestrator')}/v1/runs/{run['id']}")).json()
    gate = final["approvals"]["refer"]
    assert final["status"] == status
    assert (gate["decided_by"], gate["reason"]) == ("rest:operator", "income verified by phone")
    audited = [(r["action"], r["actor"], r["outcome"]) for r in await approvals_audited(mesh, run["id"])]
    verdict = "rejected" if flag else "approved"
    assert audited == [
        ("run.approval_requested", "orchestrator", "waiting_approval"),
        ("run.approval", "rest:operator", verdict),
    ]

    again = await approve(mesh, run["id"], "--reason", "twice")
    assert again.exit_code == 1
    assert "approval_not_pending" in again.output
