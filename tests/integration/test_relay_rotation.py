"""Key rotation under load: workflow runs keep succeeding, with no failure at all, while `accord keys rotate`
replaces the gateway's key (which signs tokens, grants, relayed messages and replies) and the agents'
publisher key (which signs their cards); a retired gateway key verifies during its overlap window only.

Real processes on loopback: tool servers, gateway, registry, the three specialists and the orchestrator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from typer.testing import CliRunner

from accord.card_signing import publisher_key_file
from accord.cli.main import app as accord_cli
from accord.keys import KeyRing
from accord.topology import repo_root
from tests.relay_mesh import (
    AGENTS,
    ONLY,
    RelayMesh,
    eventually,
    refused_direct,
    relay_mesh,
    send_direct,
    signed,
)

# Starting a dozen processes on a busy machine can take minutes; the module's first test pays for it.
pytestmark = pytest.mark.timeout(600)
OFFSET = 18000
RUNS = 24
CONCURRENCY = 4
LOOP_BUDGET_S = 150.0
INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")
# Applicants whose runs end in a decision without a human review.
SCENARIOS = ("strong_clean", "baseline_prime")
# A credit-risk run that finished: a refer decision waits for a person's approval.
FINISHED = ("completed", "waiting_approval")


def applicants() -> list[dict[str, Any]]:
    data = json.loads((repo_root() / "data" / "applicants.json").read_text())
    chosen = [a for a in data if a["scenario"] in SCENARIOS]
    return [{k: a[k] for k in INPUT_FIELDS if k in a} for a in chosen]


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RelayMesh]:
    async with relay_mesh(
        tmp_path_factory.mktemp("relay-rotation"), OFFSET, {*ONLY, "orchestrator"}
    ) as running:
        yield running


async def rotate(mesh: RelayMesh, ring: str, overlap_s: float = 300) -> None:
    """`accord keys rotate --<ring>` on the mesh's state dir, as an operator would run it."""
    args = ["keys", "rotate", f"--{ring}", "--overlap", str(overlap_s), "--state-dir", str(mesh.state_dir)]
    result = await asyncio.to_thread(CliRunner().invoke, accord_cli, args)
    assert result.exit_code == 0, result.output


async def run_credit_risk(mesh: RelayMesh, data: dict[str, Any]) -> dict[str, Any]:
    response = await mesh.http.post(
        mesh.url("orchestrator") + "/v1/workflows/credit-risk/runs",
        params={"wait": 60},
        json=data,
        auth=mesh.operator_auth,
    )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def gateway_kids(mesh: RelayMesh) -> set[str]:
    document = (await mesh.http.get(mesh.gateway_url + "/.well-known/jwks.json")).json()
    return {key["kid"] for key in document["keys"]}


async def test_workflow_runs_continue_without_a_single_failure_while_gateway_and_publisher_keys_rotate(
    mesh: RelayMesh,
) -> None:
    first_gateway_kid = mesh.gateway_ring().active.kid
    first_publisher_kid = KeyRing.load_or_create(publisher_key_file(mesh.state_dir)).active.kid
    inputs = applicants()
    runs: list[dict[str, Any]] = []
    started = asyncio.Semaphore(CONCURRENCY)
    rotations = {6: "gateway", 12: "publisher", 18: "gateway"}

    async def one(index: int) -> None:
        async with started:
            runs.append(await run_credit_risk(mesh, inputs[index % len(inputs)]))
        ring = rotations.get(index)
        if ring is not None:
            await rotate(mesh, ring)

    loop_started = time.monotonic()
    async with asyncio.timeout(LOOP_BUDGET_S), asyncio.TaskGroup() as group:
        for index in range(1, RUNS + 1):
            group.create_task(one(index))
    elapsed = time.monotonic() - loop_started

    failed = [
        (run["id"], run["status"], run.get("error"), run["steps"])
        for run in runs
        if run["status"] not in FINISHED
    ]
    assert failed == [], failed
    assert len(runs) == RUNS
    # Not even a retried step: every step was answered by the first agent asked, on the first try.
    for run in runs:
        for step in run["steps"]:
            assert step["status"] == "completed", (step["error"], step["attempts"])
            assert [a.get("outcome") for a in step["attempts"]] == ["answered"], step["attempts"]
    # Both rings really rotated (the gateway's twice), and the old gateway keys still verify: overlap.
    assert mesh.gateway_ring().active.kid != first_gateway_kid
    assert KeyRing.load_or_create(publisher_key_file(mesh.state_dir)).active.kid != first_publisher_kid
    assert len(await gateway_kids(mesh)) == 3
    assert elapsed < LOOP_BUDGET_S


async def test_a_retired_gateway_key_verifies_during_its_overlap_window_and_never_after(
    mesh: RelayMesh,
) -> None:
    retiring = KeyRing(mesh.gateway_ring().active)  # the current key, kept in memory only
    overlap_s = 3.0
    await rotate(mesh, "gateway", overlap_s)
    window_ends = time.time() + overlap_s
    assert retiring.active.kid in await gateway_kids(mesh)

    # Inside the window, a message signed with the retiring key is still the relay's, as is one signed with
    # the new key (which, as the first of its kind, makes the agent fetch the gateway's keys again).
    for ring in (retiring, mesh.gateway_ring()):
        [event] = await send_direct(mesh, signed(mesh, ring=ring), "JSONRPC")
        assert event.WhichOneof("payload") == "task"

    async def past_the_window() -> bool:
        return time.time() > window_ends + 0.5

    await eventually(past_the_window)
    assert retiring.active.kid not in await gateway_kids(mesh)
    for transport in ("JSONRPC", "HTTP+JSON", "GRPC"):
        assert await refused_direct(mesh, signed(mesh, ring=retiring), transport) == (
            "signature_invalid",
            "unknown_key",
        )
    # The orchestrator's token was signed with the retired key: the relay refuses it, the orchestrator
    # fetches another and the run still succeeds.
    run = await run_credit_risk(mesh, applicants()[0])
    assert run["status"] in FINISHED, run
    assert {step["agent"] for step in run["steps"]} == set(AGENTS)
