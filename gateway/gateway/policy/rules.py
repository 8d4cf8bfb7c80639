"""The tool policy, compiled for the hot path: may this client call this tool with these arguments?

Deny by default: an unknown client, an unlisted tool, a failed constraint or a missing binding all deny.
An exact tool rule wins over the `upstream.*` rule of its upstream. Denial details name the argument and
the kind of constraint, never the value (arguments carry personal data).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy.document import ArgumentConstraint, PolicyDocument, RateLimit, ToolRule

TOOL_SCOPE_PREFIX = "tool:"
RESOURCES_SCOPE_PREFIX = "resources:"
PROMPTS_SCOPE_PREFIX = "prompts:"


def tool_scope(tool: str) -> str:
    return TOOL_SCOPE_PREFIX + tool


def resources_scope(upstream: str) -> str:
    return RESOURCES_SCOPE_PREFIX + upstream


def prompts_scope(upstream: str) -> str:
    return PROMPTS_SCOPE_PREFIX + upstream


@dataclass(frozen=True)
class Subject:
    """Whom a decision is about: a client of this gateway (`issuer` None) or of a trusted issuer."""

    client_id: str
    issuer: str | None = None


@dataclass(frozen=True)
class PolicyVerdict:
    allowed: bool
    rule: str | None = None
    detail: str | None = None


# A check returns None when the argument passes, else what is wrong (without the value).
_Check = Callable[[bool, Any, Mapping[str, Any]], str | None]


def _same_json(left: Any, right: Any) -> bool:
    """JSON equality: `true` is not `1`, while `1` equals `1.0`."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return bool(left == right)
    return type(left) is type(right) and bool(left == right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _compile(name: str, constraint: ArgumentConstraint) -> list[_Check]:
    checks: list[_Check] = []
    if constraint.required or constraint.equals_binding is not None:

        def present(given: bool, _value: Any, _bindings: Mapping[str, Any]) -> str | None:
            return None if given else f"argument {name} is required"

        checks.append(present)
    if constraint.equals_binding is not None:
        binding = constraint.equals_binding

        def bound(given: bool, value: Any, bindings: Mapping[str, Any]) -> str | None:
            if binding not in bindings:
                return f"argument {name} needs the task binding {binding}, which the token lacks"
            if given and not _same_json(value, bindings[binding]):
                return f"argument {name} must equal the task's {binding}"
            return None

        checks.append(bound)
    if "equals" in constraint.model_fields_set:
        expected = constraint.equals

        def equal(given: bool, value: Any, _bindings: Mapping[str, Any]) -> str | None:
            return (
                None
                if not given or _same_json(value, expected)
                else f"argument {name} has a value not allowed"
            )

        checks.append(equal)
    if constraint.enum is not None:
        allowed = tuple(constraint.enum)

        def listed(given: bool, value: Any, _bindings: Mapping[str, Any]) -> str | None:
            ok = not given or any(_same_json(value, option) for option in allowed)
            return None if ok else f"argument {name} is not one of the allowed values"

        checks.append(listed)
    if constraint.max_length is not None:
        limit = constraint.max_length

        def short(given: bool, value: Any, _bindings: Mapping[str, Any]) -> str | None:
            ok = not given or (isinstance(value, str) and len(value) <= limit)
            return None if ok else f"argument {name} must be a string of at most {limit} characters"

        checks.append(short)
    if constraint.pattern is not None:
        regex = re.compile(constraint.pattern)

        def shaped(given: bool, value: Any, _bindings: Mapping[str, Any]) -> str | None:
            ok = not given or (isinstance(value, str) and regex.fullmatch(value) is not None)
            return None if ok else f"argument {name} does not match its pattern"

        checks.append(shaped)
    low, high = constraint.minimum, constraint.maximum
    if low is not None or high is not None:

        def ranged(given: bool, value: Any, _bindings: Mapping[str, Any]) -> str | None:
            if not given:
                return None
            ok = _is_number(value) and (low is None or value >= low) and (high is None or value <= high)
            return None if ok else f"argument {name} is outside its allowed range"

        checks.append(ranged)
    return checks


@dataclass(frozen=True)
class CompiledRule:
    id: str
    checks: tuple[tuple[str, tuple[_Check, ...]], ...]

    @classmethod
    def of(cls, client_id: str, rule: ToolRule) -> CompiledRule:
        checks = tuple((name, tuple(_compile(name, c))) for name, c in rule.arguments.items())
        return cls(id=rule.id or f"{client_id}:{rule.tool}", checks=checks)

    def judge(self, arguments: Mapping[str, Any], bindings: Mapping[str, Any]) -> str | None:
        for name, checks in self.checks:
            given = name in arguments
            value = arguments.get(name)
            for check in checks:
                problem = check(given, value, bindings)
                if problem is not None:
                    return problem
        return None


@dataclass(frozen=True)
class CompiledClient:
    exact: Mapping[str, CompiledRule]
    by_upstream: Mapping[str, CompiledRule]
    rate_limit: RateLimit
    resources: frozenset[str] = frozenset()
    prompts: frozenset[str] = frozenset()

    def rule_for(self, tool: str) -> CompiledRule | None:
        rule = self.exact.get(tool)
        if rule is None:
            upstream, dot, _ = tool.partition(".")
            rule = self.by_upstream.get(upstream) if dot else None
        return rule


class ToolPolicy:
    """One loaded policy document; immutable, so a reload swaps the whole object."""

    def __init__(self, document: PolicyDocument, digest: str, source: str) -> None:
        self.document = document
        self.digest = digest
        self.source = source
        self._default_rate = document.defaults.rate_limit
        self._clients: dict[Subject, CompiledClient] = {}
        for client_id, entry in document.clients.items():
            exact: dict[str, CompiledRule] = {}
            by_upstream: dict[str, CompiledRule] = {}
            for rule in entry.tools:
                compiled = CompiledRule.of(client_id, rule)
                upstream, _, tool = rule.tool.partition(".")
                if tool == "*":
                    by_upstream[upstream] = compiled
                else:
                    exact[rule.tool] = compiled
            subject = Subject(client_id, entry.issuer)
            self._clients[subject] = CompiledClient(
                exact,
                by_upstream,
                entry.rate_limit or self._default_rate,
                frozenset(entry.resources),
                frozenset(entry.prompts),
            )

    def allows_tool(self, subject: Subject, tool: str) -> bool:
        client = self._clients.get(subject)
        return client is not None and client.rule_for(tool) is not None

    def allows_scope(self, subject: Subject, scope: str) -> bool:
        """Whether the policy lets the client hold `scope`: a tool it may call, or an upstream whose
        resources or prompts it may use."""
        if scope.startswith(TOOL_SCOPE_PREFIX):
            return self.allows_tool(subject, scope[len(TOOL_SCOPE_PREFIX) :])
        client = self._clients.get(subject)
        if client is None:
            return False
        if scope.startswith(RESOURCES_SCOPE_PREFIX):
            return scope[len(RESOURCES_SCOPE_PREFIX) :] in client.resources
        if scope.startswith(PROMPTS_SCOPE_PREFIX):
            return scope[len(PROMPTS_SCOPE_PREFIX) :] in client.prompts
        return False

    def decide(
        self, subject: Subject, tool: str, arguments: Mapping[str, Any], bindings: Mapping[str, Any]
    ) -> PolicyVerdict:
        client = self._clients.get(subject)
        if client is None:
            return PolicyVerdict(False, None, f"the policy names no client {subject.client_id}")
        rule = client.rule_for(tool)
        if rule is None:
            return PolicyVerdict(False, None, f"the policy of {subject.client_id} does not allow {tool}")
        problem = rule.judge(arguments, bindings)
        return PolicyVerdict(problem is None, rule.id, problem)

    def rate_limit(self, subject: Subject) -> RateLimit:
        client = self._clients.get(subject)
        return client.rate_limit if client is not None else self._default_rate

    def clients(self) -> list[Subject]:
        return list(self._clients)
