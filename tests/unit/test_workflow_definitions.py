"""Workflow files: validated against the workflow JSON Schema and the graph rules, every problem reported
with its file and line; `accord workflows list|check` shows the same verdict before a deploy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from accord.cli.main import app
from accord.topology import repo_root
from orchestrator.workflows import (
    WorkflowError,
    delegation_cycles,
    load_workflows,
    parse_workflow,
    schema_path,
)

SHIPPED = repo_root() / "deploy" / "workflows"

VALID = """\
name: demo
version: 1
description: two steps
input_schema: {type: object}
steps:
  - id: first
    skill: ticket-triage
    input: {ticket_id: $input.ticket_id}
  - id: second
    skill: billing-resolution
    input: {customer_id: $steps.first.customer_id}
synthesis: support-resolution
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(WorkflowError) as refused:
        parse_workflow(text, "demo.yaml", expected_name="demo")
    return refused.value.problems


def test_the_workflow_schema_is_a_valid_json_schema_and_every_shipped_workflow_passes_it() -> None:
    schema = json.loads(schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    workflows = load_workflows(SHIPPED)
    assert set(workflows) >= {"credit-risk", "support-triage", "compliance-memo", "joint-credit-risk"}


def test_each_orchestration_pattern_is_used_by_a_shipped_workflow() -> None:
    workflows = load_workflows(SHIPPED)
    assert "fan-out" in workflows["credit-risk"].patterns()
    assert "conflict-rules" in workflows["credit-risk"].patterns()
    assert "router" in workflows["support-triage"].patterns()
    assert "critic-loop" in workflows["compliance-memo"].patterns()
    joint = workflows["joint-credit-risk"]
    assert {step.skill for step in joint.steps} == {"credit-risk"}, "its steps are served by an orchestrator"


def test_a_valid_file_loads_with_dataflow_dependencies() -> None:
    spec = parse_workflow(VALID, "demo.yaml", expected_name="demo")
    assert [sorted(step.dependencies()) for step in spec.steps] == [[], ["first"]]


def test_an_unknown_field_is_reported_on_its_own_line() -> None:
    text = VALID.replace(
        "    skill: billing-resolution\n", "    skill: billing-resolution\n    agent: billing-agent\n"
    )
    assert problems_of(text) == [
        "demo.yaml:11: steps[1].agent: unknown field 'agent' (allowed: confidence_field, critic, "
        "description, id, input, min_confidence, on_low_confidence, retries, route, skill, timeout_s)"
    ]


def test_schema_violations_are_each_reported_with_their_line_in_file_order() -> None:
    text = VALID.replace("version: 1", "version: 0").replace("skill: ticket-triage", "skill: Ticket_Triage")
    text += "steps_extra: true\n"
    found = problems_of(text)
    assert [p.split(": ")[0] for p in found] == ["demo.yaml:2", "demo.yaml:7", "demo.yaml:13"]
    assert "0 is less than the minimum of 1" in found[0]
    assert "steps[0].skill" in found[1]


def test_broken_yaml_and_duplicate_keys_name_their_line() -> None:
    assert problems_of(VALID.replace("version: 1\n", "version: 1\nversion: 2\n")) == [
        "demo.yaml:3: duplicate key 'version'"
    ]
    [broken] = problems_of(VALID.replace("input_schema: {type: object}", "input_schema: {type: object"))
    assert broken.startswith("demo.yaml:5: not valid YAML")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("$steps.first.customer_id", "$steps.third.customer_id"),
            "demo.yaml:11: steps[1].input.customer_id: reads ['third'] before they are defined",
        ),
        (
            ("$input.ticket_id", "$draft.ticket_id"),
            "demo.yaml:8: steps[0].input.ticket_id: '$draft.ticket_id'",
        ),
        (
            ("$input.ticket_id", "$inputs.ticket_id"),
            "demo.yaml:8: steps[0].input.ticket_id: '$inputs.ticket_id'",
        ),
        (
            ("synthesis: support-resolution", "synthesis: magic"),
            "demo.yaml:12: synthesis: unknown synthesizer",
        ),
        (("name: demo", "name: other"), "demo.yaml:1: name: the file demo.yaml must declare workflow 'demo'"),
    ],
)
def test_graph_problems_are_reported_with_their_line(change: tuple[str, str], expected: str) -> None:
    [problem] = problems_of(VALID.replace(*change))
    assert problem.startswith(expected), problem


def test_route_confidence_and_critic_rules_are_checked() -> None:
    text = VALID.replace(
        "    input: {ticket_id: $input.ticket_id}\n",
        "    input: {ticket_id: $input.ticket_id}\n"
        "    on_low_confidence: critic\n"
        "    route: {field: category, branches: {billing: [second, nowhere], network: [first]}}\n",
    )
    found = problems_of(text)
    assert any("on_low_confidence needs min_confidence" in p for p in found)
    assert any("on_low_confidence: critic needs a critic block" in p for p in found)
    assert any("names unknown step 'nowhere'" in p for p in found)
    assert any("names step 'first', which is not after the router" in p for p in found)
    assert all(p.startswith("demo.yaml:9: ") or p.startswith("demo.yaml:10: ") for p in found), found


def test_a_workflow_that_delegates_to_itself_through_another_is_refused() -> None:
    base = VALID.replace("synthesis: support-resolution", "synthesis: joint-credit-risk")
    ping = parse_workflow(
        base.replace("name: demo", "name: ping").replace("ticket-triage", "pong"), "ping.yaml"
    )
    pong = parse_workflow(
        base.replace("name: demo", "name: pong").replace("ticket-triage", "ping"), "pong.yaml"
    )
    assert delegation_cycles({"ping": ping, "pong": pong}) == [
        "ping: delegates to itself through ping -> pong -> ping",
        "pong: delegates to itself through pong -> ping -> pong",
    ]


def test_cli_check_passes_the_shipped_workflows() -> None:
    result = CliRunner().invoke(app, ["workflows", "check"])
    assert result.exit_code == 0, result.output
    assert "support-triage: valid" in result.output


def test_cli_check_lists_every_problem_with_its_line_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "demo.yaml"
    bad.write_text(VALID.replace("$steps.first.customer_id", "$steps.later.customer_id"))
    result = CliRunner().invoke(app, ["workflows", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:11: steps[1].input.customer_id: reads ['later']" in result.output
    assert "1 problem(s) in 1 file(s)" in result.output


def test_cli_list_shows_each_steps_skill_and_what_it_waits_for() -> None:
    result = CliRunner().invoke(app, ["workflows", "list"])
    assert result.exit_code == 0, result.output
    assert "support-triage v1  [router, confidence-gate]" in result.output
    assert "billing: billing-resolution  (after triage; branch of triage)" in result.output
    assert "joint-credit-risk v1  [fan-out, hierarchical]" in result.output
    assert "memo: memo-draft  (starts at once; critic memo-review (max 4))" in result.output
