"""Per-call authorization in front of `/mcp`: a pure-ASGI layer, so MCP's streamed responses pass through.

For every request to `/mcp` the layer reads the body once (size-capped, strict JSON: duplicate keys, NaN,
batches and the like are refused, so the MCP server can never read a different message than the one judged)
and verifies the bearer token: asymmetric algorithm allowlist, trusted issuer and key, audience = this MCP
endpoint, expiry with bounded skew, `typ: at+jwt`, and that the task grant behind it is still active.
A `tools/call` is then checked on its own, in this order: the client's rate limit (429), the
`tool:<upstream>.<tool>` scope (403 insufficient_scope), the tool policy with its argument constraints
(403 policy_denied). A name without its upstream stands for the unprefixed upstream's
(`gateway.federated_names`); what is checked and audited is the full name. A resource read, prompt get or
completion is checked against the rate limit, the scope of the upstream it goes to (`resources:<upstream>`,
`prompts:<upstream>`) and the policy, which must name that upstream for the client; one that names nothing
federated goes on, to be answered as not found. Only then is the body replayed to the MCP app, with the
verified caller and the allowed call left in the ASGI scope's state for the federation, and the caller's
identity (never the token) as the scope's user, to which the MCP server binds a session it opens.

Every refusal is audited (reason code, trace id, caller, tool, argument digest, rule, grant, workflow,
task; never the token or the arguments) and answered without any upstream being contacted. Allowed calls
are audited once, by the federation's call pipeline, after the upstream answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from accord.audit import AuditEvent, AuditLog
from accord.bearer import CachedTokenVerifier, MissingToken, bearer_token
from accord.errors import AccordError
from accord.strict_json import DEFAULT_MAX_BYTES, StrictJsonError, loads_strict
from accord.tokens import AccessClaims, TokenError
from accord.trace_context import trace_id_from
from gateway.buffered_body import Disconnected, read_body, replay, route_path
from gateway.caller import (
    AUTHORIZED_CALL_KEY,
    AUTHORIZED_READ_KEY,
    CALLER_KEY,
    MESSAGE_KEY,
    AuthorizedCall,
    AuthorizedRead,
    Caller,
    session_owner,
)
from gateway.challenges import Rejection, send_rejection
from gateway.federated_names import SEPARATOR, FederatedNames
from gateway.oauth.grants import GrantAuthority, GrantError
from gateway.policy import PolicyStore, Subject, tool_scope
from gateway.rate_limit import RateLimiter
from gateway.resource_catalog import READ_METHODS, ServerFeatures
from gateway.run_budget import RunToolCalls
from gateway.session_openings import SessionOpenings, Turn
from gateway.tool_audit import ACTION as TOOL_CALL_ACTION
from gateway.tool_audit import Outcome, ToolCallAudit, ToolCallRecord, argument_digest

REQUEST_ACTION = "mcp.request"
_MAX_TOOL_NAME = 256


@dataclass(frozen=True)
class GuardConfig:
    path: str  # the MCP endpoint's route path, e.g. "/mcp"
    resource_metadata_url: str
    max_body_bytes: int = DEFAULT_MAX_BYTES
    max_sessions_per_client: int = 100


@dataclass
class _Request:
    """What the layer learned about one request, for its decision and its audit record."""

    method: str | None = None
    request_id: object = None
    trace_id: str = ""
    tool: str | None = None
    arguments: Mapping[str, Any] | None = None
    caller: Caller | None = None
    params: dict[str, Any] | None = None
    turn: Turn | None = None  # an admitted `initialize`'s turn to open its client's next session


class McpGuard:
    def __init__(
        self,
        app: ASGIApp,
        config: GuardConfig,
        verifier: CachedTokenVerifier,
        policy: PolicyStore,
        grants: GrantAuthority,
        limiter: RateLimiter,
        audit: AuditLog,
        run_tool_calls: RunToolCalls,
        names: FederatedNames | None = None,
        features: ServerFeatures | None = None,
        open_sessions: Callable[[Caller], int] | None = None,
        session_seen: Callable[[str, Caller], None] | None = None,
    ) -> None:
        self.app = app
        self._open_sessions = open_sessions
        self._session_seen = session_seen
        self._openings = SessionOpenings()
        self._names = names or FederatedNames(())
        self._features = features
        self._config = config
        self._verifier = verifier
        self._policy = policy
        self._grants = grants
        self._limiter = limiter
        self._audit = audit
        self._run_tool_calls = run_tool_calls
        self._tool_audit = ToolCallAudit(audit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope).rstrip("/") != self._config.path:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        seen = _Request(trace_id=trace_id_from(None, headers))
        try:
            body = await read_body(headers, receive, self._config.max_body_bytes)
        except Disconnected:
            return
        except StrictJsonError as exc:
            await self._refuse(send, seen, Rejection(exc), started)
            return
        rejection = await self._judge(scope, headers, body, seen)
        if rejection is not None:
            await self._refuse(send, seen, rejection, started)
            return
        if seen.turn is None:
            await self.app(scope, replay(body, receive), send)
            return
        try:
            await self.app(scope, replay(body, receive), seen.turn.releasing(send))
        finally:
            seen.turn.release()

    async def _judge(self, scope: Scope, headers: Headers, body: bytes, seen: _Request) -> Rejection | None:
        message, malformed = self._parse(body) if scope["method"] == "POST" else (None, None)
        if isinstance(message, dict):
            self._describe(message, headers, seen)
            scope.setdefault("state", {})[MESSAGE_KEY] = message
        try:
            seen.caller = await self._authenticate(headers)
        except _Refused as refused:
            return refused.rejection
        state = scope.setdefault("state", {})
        state[CALLER_KEY] = seen.caller
        scope["user"] = session_owner(seen.caller)
        session = headers.get(MCP_SESSION_ID_HEADER)
        if session is not None and self._session_seen is not None:
            self._session_seen(session, seen.caller)
        if malformed is not None:
            return Rejection(malformed)
        if seen.method == "initialize":
            return await self._admit_session(seen)
        if seen.method in READ_METHODS:
            return await self._authorize_read(state, seen)
        if seen.method != "tools/call":
            return None
        if seen.tool is None or seen.arguments is None:
            return Rejection(
                AccordError("invalid_input", "tools/call needs params.name and object arguments")
            )
        rejection, rule = await self._authorize_call(seen.caller, seen.tool, seen.arguments)
        if rejection is None:
            state[AUTHORIZED_CALL_KEY] = AuthorizedCall(seen.caller, seen.tool, seen.arguments, rule)
        return rejection

    # --- reading --------------------------------------------------------------------------------------

    def _parse(self, body: bytes) -> tuple[Any, AccordError | None]:
        try:
            message = loads_strict(body, max_bytes=self._config.max_body_bytes)
        except StrictJsonError as exc:
            return None, exc
        if isinstance(message, list):
            return None, AccordError("invalid_input", "JSON-RPC batches are not accepted")
        if not isinstance(message, dict):
            return None, AccordError("invalid_input", "the body must be one JSON-RPC message object")
        return message, None

    def _describe(self, message: dict[str, Any], headers: Headers, seen: _Request) -> None:
        seen.request_id = message.get("id")
        method = message.get("method")
        seen.method = method if isinstance(method, str) else None
        params = message.get("params")
        if not isinstance(params, dict):
            return
        meta = params.get("_meta")
        seen.trace_id = trace_id_from(meta if isinstance(meta, dict) else None, headers)
        seen.params = params
        if seen.method != "tools/call":
            return
        name = params.get("name")
        arguments = params.get("arguments", {})
        if isinstance(name, str) and 0 < len(name) <= _MAX_TOOL_NAME:
            seen.tool = self._names.qualified(name)
        if arguments is None or isinstance(arguments, dict):
            seen.arguments = arguments or {}

    # --- deciding -------------------------------------------------------------------------------------

    async def _authenticate(self, headers: Headers) -> Caller:
        try:
            token = bearer_token(headers)
        except MissingToken as exc:
            raise _Refused(Rejection(AccordError("unauthenticated", str(exc)))) from None
        try:
            claims = await self._verifier.verify(token)
        except TokenError as exc:
            raise _Refused(Rejection(exc, cause=exc.cause)) from None
        caller = Caller(claims, self._subject(claims), self._verifier.key_id(token))
        try:
            await self._grants.ensure_active(claims)
        except GrantError as exc:
            raise _Refused(Rejection(exc, cause=exc.cause, extra={"caller": caller})) from None
        return caller

    def _subject(self, claims: AccessClaims) -> Subject:
        ours = claims.iss == self._verifier.own_issuer
        return Subject(claims.client_id, None if ours else claims.iss)

    async def _authorize_call(
        self, caller: Caller, tool: str, arguments: Mapping[str, Any]
    ) -> tuple[Rejection | None, str | None]:
        policy = self._policy.current
        limited = await self._rate_limited(caller)
        if limited is not None:
            return limited, None
        needed = tool_scope(tool)
        if needed not in caller.claims.scopes:
            error = AccordError("insufficient_scope", f"the token lacks the scope {needed}")
            return Rejection(error, scope=needed), None
        verdict = policy.decide(caller.subject, tool, arguments, caller.claims.bindings)
        if not verdict.allowed:
            return Rejection(AccordError("policy_denied", verdict.detail), rule=verdict.rule), verdict.rule
        limit, run = caller.claims.tool_call_limit, caller.claims.wf
        if limit is not None and run is not None and await self._run_tool_calls.take(run) > limit:
            error = AccordError(
                "budget_exceeded", f"run {run[:64]} has used its budget of {limit} tool calls"
            )
            return Rejection(error, rule=verdict.rule), verdict.rule
        return None, verdict.rule

    async def _rate_limited(self, caller: Caller) -> Rejection | None:
        """The caller's rate limit, charged one request: a 429 rejection if it is spent."""
        wait = await self._limiter.acquire(caller.rate_key, self._policy.current.rate_limit(caller.subject))
        if wait > 0:
            error = AccordError("rate_limited", f"rate limit of {caller.client_id} exceeded")
            return Rejection(error, retry_after_s=wait)
        return None

    async def _admit_session(self, seen: _Request) -> Rejection | None:
        """An `initialize` opens a session that lives on: rate-limited, and bounded per client, so no
        client can take the sessions every other client needs. The count is taken in the client's turn
        (`gateway.session_openings`), so openings sent together cannot all pass it."""
        assert seen.caller is not None
        caller = seen.caller
        limited = await self._rate_limited(caller)
        if limited is not None or self._open_sessions is None:
            return limited
        claims = caller.claims
        turn = await self._openings.turn((claims.client_id, claims.iss, claims.sub))
        if turn is None:
            error = AccordError("rate_limited", f"{caller.client_id} is still opening another session")
            return Rejection(error, retry_after_s=1)
        limit = self._config.max_sessions_per_client
        try:
            held = self._open_sessions(caller)
        except BaseException:
            turn.release()
            raise
        if held >= limit:
            turn.release()
            error = AccordError("rate_limited", f"{caller.client_id} already holds {limit} open sessions")
            return Rejection(error, retry_after_s=60)
        seen.turn = turn
        return None

    async def _authorize_read(self, state: dict[str, Any], seen: _Request) -> Rejection | None:
        assert seen.caller is not None
        assert seen.method is not None
        if self._features is None:
            return Rejection(AccordError("policy_denied", f"{seen.method} is not served here"))
        caller, policy = seen.caller, self._policy.current
        # Rate-limited before anything is looked up, so no caller can make the gateway search for free.
        limited = await self._rate_limited(caller)
        if limited is not None:
            return limited
        try:
            target = await self._features.target(seen.method, seen.params)
        except AccordError:
            return None  # names nothing federated: the MCP server answers it (not found, invalid params)
        if target.scope not in caller.claims.scopes:
            error = AccordError("insufficient_scope", f"the token lacks the scope {target.scope}")
            return Rejection(error, scope=target.scope)
        if not policy.allows_scope(caller.subject, target.scope):
            detail = f"the policy of {caller.client_id} does not allow {target.scope}"
            return Rejection(AccordError("policy_denied", detail))
        state[AUTHORIZED_READ_KEY] = AuthorizedRead(caller, seen.method, target.upstream, target.target)
        return None

    # --- refusing -------------------------------------------------------------------------------------

    async def _refuse(self, send: Send, seen: _Request, rejection: Rejection, started: float) -> None:
        caller = seen.caller or rejection.extra.get("caller")
        await self._record(seen, rejection, caller if isinstance(caller, Caller) else None, started)
        await send_rejection(send, rejection, seen.request_id, self._config.resource_metadata_url)

    async def _record(
        self, seen: _Request, rejection: Rejection, caller: Caller | None, started: float
    ) -> None:
        claims = caller.claims if caller is not None else None
        detail = (
            rejection.error.detail
            if rejection.cause is None
            else f"{rejection.cause}: {rejection.error.detail}"
        )
        if seen.method == "tools/call" and seen.tool is not None:
            upstream, separator, _ = seen.tool.partition(SEPARATOR)
            await self._tool_audit.record(
                ToolCallRecord(
                    tool=seen.tool,
                    upstream=upstream if separator else None,
                    arguments_sha256=argument_digest(seen.arguments or {}),
                    outcome=Outcome.DENIED,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    trace_id=seen.trace_id,
                    principal=claims.client_id if claims else "anonymous",
                    reason=rejection.error.reason,
                    run_id=claims.wf if claims else None,
                    client_id=claims.client_id if claims else None,
                    subject=claims.sub if claims else None,
                    grant_id=claims.grant_id if claims else None,
                    task=claims.task if claims else None,
                    rule=rejection.rule,
                    detail=detail,
                )
            )
            return
        details: dict[str, Any] = {"method": (seen.method or "")[:_MAX_TOOL_NAME] or None, "detail": detail}
        if claims is not None:
            details.update(
                client_id=claims.client_id, subject=claims.sub, grant_id=claims.grant_id, task=claims.task
            )
        await self._audit.append(
            AuditEvent(
                actor=claims.client_id if claims else "anonymous",
                action=_audited_action(seen.method),
                outcome=Outcome.DENIED.value,
                reason=rejection.error.reason,
                trace_id=seen.trace_id,
                run_id=claims.wf if claims else None,
                details={name: value for name, value in details.items() if value is not None},
            )
        )


def _audited_action(method: str | None) -> str:
    """Refused tool calls and reads are audited under their own method, as their allowed ones are."""
    if method == "tools/call":
        return TOOL_CALL_ACTION
    return method if method in READ_METHODS else REQUEST_ACTION


class _Refused(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.error.reason)
        self.rejection = rejection
