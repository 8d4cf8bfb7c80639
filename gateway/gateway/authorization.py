"""The per-call authorization hook of the MCP federation.

Every `tools/call` is put to an `Authorizer` after its tool has been resolved and before anything is sent
upstream. In the gateway the real decision is made earlier, by the authorization layer in front of `/mcp`
(`gateway.mcp_guard`: token, `tool:<upstream>.<tool>` scope, policy with argument constraints, grant, rate
limit); `LayerVerdictAuthorizer` then only confirms that the call reaching the federation is the very call
the layer allowed, and labels the decision with the caller. Anything else is denied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.datastructures import Headers
from starlette.requests import Request

from accord.errors import ERROR_TABLE
from gateway.caller import authorized_call_of

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class ToolCallContext:
    """One inbound tool call, as the authorizer sees it.

    `tool` is the federated name (`<upstream>.<tool>`); `upstream` and `upstream_tool` are its parts and
    name a tool the upstream really lists. `headers` are the caller's HTTP headers (including its
    `Authorization`, which only the gateway ever reads); `request` is the inbound Starlette request when the
    transport is HTTP.
    """

    tool: str
    upstream: str
    upstream_tool: str
    arguments: Mapping[str, Any]
    headers: Headers
    trace_id: str
    request: Request | None = None


@dataclass(frozen=True)
class Decision:
    """An authorizer's verdict. A denial carries a reason code from `accord.errors.ERROR_TABLE`.

    `principal` names the caller in the audit trail (the calling client, e.g. the agent); `run_id` ties the
    call to a workflow run; `subject`, `grant_id`, `task` and `rule` say on whose behalf, under which task
    grant and by which policy rule the call was decided.
    """

    allowed: bool
    principal: str = ANONYMOUS
    reason: str | None = None
    detail: str | None = None
    run_id: str | None = None
    subject: str | None = None
    grant_id: str | None = None
    task: str | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        if self.allowed and self.reason is not None:
            raise ValueError("an allow decision carries no reason")
        if not self.allowed and self.reason not in ERROR_TABLE:
            raise ValueError(f"a denial needs a reason code from the error table, got {self.reason!r}")

    @classmethod
    def allow(cls, principal: str = ANONYMOUS, run_id: str | None = None, **labels: str | None) -> Decision:
        return cls(allowed=True, principal=principal, run_id=run_id, **labels)

    @classmethod
    def deny(
        cls, reason: str, detail: str | None = None, principal: str = ANONYMOUS, run_id: str | None = None
    ) -> Decision:
        return cls(allowed=False, principal=principal, reason=reason, detail=detail, run_id=run_id)


class Authorizer(Protocol):
    """Decides whether one tool call may reach its upstream.

    Contract: called once per `tools/call`, concurrently from many requests, before the upstream is
    contacted. Return `Decision.deny(...)` to refuse; the caller then gets a JSON-RPC error with that reason
    and nothing is sent upstream. Raising `AccordError` counts as a denial with its reason; any other
    exception fails closed as `internal_error`. Every outcome is audited by the caller of this hook.
    """

    async def authorize(self, call: ToolCallContext) -> Decision: ...


class LayerVerdictAuthorizer:
    """Allows exactly the calls the authorization layer allowed; denies everything else (fail closed)."""

    async def authorize(self, call: ToolCallContext) -> Decision:
        verdict = authorized_call_of(call.request)
        if verdict is None:
            return Decision.deny("unauthenticated", "the call was not authorized")
        claims = verdict.caller.claims
        if verdict.tool != call.tool or dict(verdict.arguments) != dict(call.arguments):
            return Decision.deny("internal_error", "the call differs from the one authorized")
        return Decision.allow(
            principal=claims.client_id,
            run_id=claims.wf,
            subject=claims.sub,
            grant_id=claims.grant_id,
            task=claims.task,
            rule=verdict.rule,
        )
