"""The path of one `tools/call` through the gateway: resolve, authorize, forward, mark, audit.

Each step either hands on or ends the call with a reason code. Exactly one audit record is written per call,
whatever the outcome; if it cannot be written the call fails rather than going unrecorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
from starlette.datastructures import Headers
from starlette.requests import Request

from accord.errors import AccordError
from gateway.authorization import ANONYMOUS, Authorizer, Decision, ToolCallContext
from gateway.call_relay import MAX_INPUT_ROUNDS, CallRelay, InputDeclined, InputRound
from gateway.catalog import FederatedTool, ToolCatalog, split_federated_name
from gateway.input_state import CallBinding, InputStateSeal, OpenedState
from gateway.provenance import gateway_error_result, with_provenance
from gateway.tool_audit import Outcome, ToolCallAudit, ToolCallRecord, argument_digest
from gateway.upstreams import UpstreamFailure, UpstreamPool

logger = logging.getLogger(__name__)
_STATE_ONLY_PAUSE_S = 0.05


@dataclass(frozen=True)
class InboundCall:
    """A `tools/call` as it reached the MCP endpoint. `arguments` is read-only: what the authorizer judges
    is exactly what goes upstream."""

    name: str
    arguments: Mapping[str, Any]
    headers: Headers
    trace_id: str
    request: Request | None = None
    relay: CallRelay | None = None
    answers: InputRound | None = None


class _Trail:
    """Collects what the audit record of one call needs as the call moves through the steps."""

    def __init__(self, audit: ToolCallAudit, inbound: InboundCall) -> None:
        self._audit = audit
        self._inbound = inbound
        self._started = time.perf_counter()
        self._digest = argument_digest(inbound.arguments)
        self.upstream: str | None = None
        self.decision: Decision | None = None
        # Whether the current round (one upstream call, or the refusal before any) has its record.
        self.recorded = False

    def binding(self, tool: str) -> CallBinding:
        decision = self.decision
        return CallBinding(
            principal=decision.principal if decision else ANONYMOUS,
            subject=decision.subject if decision else None,
            grant_id=decision.grant_id if decision else None,
            tool=tool,
            arguments_sha256=self._digest,
        )

    async def write(
        self, outcome: Outcome, reason: str | None = None, tool_error: bool | None = None
    ) -> None:
        """The record of the current round; shielded, so a caller going away cannot cut it in half (and
        the round is not recorded twice)."""
        self.recorded = True
        with anyio.CancelScope(shield=True):
            await self._record(outcome, reason, tool_error)

    async def _record(self, outcome: Outcome, reason: str | None, tool_error: bool | None) -> None:
        decision = self.decision
        await self._audit.record(
            ToolCallRecord(
                tool=self._inbound.name,
                upstream=self.upstream,
                arguments_sha256=self._digest,
                outcome=outcome,
                duration_ms=(time.perf_counter() - self._started) * 1000,
                trace_id=self._inbound.trace_id,
                principal=decision.principal if decision else ANONYMOUS,
                reason=reason,
                run_id=decision.run_id if decision else None,
                tool_error=tool_error,
                client_id=decision.principal if decision and decision.principal != ANONYMOUS else None,
                subject=decision.subject if decision else None,
                grant_id=decision.grant_id if decision else None,
                task=decision.task if decision else None,
                rule=decision.rule if decision else None,
                detail=decision.detail if decision and not decision.allowed else None,
            )
        )


class ToolCallPipeline:
    """Runs one call through the steps. Caller mistakes and denials raise `AccordError` (a JSON-RPC error);
    upstream failures return an `is_error` result, because the model should see and handle them."""

    def __init__(
        self,
        catalog: ToolCatalog,
        pool: UpstreamPool,
        authorizer: Authorizer,
        audit: ToolCallAudit,
        seal: InputStateSeal | None = None,
    ) -> None:
        self._seal = seal or InputStateSeal()
        self._catalog = catalog
        self._pool = pool
        self._authorizer = authorizer
        self._audit = audit

    async def call(self, inbound: InboundCall) -> types.CallToolResult | types.InputRequiredResult:
        trail = _Trail(self._audit, inbound)
        try:
            federated = await self._catalog.resolve(inbound.name)
        except AccordError as exc:
            await trail.write(Outcome.REJECTED, exc.reason)
            raise
        except UpstreamFailure as exc:
            # The name parsed and names a configured upstream, which has never answered a tool listing.
            trail.upstream, tool = split_federated_name(inbound.name)
            await trail.write(Outcome.FAILED, exc.reason)
            return gateway_error_result(exc.reason, exc.detail, trail.upstream, tool)
        trail.upstream = federated.upstream

        trail.decision = await self._authorize(federated, inbound)
        if not trail.decision.allowed:
            reason = trail.decision.reason or "policy_denied"
            await trail.write(Outcome.DENIED, reason)
            raise AccordError(reason, trail.decision.detail)

        return await self._forward(federated, inbound, trail)

    async def _authorize(self, federated: FederatedTool, inbound: InboundCall) -> Decision:
        call = ToolCallContext(
            tool=federated.name,
            upstream=federated.upstream,
            upstream_tool=federated.upstream_tool,
            arguments=inbound.arguments,
            headers=inbound.headers,
            trace_id=inbound.trace_id,
            request=inbound.request,
        )
        try:
            return await self._authorizer.authorize(call)
        except AccordError as exc:
            return Decision.deny(exc.reason, exc.detail)
        except Exception:
            # Fail closed: an authorizer that cannot decide has not allowed anything.
            logger.exception("authorizer raised", extra={"tool": federated.name})
            return Decision.deny("internal_error", "the call could not be authorized")

    async def _forward(
        self, federated: FederatedTool, inbound: InboundCall, trail: _Trail
    ) -> types.CallToolResult | types.InputRequiredResult:
        binding = trail.binding(federated.name)
        answers = inbound.answers or InputRound()
        try:
            opened = self._seal.open(answers.request_state, answers.responses, binding)
        except AccordError as exc:
            await trail.write(Outcome.REJECTED, exc.reason)
            raise
        try:
            return await self._rounds(federated, inbound, trail, opened)
        except BaseException as exc:
            # Whatever ends the call here (the caller went away, a bug), the upstream may have acted on it:
            # the round is on the record before the error goes on.
            if not trail.recorded:
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    await trail.write(Outcome.CANCELLED)
                else:
                    await trail.write(Outcome.FAILED, "internal_error")
            raise

    async def _rounds(
        self, federated: FederatedTool, inbound: InboundCall, trail: _Trail, opened: OpenedState
    ) -> types.CallToolResult | types.InputRequiredResult:
        """The call, and for a caller asked in its session, each retry with its answers: one audit record
        per upstream call."""
        upstream = self._pool.upstreams[federated.upstream]
        tool, schema, relay = federated.upstream_tool, federated.tool.output_schema, inbound.relay
        arguments = dict(inbound.arguments)
        asked = InputRound(opened.responses, opened.upstream_state)
        try:
            for round_number in range(MAX_INPUT_ROUNDS + 1):
                trail.recorded = False
                result = await upstream.call_tool(tool, arguments, schema, relay, asked)
                if not isinstance(result, types.InputRequiredResult):
                    break
                if relay is None or not relay.can_ask:
                    return await self._input_required(federated, trail, result, relay)
                if round_number == MAX_INPUT_ROUNDS:
                    raise InputDeclined(f"the tool asked for input more than {MAX_INPUT_ROUNDS} times")
                # This round is recorded once its question is answered (or as the call's end if not).
                answers = await _answers(relay, result, federated.upstream)
                await trail.write(Outcome.INPUT_REQUIRED)
                asked = InputRound(answers, result.request_state)
            assert not isinstance(result, types.InputRequiredResult)  # the last round raised instead
        except UpstreamFailure as exc:
            await trail.write(Outcome.FAILED, exc.reason)
            return gateway_error_result(exc.reason, exc.detail, federated.upstream, tool)
        except InputDeclined as declined:
            await trail.write(Outcome.FAILED, "input_unavailable")
            return gateway_error_result("input_unavailable", str(declined), federated.upstream, tool)
        received_at = datetime.now(UTC)
        await trail.write(Outcome.OK, tool_error=bool(result.is_error))
        return with_provenance(result, federated.upstream, tool, received_at)

    async def _input_required(
        self,
        federated: FederatedTool,
        trail: _Trail,
        result: types.InputRequiredResult,
        relay: CallRelay | None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """An upstream's question to a caller the gateway cannot ask: a 2026-07-28 caller gets it (its
        state sealed to this call) and answers by retrying; any other caller cannot answer at all."""
        if relay is None or not relay.answers_itself:
            raise InputDeclined("the caller cannot be asked for input")
        binding = trail.binding(federated.name)
        sealed = self._seal.seal(result.request_state, binding, result.input_requests or {})
        await trail.write(Outcome.INPUT_REQUIRED)
        return result.model_copy(update={"request_state": sealed})


async def _answers(
    relay: CallRelay, asked: types.InputRequiredResult, upstream: str
) -> dict[str, Any] | None:
    """The caller's answers to what the upstream asked; an ask of nothing (the upstream only carries its
    state forward) is retried after a pause, as the SDK's own client does."""
    if not asked.input_requests:
        await asyncio.sleep(_STATE_ONLY_PAUSE_S)
        return None
    return await relay.ask(asked.input_requests, upstream)
