"""The relay's decisions that need no network: the delegation policy (as data, checked with its lines),
what a call asks for as the guard reads it from the raw request, and the bindings a step's grant carries."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli.main import app
from accord.topology import repo_root
from accord.trace_context import valid_traceparent
from gateway.policy import PolicyError
from gateway.relay import load_delegation, parse_delegation
from gateway.relay.delegation import DelegationVerdict
from gateway.relay.gate import CallTarget, Refused, target_from_metadata
from gateway.relay.guard import jsonrpc_target, rest_target
from gateway.relay.handler import step_bindings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
POLICY = """version: 1
callers:
  orchestrator:
    agents:
      ledger-agent: [transaction-profile]
      bureau-agent: ["*"]
"""


def test_the_deployed_delegation_policy_is_valid_and_lets_the_orchestrator_run_credit_risk() -> None:
    policy = load_delegation(repo_root() / "deploy" / "policies" / "delegation.yaml")
    for agent, skill in (
        ("sanctions-agent", "sanctions-screening"),
        ("bureau-agent", "credit-file"),
        ("ledger-agent", "transaction-profile"),
    ):
        assert policy.decide("orchestrator", agent, skill).allowed, (agent, skill)


def test_deny_by_default_unknown_callers_agents_and_skills() -> None:
    policy = parse_delegation(POLICY, "delegation.yaml")
    assert policy.decide("orchestrator", "ledger-agent", "transaction-profile") == DelegationVerdict(
        True, "orchestrator:ledger-agent"
    )
    assert not policy.decide("orchestrator", "ledger-agent", "credit-file").allowed
    assert not policy.decide("orchestrator", "sanctions-agent", "sanctions-screening").allowed
    assert not policy.decide("outsider", "ledger-agent", "transaction-profile").allowed
    assert policy.decide("orchestrator", "bureau-agent", "anything").allowed


def test_reading_an_agents_tasks_needs_the_caller_to_be_allowed_some_skill_of_it() -> None:
    policy = parse_delegation(POLICY, "delegation.yaml")
    assert policy.decide("orchestrator", "ledger-agent", None).allowed
    assert not policy.decide("orchestrator", "sanctions-agent", None).allowed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 1\ncallers:\n  o:\n    agents:\n      a-agent: []\n", "list at least one skill"),
        ("version: 1\ncallers:\n  o:\n    agents:\n      a-agent: [x, x]\n", "more than once"),
        ("version: 1\ncallers:\n  o:\n    agents:\n      a-agent: ['*', x]\n", "list nothing beside it"),
        ("version: 1\ncallers:\n  o:\n    agentz: {}\n", "Extra inputs are not permitted"),
        ("version: 1\ncallers:\n  o:\n    agents:\n      Bad_Name: [x]\n", "String should match pattern"),
        ("version: 2\ncallers: {}\n", "Input should be 1"),
        ("version: 1\ncallers:\n  o: {}\n  o: {}\n", "duplicate key"),
    ],
)
def test_an_invalid_delegation_policy_is_refused_with_the_line_of_each_problem(
    text: str, problem: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_delegation(text, "delegation.yaml")
    assert any(problem in line and line.startswith("delegation.yaml:") for line in caught.value.problems), (
        caught.value.problems
    )
    assert "invalid delegation policy" in str(caught.value)


def test_accord_policy_check_validates_both_deployed_policies() -> None:
    result = CliRunner().invoke(app, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert "deploy/policies/tools.yaml: valid" in result.output
    assert "deploy/policies/delegation.yaml: valid" in result.output
    assert "orchestrator -> ledger-agent: transaction-profile" in result.output


def test_accord_policy_check_reads_a_file_naming_callers_as_a_delegation_policy(tmp_path: Path) -> None:
    path = tmp_path / "delegation.yaml"
    path.write_text("version: 1\ncallers:\n  o:\n    agents:\n      a-agent: []\n")
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:5: callers.o.agents" in result.output
    assert "invalid (1 problem(s))" in result.output


# --- what a call asks for, read from the raw request -----------------------------------------------------


def _message(metadata: dict[str, object]) -> dict[str, object]:
    return {"messageId": "m1", "role": "ROLE_USER", "parts": [], "metadata": metadata}


SEND_METADATA = {
    "accord.skill": "credit-file",
    "accord.wf": "run-1",
    "accord.task": "bureau",
    "accord.deadline": 17e8,
}


def test_a_jsonrpc_send_names_its_agent_skill_run_step_and_deadline() -> None:
    document = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"tenant": "bureau-agent", "message": _message(SEND_METADATA)},
    }
    assert jsonrpc_target(document, TRACEPARENT) == CallTarget(
        "SendMessage", "bureau-agent", "credit-file", "run-1", "bureau", 17e8, TRACEPARENT
    )


def test_a_rest_call_names_its_agent_in_the_path() -> None:
    target = rest_target("POST", "/bureau-agent/message:stream", {"message": _message(SEND_METADATA)}, None)
    assert (target.method, target.agent, target.skill) == (
        "SendStreamingMessage",
        "bureau-agent",
        "credit-file",
    )
    assert rest_target("GET", "/bureau-agent/tasks/t-1", None, None).method == "GetTask"
    assert rest_target("POST", "/bureau-agent/tasks/t-1:cancel", None, None).method == "CancelTask"
    assert rest_target("GET", "/bureau-agent/tasks", None, None).method == "ListTasks"
    # Without a tenant the agent is not named, and the gate refuses the call.
    assert rest_target("POST", "/message:send", {"message": _message(SEND_METADATA)}, None).agent == ""


@pytest.mark.parametrize(
    "document",
    [
        [{"jsonrpc": "2.0", "method": "SendMessage"}],
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": []},
        {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"tenant": 7}},
    ],
)
def test_a_jsonrpc_body_that_is_not_one_request_is_refused_as_invalid_input(document: object) -> None:
    with pytest.raises(Refused) as caught:
        jsonrpc_target(document, None)
    assert caught.value.reason == "invalid_input"


def test_metadata_of_the_wrong_type_is_a_problem_the_gate_refuses() -> None:
    assert target_from_metadata("SendMessage", "a", {"accord.skill": 3}, None).metadata_problem
    assert target_from_metadata(
        "SendMessage", "a", {"accord.skill": "s", "accord.deadline": True}, None
    ).metadata_problem


def test_only_a_valid_traceparent_is_propagated() -> None:
    assert valid_traceparent(TRACEPARENT.upper()) == TRACEPARENT
    assert valid_traceparent("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None
    assert valid_traceparent("garbage") is None
    assert (
        CallTarget("SendMessage", "a", traceparent=TRACEPARENT).trace_id == "0af7651916cd43dd8448eb211c80319c"
    )


def test_a_steps_grant_is_bound_to_its_scalar_inputs_only() -> None:
    data = {
        "account_id": "ACC-1",
        "months": 12,
        "ratio": 0.5,
        "strict": True,
        "tags": ["a"],
        "nested": {"x": 1},
        "essay": "x" * 1000,
        "not-an-identifier": "v",
    }
    assert step_bindings(data) == {"account_id": "ACC-1", "months": 12, "ratio": 0.5, "strict": True}
    assert step_bindings(None) == {}
