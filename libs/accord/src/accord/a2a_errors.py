"""Accord refusals as A2A errors, alike on JSON-RPC, HTTP+JSON and gRPC.

A refusal inside the A2A protocol is one of the a2a-sdk error classes (so its JSON-RPC code, HTTP status
and gRPC status are A2A's) carrying Accord's reason code as `data = {"reason": ..., "cause": ...}`.
JSON-RPC and HTTP+JSON put `data` into the `google.rpc.ErrorInfo` metadata, which the a2a-sdk client hands
back as the error's `data`. Its gRPC client keeps only the status message, so the message itself starts
with `<reason> (<cause>): `, and `AccordGrpcHandler` puts `data` into the ErrorInfo metadata as well.

`AccordRefusal` is for the refusals A2A leaves to the transport (authentication, authorization): on gRPC
it is answered with the error table's status (UNAUTHENTICATED, PERMISSION_DENIED, ...). Over HTTP such a
refusal is made before the A2A layer runs (`send_http_refusal`): the table's HTTP status, a Bearer
challenge where another token would help, and the transport's error body (`http_refusal_body`: a JSON-RPC
error on JSON-RPC, a `google.rpc.Status` on HTTP+JSON), both with an ErrorInfo whose metadata holds
`reason` (and `cause`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import grpc
from a2a.server.request_handlers import GrpcHandler
from a2a.utils.errors import A2A_ERROR_MAPPING, A2A_ERROR_REASONS, A2AError, InvalidRequestError
from a2a.utils.grpc_status import status_to_grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from starlette.types import Send

from accord.bearer import bearer_challenge
from accord.errors import ERROR_TABLE, AccordError

A2A_DOMAIN = "a2a-protocol.org"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
ACCORD_DOMAIN = "accord"
_REASON_IN_TEXT = re.compile(r"(?<![A-Za-z0-9_])([a-z][a-z_]*)(?: \(([a-z_]+)\))?: ")
_MAX_METADATA_VALUE = 256


class AccordRefusal(A2AError):
    """A refusal the transport answers with the error table's status (gRPC: `AccordGrpcHandler`)."""

    def __init__(self, error: AccordError, cause: str | None = None) -> None:
        self.error = error
        self.cause = cause
        super().__init__(_message(error, cause), data=_data(error, cause))


# The cause the gateway relay gives `agent_unavailable` when its link to the agent broke (the agent may
# well be working on): a caller holding the task's id follows it rather than sending the step again.
LINK_LOST_CAUSE = "link_lost"


def a2a_refusal(
    error: AccordError, kind: type[A2AError] = InvalidRequestError, cause: str | None = None
) -> A2AError:
    """`error` as the A2A error `kind`, its reason (and cause) in `data` and at the head of the message."""
    return kind(_message(error, cause), data=_data(error, cause))


def _message(error: AccordError, cause: str | None) -> str:
    return f"{error.reason} ({cause}): {error.detail}" if cause else f"{error.reason}: {error.detail}"


def _data(error: AccordError, cause: str | None) -> dict[str, Any]:
    return {"reason": error.reason, **({"cause": cause} if cause else {})}


def refusal_reason(exc: BaseException) -> tuple[str, str | None] | None:
    """The Accord reason (and cause) an A2A error or client error carries, from its data or its text."""
    data = getattr(exc, "data", None)
    if isinstance(data, Mapping) and data.get("reason") in ERROR_TABLE:
        cause = data.get("cause")
        return str(data["reason"]), cause if isinstance(cause, str) else None
    for match in _REASON_IN_TEXT.finditer(str(exc)):
        if match.group(1) in ERROR_TABLE:
            return match.group(1), match.group(2)
    return None


def _string_metadata(data: object) -> dict[str, str]:
    if not isinstance(data, Mapping):
        return {}
    return {
        str(key): str(value)[:_MAX_METADATA_VALUE]
        for key, value in data.items()
        if isinstance(value, str | int | float | bool)
    }


class AccordGrpcHandler(GrpcHandler):
    """The a2a-sdk gRPC servicer, answering errors with their reason in the ErrorInfo metadata, and an
    `AccordRefusal` with the error table's gRPC status."""

    def status_of(self, error: A2AError) -> tuple[grpc.StatusCode, str, str] | None:
        """The gRPC status, ErrorInfo reason and domain of an error (None: leave it to the SDK)."""
        if isinstance(error, AccordRefusal):
            return error.error.kind.grpc_status, error.error.reason.upper(), ACCORD_DOMAIN
        mapping = A2A_ERROR_MAPPING.get(type(error))
        if mapping is None:
            return None
        return grpc.StatusCode[mapping.grpc_status], A2A_ERROR_REASONS[type(error)], A2A_DOMAIN

    async def abort_context(self, error: A2AError, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
        status_of = self.status_of(error)
        metadata = _string_metadata(error.data)
        if status_of is None or not metadata:
            await super().abort_context(error, context)
            return
        code, reason, domain = status_of
        info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(code=code.value[0], message=error.message, details=[detail])
        rich = status_to_grpc(status)
        trailing = [(str(k), v) for k, v in (context.trailing_metadata() or ())]
        context.set_trailing_metadata((*trailing, *rich.trailing_metadata))
        await context.abort(rich.code, rich.details)


HttpTransport = Literal["jsonrpc", "rest"]


def _error_info(error: AccordError, cause: str | None) -> dict[str, Any]:
    return {
        "@type": ERROR_INFO_TYPE,
        "reason": error.reason.upper(),
        "domain": ACCORD_DOMAIN,
        "metadata": _data(error, cause),
    }


def http_refusal_body(
    transport: HttpTransport, error: AccordError, cause: str | None = None, request_id: object = None
) -> dict[str, Any]:
    """The error body of a refusal on an A2A HTTP transport, made before the A2A layer saw the call."""
    kind = error.kind
    message = f"{error.reason}: {error.detail}"
    if transport == "jsonrpc":
        # Only ids JSON-RPC allows are echoed; anything else is answered with null.
        valid_id = isinstance(request_id, str | int) and not isinstance(request_id, bool)
        body = {"code": kind.jsonrpc_code, "message": message, "data": [_error_info(error, cause)]}
        return {"jsonrpc": "2.0", "id": request_id if valid_id else None, "error": body}
    status = {"code": kind.http_status, "status": kind.grpc_status.name, "message": message}
    return {"error": {**status, "details": [_error_info(error, cause)]}}


async def send_http_refusal(
    send: Send,
    error: AccordError,
    body: Mapping[str, Any],
    *,
    scope: str | None = None,
    resource_metadata: str | None = None,
) -> None:
    """Answer an HTTP call with a refusal: the table's status, `body`, a Bearer challenge where one helps."""
    encoded = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(encoded)).encode()),
        (b"cache-control", b"no-store"),
    ]
    challenge = bearer_challenge(error, scope, resource_metadata)
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": error.kind.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": encoded})
