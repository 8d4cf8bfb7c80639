"""What `accord demo` prints for a run: decisions, reasons, agents' latencies, and the command that decides a
gate the run waits on (a waiting run has not finished: its wall time is up to its last step)."""

from __future__ import annotations

from typing import Any

from accord.cli.demo import render_run

APPLICANT = {"name": "Lily Edwards", "scenario": "thin_file", "requested_amount": 3800}


def step(agent: str, finished_at: float) -> dict[str, Any]:
    return {
        "agent": agent,
        "skill": "s",
        "status": "completed",
        "latency_ms": 100.0,
        "finished_at": finished_at,
    }


def test_a_run_waiting_for_approval_renders_with_the_command_that_decides_it() -> None:
    run = {
        "id": "d027389d-5ad8-40a5-8a67-ba1aad716283",
        "status": "waiting_approval",
        "created_at": 100.0,
        "finished_at": None,
        "result": {
            "decision": "refer",
            "reasons": [{"effect": "refer", "rule": "thin_credit_file", "detail": "thin"}],
        },
        "steps": [step("sanctions-agent", 100.2), step("bureau-agent", 100.265)],
        "approvals": {"refer": {"status": "pending"}},
    }
    text = render_run(APPLICANT, run)
    assert "decision: REFER   run d027389d  wall 265 ms" in text
    assert "[refer] thin_credit_file: thin" in text
    assert "agents: sanctions-agent 100 ms, bureau-agent 100 ms" in text
    assert f"waits for approval: accord approve {run['id']} refer [--reject] --reason ..." in text


def test_a_finished_run_renders_its_own_wall_time_and_no_gate() -> None:
    run = {
        "id": "0be551d4-0000-0000-0000-000000000000",
        "status": "completed",
        "created_at": 100.0,
        "finished_at": 100.678,
        "result": {"decision": "decline", "reasons": []},
        "steps": [step("sanctions-agent", 100.5)],
        "approvals": {},
    }
    text = render_run(APPLICANT, run)
    assert "decision: DECLINE   run 0be551d4  wall 678 ms" in text
    assert "waits for approval" not in text
