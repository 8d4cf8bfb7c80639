"""Workflow definitions: validated as data, with dataflow dependencies derived from input mappings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from accord.topology import repo_root
from orchestrator.workflows import WorkflowSpec, load_workflows, resolve_input


def spec(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "w",
        "version": 1,
        "description": "d",
        "input_schema": {"type": "object"},
        "steps": steps,
        "synthesis": "credit-risk",
    }


def test_shipped_workflows_load_and_name_skills_not_agents() -> None:
    workflows = load_workflows(repo_root() / "deploy" / "workflows")
    credit = workflows["credit-risk"]
    assert [s.skill for s in credit.steps] == ["sanctions-screening", "credit-file", "transaction-profile"]
    assert all(not s.dependencies() for s in credit.steps), "credit-risk fans out in parallel"


def test_a_step_depends_on_the_steps_its_input_reads() -> None:
    workflow = WorkflowSpec.model_validate(
        spec([{"id": "a", "skill": "x"}, {"id": "b", "skill": "y", "input": {"v": "$steps.a.value"}}])
    )
    assert workflow.steps[1].dependencies() == {"a"}


def test_reading_a_later_or_unknown_step_is_rejected() -> None:
    with pytest.raises(ValidationError, match="before they are defined"):
        WorkflowSpec.model_validate(spec([{"id": "a", "skill": "x", "input": {"v": "$steps.b.value"}}]))


def test_duplicate_step_ids_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unique"):
        WorkflowSpec.model_validate(spec([{"id": "a", "skill": "x"}, {"id": "a", "skill": "y"}]))


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        WorkflowSpec.model_validate(spec([{"id": "a", "skill": "x", "agent": "pinned-agent"}]))


def test_inputs_resolve_from_workflow_input_and_earlier_outputs_and_skip_absent_values() -> None:
    mapping = {"name": "$input.name", "dob": "$input.birth_date", "score": "$steps.bureau.score", "k": 3}
    resolved = resolve_input(mapping, {"name": "Ann"}, {"bureau": {"score": 700}})
    assert resolved == {"name": "Ann", "score": 700, "k": 3}
