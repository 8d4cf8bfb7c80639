"""The tool policy language: validation with line-numbered errors, and decisions (deny by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accord.topology import load_topology
from gateway.policy import PolicyError, Subject, ToolPolicy, load_policy, parse_policy

LEDGER = Subject("ledger-agent")


def policy_of(text: str) -> ToolPolicy:
    document, digest = parse_policy(text, "test.yaml")
    return ToolPolicy(document, digest, "test.yaml")


def problems_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "test.yaml")
    return raised.value.problems


LEDGER_POLICY = policy_of(
    """
version: 1
defaults:
  rate_limit: {per_second: 5, burst: 10}
clients:
  ledger-agent:
    tools:
      - tool: ledger.*
        id: ledger-own-account
        arguments:
          account_id: {equals_binding: account_id}
          months: {minimum: 1, maximum: 24}
      - tool: ledger.get_account
        id: ledger-exact
        arguments:
          account_id: {pattern: 'ACC-[0-9]{6}'}
  sanctions-agent:
    rate_limit: {per_second: 1.5, burst: 2}
    tools:
      - tool: sanctions.search
        arguments:
          name: {required: true, max_length: 5}
          country: {enum: [GB, IE]}
          exact: {equals: true}
"""
)


def test_the_deployed_policy_is_valid_and_names_every_agent_of_the_topology() -> None:
    policy = load_policy(Path(__file__).resolve().parents[2] / "deploy/policies/tools.yaml")
    agents = {spec.name for spec in load_topology().services if spec.kind == "agent"}
    assert {subject.client_id for subject in policy.clients()} == agents
    assert policy.allows_tool(Subject("ledger-agent"), "ledger.aggregate_by_counterparty")
    assert not policy.allows_tool(Subject("ledger-agent"), "bureau.get_credit_file")
    assert not policy.allows_tool(Subject("orchestrator"), "sanctions.search")


def test_an_unknown_client_or_unlisted_tool_is_denied() -> None:
    for subject, tool in [(Subject("stranger"), "ledger.get_account"), (LEDGER, "bureau.get_credit_file")]:
        verdict = LEDGER_POLICY.decide(subject, tool, {}, {})
        assert (verdict.allowed, verdict.rule) == (False, None)


def test_an_exact_rule_wins_over_the_upstream_wildcard() -> None:
    exact = LEDGER_POLICY.decide(LEDGER, "ledger.get_account", {"account_id": "ACC-000001"}, {})
    assert (exact.allowed, exact.rule) == (True, "ledger-exact")
    wildcard = LEDGER_POLICY.decide(
        LEDGER, "ledger.aggregate_by_period", {"account_id": "A"}, {"account_id": "A"}
    )
    assert (wildcard.allowed, wildcard.rule) == (True, "ledger-own-account")


@pytest.mark.parametrize(
    ("arguments", "bindings", "problem"),
    [
        ({"account_id": "B"}, {"account_id": "A"}, "must equal the task's account_id"),
        ({"account_id": "A"}, {}, "needs the task binding account_id"),
        ({}, {"account_id": "A"}, "account_id is required"),
        ({"account_id": "A", "months": 25}, {"account_id": "A"}, "months is outside its allowed range"),
        ({"account_id": "A", "months": True}, {"account_id": "A"}, "months is outside its allowed range"),
        ({"account_id": 1}, {"account_id": True}, "must equal"),
    ],
)
def test_argument_constraints_deny_with_the_argument_named_but_never_its_value(
    arguments: dict[str, Any], bindings: dict[str, Any], problem: str
) -> None:
    verdict = LEDGER_POLICY.decide(LEDGER, "ledger.aggregate_by_period", arguments, bindings)
    assert not verdict.allowed
    assert verdict.rule == "ledger-own-account"
    assert problem in (verdict.detail or "")
    for value in arguments.values():
        if isinstance(value, str):
            assert value not in (verdict.detail or "").replace("account_id", "")


@pytest.mark.parametrize(
    ("arguments", "allowed"),
    [
        ({"name": "Ana"}, True),
        ({"name": "Ana", "country": "GB", "exact": True}, True),
        ({"name": "Anastasia"}, False),
        ({"name": 5}, False),
        ({}, False),
        ({"name": "Ana", "country": "FR"}, False),
        ({"name": "Ana", "exact": 1}, False),
    ],
)
def test_required_max_length_enum_and_equals(arguments: dict[str, Any], allowed: bool) -> None:
    assert (
        LEDGER_POLICY.decide(Subject("sanctions-agent"), "sanctions.search", arguments, {}).allowed is allowed
    )


def test_rate_limits_come_from_the_client_entry_else_the_defaults() -> None:
    assert LEDGER_POLICY.rate_limit(Subject("sanctions-agent")).burst == 2
    assert LEDGER_POLICY.rate_limit(LEDGER).per_second == 5
    assert LEDGER_POLICY.rate_limit(Subject("stranger")).burst == 10


def test_a_client_of_another_issuer_is_a_different_subject() -> None:
    policy = policy_of(
        "version: 1\nclients:\n  portal:\n"
        "    issuer: https://idp.example\n    tools: [{tool: sanctions.search}]\n"
    )
    assert policy.allows_tool(Subject("portal", "https://idp.example"), "sanctions.search")
    assert not policy.allows_tool(Subject("portal"), "sanctions.search")
    assert not policy.allows_tool(Subject("portal", "https://other.example"), "sanctions.search")


def test_errors_name_the_file_line_and_path_of_every_problem() -> None:
    problems = problems_of(
        """version: 1
clients:
  ledger-agent:
    tools:
      - tool: ledger
      - tool: ledger.get_account
        arguments:
          account_id: {}
          months: {minimum: 5, maximum: 1}
          top: {pattern: '('}
  bureau-agent:
    rate_limit: {per_second: 0, burst: 1}
    tols: []
"""
    )
    assert problems == [
        "test.yaml:5: clients.ledger-agent.tools[0].tool: tool must be '<upstream>.<tool>' or '<upstream>.*'",
        "test.yaml:8: clients.ledger-agent.tools[1].arguments.account_id: a constraint needs at least one of "
        "equals_binding, equals, enum, max_length, pattern, minimum, maximum, required",
        "test.yaml:9: clients.ledger-agent.tools[1].arguments.months: minimum is greater than maximum",
        "test.yaml:10: clients.ledger-agent.tools[1].arguments.top.pattern: pattern is not a valid regular "
        "expression: missing ), unterminated subpattern at position 0",
        "test.yaml:12: clients.bureau-agent.rate_limit.per_second: Input should be greater than 0",
        "test.yaml:13: clients.bureau-agent.tols: Extra inputs are not permitted",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nclients:\n  a: {}\n  a: {}\n", "test.yaml:4: duplicate key 'a'"),
        ("version: 1\nclients: [\n", "test.yaml:3: not valid YAML"),
        ("- 1\n- 2\n", "test.yaml:1: the document must be a mapping"),
        ("version: 2\n", "test.yaml:1: version: Input should be 1"),
        ("base: &b {tools: []}\nversion: 1\nclients:\n  a:\n    <<: *b\n", "test.yaml:5: merge keys"),
        (
            "version: 1\nclients:\n  a:\n    tools: [{tool: x.y}, {tool: x.y}]\n",
            "test.yaml:3: clients.a: tool listed more than once: x.y",
        ),
    ],
    ids=["duplicate-key", "bad-yaml", "not-a-mapping", "wrong-version", "merge-key", "repeated-tool"],
)
def test_structural_problems_are_reported_with_their_line(text: str, expected: str) -> None:
    [problem] = problems_of(text)
    assert problem.startswith(expected), problem


def test_a_policy_that_is_too_large_is_refused() -> None:
    [problem] = problems_of("version: 1\n# " + "x" * 1_100_000 + "\n")
    assert "larger than" in problem
