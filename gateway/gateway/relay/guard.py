"""In front of the relay's JSON-RPC and HTTP+JSON endpoints: a pure-ASGI layer (SSE streams pass through).

Before the A2A layer parses anything, the layer reads the body once under a size cap and decodes it as
strict JSON (duplicate keys, NaN/Infinity, out-of-range numbers, lone surrogates, nesting deeper than the
limit: `accord.strict_json`), so nothing is authorized or signed from a document another parser could
read differently. It then reads what the call asks for (method, tenant = target agent, skill, run, step,
deadline), has the `RelayGate` admit it, and replays the very same bytes to the A2A routes, with the
admission in the ASGI scope's state for the handler.

Refusals use the error table: 413 `body_too_large`, 400 `malformed_json`, 422 `invalid_input`,
401 `unauthenticated`/`invalid_token` (with a Bearer challenge), 403 `insufficient_scope`/`policy_denied`,
404 `not_found`/`unknown_skill`, 502 `agent_unavailable`/`upstream_unavailable`. The body is the
transport's error shape: a JSON-RPC error (the table's code) on `/jsonrpc`, a `google.rpc.Status` on
`/rest`, both with an ErrorInfo whose metadata holds `reason` (and `cause`). Every refusal is audited.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from accord.a2a_errors import HttpTransport, http_refusal_body, send_http_refusal
from accord.bearer import MissingToken, bearer_token
from accord.strict_json import StrictJsonError, loads_strict
from accord.trace_context import valid_traceparent
from gateway.buffered_body import Disconnected, read_body, replay, route_path
from gateway.relay.gate import CallTarget, Refused, RelayGate, target_from_metadata
from gateway.relay.handler import ADMISSION_KEY

JSONRPC_PATH = "/jsonrpc"
REST_PATH = "/rest"
_SEND_METHODS = ("SendMessage", "SendStreamingMessage")
_ANY_METHOD = frozenset({"GET", "POST", "DELETE"})
_REST_OPERATIONS: tuple[tuple[re.Pattern[str], frozenset[str], str], ...] = (
    (re.compile(r"^/message:send$"), frozenset({"POST"}), "SendMessage"),
    (re.compile(r"^/message:stream$"), frozenset({"POST"}), "SendStreamingMessage"),
    (re.compile(r"^/tasks/[^/]+:cancel$"), frozenset({"POST"}), "CancelTask"),
    (re.compile(r"^/tasks/[^/]+:subscribe$"), frozenset({"GET", "POST"}), "SubscribeToTask"),
    (re.compile(r"^/tasks/[^/:]+$"), frozenset({"GET"}), "GetTask"),
    (re.compile(r"^/tasks$"), frozenset({"GET"}), "ListTasks"),
    (
        re.compile(r"^/tasks/[^/]+/pushNotificationConfigs(/[^/]+)?$"),
        frozenset({"GET", "POST", "DELETE"}),
        "Push",
    ),
    (re.compile(r"^/extendedAgentCard$"), frozenset({"GET"}), "GetExtendedAgentCard"),
)


@dataclass(frozen=True)
class _Call:
    transport: HttpTransport
    request_id: object = None


class RelayGuard:
    def __init__(self, app: ASGIApp, gate: RelayGate, max_body_bytes: int, max_depth: int) -> None:
        self.app = app
        self._gate = gate
        self._max_body_bytes = max_body_bytes
        self._max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        transport = _transport_of(path) if scope["type"] == "http" else None
        if transport is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        traceparent = valid_traceparent(headers.get("traceparent"))
        call = _Call(transport)
        try:
            body = await read_body(headers, receive, self._max_body_bytes)
            document = self._decode(body)
            if transport == "jsonrpc":
                call = _Call(transport, document.get("id") if isinstance(document, dict) else None)
                target = jsonrpc_target(document, traceparent)
            else:
                target = rest_target(scope["method"], path[len(REST_PATH) :], document, traceparent)
        except Disconnected:
            return
        except (StrictJsonError, Refused) as exc:
            # Refused before anything was read as a call: nothing about it is trusted but the trace id.
            refused = exc if isinstance(exc, Refused) else Refused(exc.reason, exc.detail, cause=exc.detail)
            await self._gate.record(CallTarget("", "", traceparent=traceparent), None, "denied", refused)
            await _send_refusal(send, call, refused)
            return
        try:
            admission = await self._gate.admit(_bearer(headers), target)
        except Refused as refused:  # audited by the gate
            await _send_refusal(send, call, refused)
            return
        scope.setdefault("state", {})[ADMISSION_KEY] = admission
        await self.app(scope, replay(body, receive), send)

    def _decode(self, body: bytes) -> Any:
        if not body:
            return None
        return loads_strict(body, max_bytes=self._max_body_bytes, max_depth=self._max_depth)


def _transport_of(path: str) -> HttpTransport | None:
    if path == JSONRPC_PATH:
        return "jsonrpc"
    return "rest" if path.startswith(REST_PATH + "/") else None


def _invalid(detail: str) -> Refused:
    return Refused("invalid_input", detail)


def jsonrpc_target(document: Any, traceparent: str | None) -> CallTarget:
    if isinstance(document, list):
        raise _invalid("JSON-RPC batches are not accepted")
    if not isinstance(document, dict) or not isinstance(document.get("method"), str):
        raise _invalid("the body must be one JSON-RPC request object with a method")
    params = document.get("params", {})
    if not isinstance(params, dict):
        raise _invalid("JSON-RPC params must be an object")
    method = document["method"]
    tenant = params.get("tenant", "")
    if not isinstance(tenant, str):
        raise _invalid("tenant must be a string")
    return target_from_metadata(method, tenant, _metadata(params, method), traceparent)


def rest_target(http_method: str, path: str, document: Any, traceparent: str | None) -> CallTarget:
    tenant, operation = "", _operation(http_method, path)
    if operation is None:
        first, slash, rest = path[1:].partition("/")
        tenant, operation = first, _operation(http_method, "/" + rest) if slash else None
    if document is not None and not isinstance(document, dict):
        raise _invalid("the body must be a JSON object")
    method = operation or "Unknown"
    return target_from_metadata(method, tenant, _metadata(document or {}, method), traceparent)


def _operation(http_method: str, path: str) -> str | None:
    for pattern, methods, operation in _REST_OPERATIONS:
        if pattern.match(path) and http_method in methods:
            return operation
    return None


def _metadata(container: Mapping[str, Any], method: str) -> object:
    """The message metadata of a send (None for other calls); anything malformed reads as no metadata,
    which refuses the send for lacking its skill."""
    if method not in _SEND_METHODS:
        return None
    message = container.get("message")
    return message.get("metadata") if isinstance(message, dict) else None


def _bearer(headers: Headers) -> str | None:
    try:
        return bearer_token(headers)
    except MissingToken:
        return None


async def _send_refusal(send: Send, call: _Call, refused: Refused) -> None:
    body = http_refusal_body(call.transport, refused, refused.cause, call.request_id)
    await send_http_refusal(send, refused, body, scope=refused.scope)
