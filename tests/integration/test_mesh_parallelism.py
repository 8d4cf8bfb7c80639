"""The fan-out is parallel: with known agent delays, wall time tracks the slowest agent, not the sum."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from accord.mesh import MeshRunner

DELAYS_MS = {"sanctions-agent": 300, "bureau-agent": 600, "ledger-agent": 900}
INPUT = {"applicant_id": "A-1", "account_id": "ACC-1", "name": "Jane Roe", "requested_amount": 1000}


@pytest.fixture(scope="module")
def slow_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshRunner]:
    runner = MeshRunner(
        Path(tmp_path_factory.mktemp("slow-mesh")),
        port_offset=22000,
        extra_env={name: {"ACCORD_FAULT_DELAY_MS": str(ms)} for name, ms in DELAYS_MS.items()},
    )
    runner.start(timeout_s=240)
    try:
        yield runner
    finally:
        runner.stop()


async def test_fan_out_wall_time_is_close_to_the_slowest_agent(slow_mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(
        base_url=slow_mesh.url("orchestrator"), auth=slow_mesh.operator_auth(), timeout=30
    ) as http:
        await http.post("/v1/workflows/credit-risk/runs", params={"wait": 20}, json=INPUT)  # warm connections
        response = await http.post("/v1/workflows/credit-risk/runs", params={"wait": 20}, json=INPUT)
    run = response.json()
    assert run["status"] in ("completed", "waiting_approval")  # a refer waits for approval
    steps = run["steps"]
    slowest, total = max(DELAYS_MS.values()) / 1000, sum(DELAYS_MS.values()) / 1000
    wall = max(s["finished_at"] for s in steps) - min(s["started_at"] for s in steps)
    assert slowest <= wall < slowest + 0.6, f"wall {wall:.3f}s vs slowest {slowest}s, sum {total}s"
    starts = [s["started_at"] for s in steps]
    assert max(starts) - min(starts) < 0.1, "all three steps are dispatched together"
