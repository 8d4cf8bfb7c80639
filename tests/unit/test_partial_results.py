"""k of n: a workflow that accepts a partial result still synthesizes with one specialist missing, its
result marked degraded with what is missing; with fewer steps completed than it needs, the run fails
`insufficient_results` instead of guessing. Real SQLite; the engine tests' stand-in agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accord.errors import AccordError
from orchestrator.workflows import WorkflowSpec
from tests.stand_in_dispatcher import StandInDispatcher, answer
from tests.unit.test_run_budgets import service


async def down(_data: dict[str, Any]) -> dict[str, Any]:
    raise AccordError("agent_unavailable", "down")


def three_of(at_least: int) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "wide",
            "version": 1,
            "description": "three specialists",
            "input_schema": {"type": "object"},
            "steps": [{"id": name, "skill": name} for name in ("a", "b", "c")],
            "partial": {"steps": ["a", "b", "c"], "at_least": at_least},
            "synthesis": "collect",
        }
    )


async def test_one_missing_of_three_still_decides_and_says_what_is_missing(tmp_path: Path) -> None:
    dispatcher = StandInDispatcher({"a": answer({"v": 1}), "b": answer({"v": 2}), "c": down})
    spec = three_of(2)
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert run["status"] == "completed"
    assert run["result"]["degraded"]["missing"] == ["c"]
    assert any(note["kind"] == "partial" for note in run["rationale"])


async def test_fewer_than_the_workflow_needs_fail_the_run(tmp_path: Path) -> None:
    dispatcher = StandInDispatcher({"a": answer({"v": 1}), "b": down, "c": down})
    spec = three_of(2)
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert (run["status"], run["error"]["reason"]) == ("failed", "insufficient_results")


async def test_a_complete_run_is_not_marked_degraded(tmp_path: Path) -> None:
    dispatcher = StandInDispatcher({name: answer({"v": 1}) for name in ("a", "b", "c")})
    spec = three_of(3)
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert run["status"] == "completed"
    assert "degraded" not in run["result"]


def test_a_partial_rule_must_name_real_steps_and_a_reachable_count() -> None:
    body = three_of(2).model_dump(mode="json", by_alias=True)
    body["partial"] = {"steps": ["a", "nope"], "at_least": 3}
    with pytest.raises(ValueError, match="nope") as refused:
        WorkflowSpec.model_validate(body)
    assert "at_least 3" in str(refused.value)
