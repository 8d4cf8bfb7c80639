"""Tool calls to an upstream as single JSON-RPC exchanges (MCP 2026-07-28), over a keep-alive pool.

The 2026-07-28 protocol makes every request self-contained: no session, no handshake. A `tools/call` is
one POST with the protocol's routing headers and `_meta`, answered by one JSON-RPC response (or by an SSE
stream ending in it, when the server chooses to stream). Sending it directly avoids the general client's
per-call tasks and streams and a general HTTP client's layers, which together cost the gateway more than
everything else on a call's path; the supervised `mcp.Client` of each upstream still serves listings and
connection health.

The call is a client span of the gateway's trace, and the W3C trace context (not the caller's baggage)
travels in both places an MCP server may read it: `_meta` (the SDK's server parents its span on it) and
the `traceparent` header.

The result is held to the same contract as the SDK client holds it: a JSON-RPC error is the upstream
refusing; structured content must match the tool's declared output schema (checked with a validator
compiled once per schema).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from jsonschema import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import SecretStr, ValidationError

from gateway.call_relay import CallRelay, InputRound, UpstreamEvents, events_data
from gateway.http_pool import HttpError, HttpResponse, KeepAlivePool

PROTOCOL = "2026-07-28"
_CLIENT_META = {
    types.PROTOCOL_VERSION_META_KEY: PROTOCOL,
    types.CLIENT_INFO_META_KEY: {"name": "accord-gateway", "version": "1"},
}
_CAPABILITIES_META_KEY = "io.modelcontextprotocol/clientCapabilities"
_tracer = trace.get_tracer("accord.gateway")
# Only the W3C trace context goes upstream: the caller's baggage is the caller's, and nothing a caller
# sends reaches an upstream except the tool arguments (and the ids that tie the trace together).
_TRACE_CONTEXT = TraceContextTextMapPropagator()


class CallRefused(Exception):
    """The upstream answered, but not with a usable result: `kind` says how (`refused` or `contract`)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class CallTransportError(Exception):
    """The exchange itself failed (connection, timeout, HTTP status)."""


class OutputSchemas:
    """Compiled output-schema validators, one per (tool, schema) as last listed."""

    def __init__(self) -> None:
        self._validators: dict[str, tuple[str, Validator]] = {}

    def check(self, tool: str, schema: Mapping[str, Any] | None, result: types.CallToolResult) -> None:
        if schema is None or result.is_error:
            return
        if result.structured_content is None:
            raise CallRefused("contract")
        key = json.dumps(schema, sort_keys=True)
        cached = self._validators.get(tool)
        if cached is None or cached[0] != key:
            try:
                cls = validator_for(schema)
                cls.check_schema(schema)
            except SchemaError:
                raise CallRefused("contract") from None
            cached = (key, cls(schema))
            self._validators[tool] = cached
        if not cached[1].is_valid(result.structured_content):
            raise CallRefused("contract")


class UpstreamCaller:
    """One upstream's call path: a pooled HTTP client carrying only the gateway's credential for it."""

    def __init__(self, url: str, secret: SecretStr, timeout: float) -> None:
        self._pool = KeepAlivePool(url, timeout)
        self._headers = {
            "authorization": f"Bearer {secret.get_secret_value()}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": PROTOCOL,
            "mcp-method": "tools/call",
        }
        self._ids = itertools.count(1)
        self.schemas = OutputSchemas()

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        output_schema: Mapping[str, Any] | None,
        relay: CallRelay | None = None,
        answers: InputRound | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """One call; what the upstream sends while it runs goes to `relay` (`gateway.call_relay`), and
        `answers` carries the caller's answers to an earlier `input_required` result."""
        request_id = next(self._ids)
        with _tracer.start_as_current_span(
            f"tools/call {tool}",
            kind=trace.SpanKind.CLIENT,
            attributes={"mcp.method.name": "tools/call", "gen_ai.tool.name": tool},
        ):
            carrier: dict[str, str] = {}
            _TRACE_CONTEXT.inject(carrier)
            params = {"name": tool, "arguments": arguments, "_meta": _meta(carrier, relay)}
            if answers is not None and answers.responses is not None:
                params["inputResponses"] = answers.responses
            if answers is not None and answers.request_state is not None:
                params["requestState"] = answers.request_state
            body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
            headers = {**self._headers, **carrier, "mcp-name": tool}
            events = UpstreamEvents(relay).feed if relay is not None else None
            try:
                response = await self._pool.post(
                    json.dumps(body, separators=(",", ":")).encode(), headers, events
                )
            except HttpError as exc:
                raise CallTransportError(str(exc)) from None
        message = _response_message(response, request_id)
        if "error" in message:
            raise CallRefused("refused")
        answer = message.get("result")
        try:
            if isinstance(answer, dict) and answer.get("resultType") == "input_required":
                return types.InputRequiredResult.model_validate(answer)
            result = types.CallToolResult.model_validate(answer)
        except ValidationError:
            raise CallRefused("contract") from None
        self.schemas.check(tool, output_schema, result)
        return result

    async def aclose(self) -> None:
        await self._pool.aclose()


def _meta(carrier: dict[str, str], relay: CallRelay | None) -> dict[str, Any]:
    """The call's `_meta`: the protocol's envelope, the trace context, and what the caller asked to get
    back (progress, log messages) or lent (the capabilities it can be asked under)."""
    meta: dict[str, Any] = {**_CLIENT_META, **carrier, _CAPABILITIES_META_KEY: {}}
    if relay is not None:
        meta[_CAPABILITIES_META_KEY] = relay.capabilities
        if relay.progress_token is not None:
            meta["progressToken"] = relay.progress_token
        if relay.log_level is not None:
            meta[types.LOG_LEVEL_META_KEY] = relay.log_level
    return meta


def _response_message(response: HttpResponse, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response to `request_id`, from a JSON body or the SSE stream that carries it."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream" and response.status == 200:
        messages = [_loads(data) for data in events_data(response.body.decode("utf-8", "replace"))]
    elif content_type == "application/json":
        messages = [_loads(response.body)]
    else:
        raise CallTransportError(f"HTTP {response.status}")
    for message in messages:
        if isinstance(message, dict) and message.get("id") == request_id:
            # A JSON-RPC error may come with a mapped HTTP status; a result only with 200.
            if "error" in message or response.status == 200:
                return message
            raise CallTransportError(f"HTTP {response.status}")
    if response.status != 200:
        raise CallTransportError(f"HTTP {response.status}")
    raise CallRefused("contract")


def _loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise CallRefused("contract") from None
