"""Bad input to the orchestrator gets a reason-coded error and starts nothing."""

from __future__ import annotations

import re

import httpx
import pytest

from accord.mesh import MeshRunner

GOOD = {"applicant_id": "A-1", "account_id": "ACC-1", "name": "Jane Roe", "requested_amount": 1000}


async def agent_requests(http: httpx.AsyncClient, mesh: MeshRunner) -> int:
    """A2A requests the agents have served, read from their own Prometheus counters."""
    total = 0
    for name in ("sanctions-agent", "bureau-agent", "ledger-agent"):
        text = (await http.get(mesh.url(name) + "/metrics")).text
        for line in text.splitlines():
            if line.startswith("accord_http_requests_total") and "/a2a/" in line:
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def run_ids(http: httpx.AsyncClient, mesh: MeshRunner) -> set[str]:
    response = await http.get(mesh.url("orchestrator") + "/v1/runs", params={"limit": 500})
    return {run["id"] for run in response.json()["runs"]}


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "reason"),
    [
        ("credit-risk", b'{"applicant_id": "A-1", ', "application/json", 400, "malformed_json"),
        ("credit-risk", b"[1, 2]", "application/json", 422, "invalid_input"),
        (
            "credit-risk",
            b'{"applicant_id": 7, "account_id": "x", "name": "n", "requested_amount": "lots"}',
            "application/json",
            422,
            "invalid_input",
        ),
        ("credit-risk", b'{"applicant_id": "A-1"}', "application/json", 422, "invalid_input"),
        (
            "credit-risk",
            b'{"applicant_id": "A-1", "account_id": "a", "name": "n", "requested_amount": 5, "x": 1}',
            "application/json",
            422,
            "invalid_input",
        ),
        (
            "credit-risk",
            b"applicant_id=A-1",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        ("no-such-workflow", b'{"applicant_id": "A-1"}', "application/json", 404, "unknown_workflow"),
    ],
)
async def test_bad_run_request_is_refused_with_reason_and_starts_nothing(
    mesh: MeshRunner, path: str, body: bytes, content_type: str, status: int, reason: str
) -> None:
    async with httpx.AsyncClient(timeout=10, auth=mesh.operator_auth()) as http:
        runs_before, calls_before = await run_ids(http, mesh), await agent_requests(http, mesh)
        response = await http.post(
            f"{mesh.url('orchestrator')}/v1/workflows/{path}/runs",
            content=body,
            headers={"content-type": content_type},
        )
        assert response.status_code == status
        error = response.json()["error"]
        assert error["reason"] == reason
        assert not re.search(r"Traceback|File \"", response.text)
        assert await run_ids(http, mesh) == runs_before
        assert await agent_requests(http, mesh) == calls_before


async def test_missing_fields_are_named_in_the_error(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10, auth=mesh.operator_auth()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/v1/workflows/credit-risk/runs", json={"applicant_id": "A-1"}
        )
    messages = " ".join(p["message"] for p in response.json()["error"]["context"]["problems"])
    for field in ("account_id", "name", "requested_amount"):
        assert field in messages


async def test_unknown_run_id_is_not_found(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10, auth=mesh.operator_auth()) as http:
        response = await http.get(f"{mesh.url('orchestrator')}/v1/runs/does-not-exist")
    assert response.status_code == 404
    assert response.json()["error"]["reason"] == "not_found"


async def test_good_request_is_accepted_for_contrast(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=30, auth=mesh.operator_auth()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/v1/workflows/credit-risk/runs", params={"wait": 20}, json=GOOD
        )
    assert response.status_code == 201
