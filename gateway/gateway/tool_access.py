"""The tool policy applied outside the per-call check: what a caller sees in `tools/list`, and what a
task grant may hold. Both follow the same rule as a call: the `tool:` scope and the policy must agree."""

from __future__ import annotations

import mcp_types as types
from starlette.requests import Request

from gateway.caller import caller_of
from gateway.federation import ReadAccess, ToolVisibility
from gateway.oauth.clients import OAuthClient
from gateway.policy import PolicyStore, Subject, tool_scope


def policy_visibility(store: PolicyStore) -> ToolVisibility:
    """`tools/list` for one caller: the tools its token has the scope for and its policy allows."""

    def visible(request: Request | None, tools: list[types.Tool]) -> list[types.Tool]:
        caller = caller_of(request)
        if caller is None:
            return []
        policy = store.current
        scopes = caller.claims.scopes
        return [
            t for t in tools if tool_scope(t.name) in scopes and policy.allows_tool(caller.subject, t.name)
        ]

    return visible


def policy_read_access(store: PolicyStore) -> ReadAccess:
    """Whether a caller may see and use what needs `scope` (`resources:` or `prompts:` of an upstream):
    its token holds the scope and its policy names the upstream."""

    def readable(request: Request | None, scope: str) -> bool:
        caller = caller_of(request)
        return (
            caller is not None
            and scope in caller.claims.scopes
            and store.current.allows_scope(caller.subject, scope)
        )

    return readable


class PolicyScopeBound:
    """Task grants (and tokens exchanged from them) hold only `tool:` scopes the client's policy allows."""

    def __init__(self, store: PolicyStore) -> None:
        self._store = store

    def grantable(self, client: OAuthClient, scopes: frozenset[str]) -> frozenset[str]:
        policy = self._store.current
        subject = Subject(client.client_id)
        return frozenset(scope for scope in scopes if policy.allows_scope(subject, scope))
