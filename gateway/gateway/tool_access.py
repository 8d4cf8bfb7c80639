"""The tool policy applied outside the per-call check: what a caller sees in `tools/list`, what a task grant
may hold, and whether a resource subscription may still be served. Each follows the same rule as a call:
the scope and the policy must agree (and for a subscription, the token and its grant must still hold)."""

from __future__ import annotations

import time
from collections.abc import Callable

import mcp_types as types
from starlette.requests import Request

from accord.errors import AccordError
from accord.tokens import TokenError
from gateway.caller import Caller, caller_of
from gateway.federation import ReadAccess, ToolVisibility
from gateway.oauth.clients import OAuthClient
from gateway.oauth.grants import GrantAuthority, GrantError
from gateway.policy import PolicyStore, Subject, tool_scope
from gateway.resource_watches import SubscriptionAuthority


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


def subscription_authority(
    store: PolicyStore,
    grants: GrantAuthority,
    key_trusted: Callable[[str, str], bool],
    clock: Callable[[], float] = time.time,
) -> SubscriptionAuthority:
    """Why a session's subscription may no longer be served under its latest token (None: it may): the
    token expired, the key that signed it is no longer trusted, its task grant ended, or the scope or the
    policy no longer allow the read."""

    async def refusal(caller: Caller, scope: str) -> AccordError | None:
        claims = caller.claims
        if claims.exp <= clock():
            return GrantError("expired", "the token the subscription is served under has expired")
        if caller.key_id is None or not key_trusted(claims.iss, caller.key_id):
            return TokenError("unknown_key", "the key that signed the token is no longer trusted")
        try:
            await grants.ensure_active(claims)
        except GrantError as exc:
            return exc
        if scope not in claims.scopes:
            return AccordError("insufficient_scope", f"the token lacks the scope {scope}")
        if not store.current.allows_scope(caller.subject, scope):
            return AccordError("policy_denied", f"the policy of {caller.client_id} no longer allows {scope}")
        return None

    return refusal


class PolicyScopeBound:
    """Task grants (and tokens exchanged from them) hold only `tool:` scopes the client's policy allows."""

    def __init__(self, store: PolicyStore) -> None:
        self._store = store

    def grantable(self, client: OAuthClient, scopes: frozenset[str]) -> frozenset[str]:
        policy = self._store.current
        subject = Subject(client.client_id)
        return frozenset(scope for scope in scopes if policy.allows_scope(subject, scope))
