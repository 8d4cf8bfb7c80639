"""Who may relay what: the relay's admission decision, made before the A2A layer handles a call.

A call is admitted when, in this order: the caller presents a bearer token of this gateway addressed to its
base URL (`unauthenticated`, `invalid_token`) with the scope `a2a:delegate` (`insufficient_scope`); it
names the target agent as the A2A tenant and, for a message, the skill in `accord.skill` (`invalid_input`);
the delegation policy lets the caller ask that agent for that skill (`policy_denied`); the registry knows
the agent (`not_found`), holds it active (`agent_unavailable`) and its card offers the skill
(`unknown_skill`); and, when the skill uses tools, a task grant can be issued: the message names its run
and step (`accord.wf`, `accord.task`), the caller is an orchestrator and the agent's tool policy allows at
least one of the skill's tools (`policy_denied`). Every decision is audited, with the trace id.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.audit import AuditEvent, AuditLog
from accord.bearer import CachedTokenVerifier
from accord.cards import skill_schemas
from accord.errors import AccordError, Refusal
from accord.gateway_client import tool_scope
from accord.registry_client import RegisteredAgent
from accord.tokens import AccessClaims, TokenError
from gateway.oauth.clients import ClientRegistry
from gateway.oauth.grants import ScopeBound
from gateway.policy import WatchedPolicy
from gateway.relay.delegation import DelegationPolicy
from gateway.relay.directory import AgentDirectory

DELEGATE_SCOPE = "a2a:delegate"
ACTION = "a2a.relay"
SEND_METHODS = frozenset({"SendMessage", "SendStreamingMessage"})
_AGENT = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


# A refused admission: the shared refusal, with the cause and scope its challenge and audit record need.
Refused = Refusal


@dataclass(frozen=True)
class CallTarget:
    """What a call asks for, as the transport carries it (before the A2A layer parses the request)."""

    method: str
    agent: str
    skill: str | None = None
    wf: str | None = None
    task: str | None = None
    deadline: float | None = None
    traceparent: str | None = None
    metadata_problem: str | None = None
    # The run's budget of tool calls (`accord.budget.tool_calls`), written into the step's task grant.
    tool_call_limit: int | None = None

    @property
    def is_send(self) -> bool:
        return self.method in SEND_METHODS

    @property
    def trace_id(self) -> str | None:
        """The caller's W3C trace id (None when it sent no valid `traceparent`)."""
        return self.traceparent.split("-")[1] if self.traceparent else None


@dataclass(frozen=True)
class Admission:
    """An admitted call: who asked, for what, and the agent as the registry knows it."""

    caller: AccessClaims
    target: CallTarget
    agent: RegisteredAgent
    tools: tuple[str, ...] = ()
    rule: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        return self.caller.client_id


def target_from_metadata(method: str, agent: str, metadata: object, traceparent: str | None) -> CallTarget:
    """The target of a call whose message metadata (JSON) is `metadata` (None for calls without one)."""
    if not isinstance(metadata, Mapping):
        return CallTarget(method, agent, traceparent=traceparent)
    skill, wf, task = (metadata.get(key) for key in ("accord.skill", "accord.wf", "accord.task"))
    deadline = metadata.get("accord.deadline")
    problem = None
    if any(value is not None and not isinstance(value, str) for value in (skill, wf, task)):
        problem = "accord.skill, accord.wf and accord.task must be strings"
    elif deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, int | float) or not math.isfinite(deadline)
    ):
        problem = "accord.deadline must be a number of seconds since the epoch"
    limit, budget_problem = _tool_call_limit(metadata.get("accord.budget"))
    return CallTarget(
        method,
        agent,
        skill=skill if isinstance(skill, str) else None,
        wf=wf if isinstance(wf, str) else None,
        task=task if isinstance(task, str) else None,
        deadline=float(deadline) if isinstance(deadline, int | float) and problem is None else None,
        traceparent=traceparent,
        metadata_problem=problem or budget_problem,
        tool_call_limit=limit,
    )


def _tool_call_limit(budget: object) -> tuple[int | None, str | None]:
    """The run's tool-call limit from `accord.budget`, or the problem with it."""
    if budget is None:
        return None, None
    limit = budget.get("tool_calls") if isinstance(budget, Mapping) else None
    if limit is None and isinstance(budget, Mapping):
        return None, None
    # JSON numbers arrive as floats through protobuf Struct: a whole one is a count.
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        return None, "accord.budget.tool_calls must be a whole number >= 0"
    return limit, None


class RelayGate:
    def __init__(
        self,
        verifier: CachedTokenVerifier,
        delegation: WatchedPolicy[DelegationPolicy],
        directory: AgentDirectory,
        clients: ClientRegistry,
        bound: ScopeBound,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._delegation = delegation
        self._directory = directory
        self._clients = clients
        self._bound = bound
        self._audit = audit
        self._clock = clock

    async def admit(self, bearer: str | None, target: CallTarget) -> Admission:
        """The admission of one call, or `Refused`; either way, audited."""
        caller: AccessClaims | None = None
        try:
            caller = await self._authenticate(bearer)
            admission = await self._authorize(caller, target)
        except Refused as refused:
            await self.record(target, caller, "denied", refused)
            raise
        await self.record(target, caller, "allowed", None, rule=admission.rule, **admission.details)
        return admission

    async def _authenticate(self, bearer: str | None) -> AccessClaims:
        if not bearer:
            raise Refused("unauthenticated", "a bearer token of this gateway is required")
        try:
            claims = await self._verifier.verify(bearer)
        except TokenError as exc:
            raise Refused("invalid_token", exc.detail, cause=exc.cause) from None
        if claims.iss != self._verifier.own_issuer:
            raise Refused("invalid_token", "only this gateway's tokens can delegate", cause="wrong_issuer")
        if DELEGATE_SCOPE not in claims.scopes:
            raise Refused(
                "insufficient_scope", f"the token lacks the scope {DELEGATE_SCOPE}", scope=DELEGATE_SCOPE
            )
        return claims

    async def _authorize(self, caller: AccessClaims, target: CallTarget) -> Admission:
        if not _AGENT.match(target.agent):
            raise Refused("invalid_input", "name the target agent as the A2A tenant")
        if target.is_send and not target.skill:
            raise Refused("invalid_input", "name the skill in the message metadata accord.skill")
        if target.metadata_problem is not None:
            raise Refused("invalid_input", target.metadata_problem)
        verdict = self._delegation.current.decide(caller.client_id, target.agent, target.skill)
        if not verdict.allowed:
            raise Refused("policy_denied", verdict.detail or "not allowed by the delegation policy")
        agent = await self._registered(target.agent)
        tools: tuple[str, ...] = ()
        if target.is_send:
            tools = self._declared_tools(agent, target)
            if tools:
                await self._check_grantable(caller, agent, target, tools)
        details = {"agent": target.agent, "tools": list(tools)} if tools else {"agent": target.agent}
        return Admission(caller, target, agent, tools, verdict.rule, details)

    async def _registered(self, name: str) -> RegisteredAgent:
        try:
            agent = await self._directory.get(name)
        except AccordError as exc:
            if exc.reason == "not_found":
                raise Refused("not_found", f"the registry knows no agent {name}") from None
            raise Refused("upstream_unavailable", "the registry cannot be reached") from None
        if agent.status != "active":
            raise Refused("agent_unavailable", f"{name} is {agent.status} at the registry")
        return agent

    @staticmethod
    def _declared_tools(agent: RegisteredAgent, target: CallTarget) -> tuple[str, ...]:
        if not any(skill.id == target.skill for skill in agent.card.skills):
            raise Refused("unknown_skill", f"{agent.name} offers no skill {target.skill}")
        contract = skill_schemas(agent.card).get(target.skill or "")
        return contract.tools if contract is not None else ()

    async def _check_grantable(
        self, caller: AccessClaims, agent: RegisteredAgent, target: CallTarget, tools: tuple[str, ...]
    ) -> None:
        """The grant the handler will issue can be issued: refused here, before anything happens."""
        if not (target.wf and target.task and _ID.match(target.wf) and _ID.match(target.task)):
            raise Refused("invalid_input", "a skill with tools needs accord.wf and accord.task identifiers")
        if target.deadline is not None and target.deadline <= self._clock():
            raise Refused("invalid_input", "the step deadline has already passed")
        delegator = await self._clients.get(caller.client_id)
        if delegator is None or delegator.kind != "orchestrator":
            raise Refused("policy_denied", "only a registered orchestrator can delegate a step with tools")
        client = await self._clients.get(agent.name)
        if client is None or client.kind != "agent":
            raise Refused("policy_denied", f"{agent.name} is not a registered agent client")
        if not self._bound.grantable(client, frozenset(tool_scope(tool) for tool in tools)):
            raise Refused(
                "policy_denied", f"the tool policy of {agent.name} allows none of {target.skill}'s tools"
            )

    async def record(
        self,
        target: CallTarget,
        caller: AccessClaims | None,
        outcome: str,
        refused: Refused | None,
        **details: Any,
    ) -> None:
        """One audit record of a relay decision (never a token, a grant or message content)."""
        if refused is not None:
            details.update(cause=refused.cause, detail=refused.detail)
        values = {
            "method": (target.method or "")[:64] or None,
            "agent": target.agent[:64] or None,
            "skill": (target.skill or "")[:128] or None,
            "task": (target.task or "")[:128] or None,
            "client_id": caller.client_id if caller else None,
            **details,
        }
        await self._audit.append(
            AuditEvent(
                actor=caller.client_id if caller else "anonymous",
                action=ACTION,
                outcome=outcome,
                reason=refused.reason if refused is not None else None,
                trace_id=target.trace_id,
                run_id=(target.wf or "")[:64] or None,
                details={name: value for name, value in values.items() if value is not None},
            )
        )
