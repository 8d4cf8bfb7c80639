"""The one error table of the mesh.

Every error an Accord service can return is an `AccordError` carrying a stable, machine-readable reason
code. The table maps each reason to its HTTP status, JSON-RPC code and gRPC status so that the three
transports never drift apart. Unknown exceptions become `internal_error`; messages never carry secrets or
stack traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class ErrorKind:
    """How one reason code appears on each transport."""

    reason: str
    http_status: int
    jsonrpc_code: int
    grpc_status: grpc.StatusCode
    summary: str


_REFUSED_CARD = grpc.StatusCode.FAILED_PRECONDITION

_KINDS: tuple[ErrorKind, ...] = (
    # Caller mistakes: the request itself is wrong.
    ErrorKind("malformed_json", 400, -32700, grpc.StatusCode.INVALID_ARGUMENT, "body is not valid JSON"),
    ErrorKind("invalid_input", 422, -32602, grpc.StatusCode.INVALID_ARGUMENT, "input fails its schema"),
    ErrorKind("unsupported_media_type", 415, -32005, grpc.StatusCode.INVALID_ARGUMENT, "wrong content type"),
    ErrorKind("body_too_large", 413, -32600, grpc.StatusCode.INVALID_ARGUMENT, "body over the size limit"),
    ErrorKind("unknown_workflow", 404, -32601, grpc.StatusCode.NOT_FOUND, "no such workflow"),
    ErrorKind("unknown_skill", 404, -32601, grpc.StatusCode.NOT_FOUND, "no such skill"),
    # MCP answers a call to an unknown tool with Invalid params (-32602), so this reason does too.
    ErrorKind("unknown_tool", 404, -32602, grpc.StatusCode.NOT_FOUND, "no such tool"),
    # And an unknown resource (SEP-2164) or prompt the same way.
    ErrorKind("unknown_resource", 404, -32602, grpc.StatusCode.NOT_FOUND, "no such MCP resource"),
    ErrorKind("unknown_prompt", 404, -32602, grpc.StatusCode.NOT_FOUND, "no such prompt"),
    ErrorKind("not_found", 404, -32001, grpc.StatusCode.NOT_FOUND, "no such resource"),
    ErrorKind("conflict", 409, -32600, grpc.StatusCode.ALREADY_EXISTS, "resource already exists"),
    ErrorKind(
        "idempotency_conflict", 409, -32602, grpc.StatusCode.ALREADY_EXISTS, "key reused for another request"
    ),
    # Identity and authorization.
    ErrorKind("unauthenticated", 401, -32040, grpc.StatusCode.UNAUTHENTICATED, "authentication required"),
    ErrorKind("invalid_token", 401, -32041, grpc.StatusCode.UNAUTHENTICATED, "token is not valid"),
    ErrorKind("insufficient_scope", 403, -32042, grpc.StatusCode.PERMISSION_DENIED, "scope missing"),
    ErrorKind("policy_denied", 403, -32043, grpc.StatusCode.PERMISSION_DENIED, "denied by policy"),
    ErrorKind("signature_invalid", 401, -32044, grpc.StatusCode.UNAUTHENTICATED, "signature invalid"),
    ErrorKind("rate_limited", 429, -32045, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit exceeded"),
    # Run failures: the request was fine, the work could not be done.
    ErrorKind("no_agent_for_skill", 503, -32050, grpc.StatusCode.UNAVAILABLE, "no agent offers the skill"),
    ErrorKind("agent_unavailable", 502, -32051, grpc.StatusCode.UNAVAILABLE, "agent call failed"),
    ErrorKind("agent_failed", 502, -32052, grpc.StatusCode.ABORTED, "agent reported failure"),
    ErrorKind("contract_violation", 502, -32053, grpc.StatusCode.DATA_LOSS, "output fails its contract"),
    ErrorKind("upstream_unavailable", 502, -32054, grpc.StatusCode.UNAVAILABLE, "tool upstream failed"),
    ErrorKind("timeout", 504, -32055, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"),
    ErrorKind("budget_exceeded", 429, -32056, grpc.StatusCode.RESOURCE_EXHAUSTED, "budget spent"),
    ErrorKind("card_invalid", 422, -32057, grpc.StatusCode.FAILED_PRECONDITION, "agent card rejected"),
    # Orchestration: a request delegated too deep, an output the workflow does not trust, human reviews.
    ErrorKind(
        "delegation_depth_exceeded", 508, -32058, grpc.StatusCode.FAILED_PRECONDITION, "delegated too deep"
    ),
    ErrorKind("low_confidence", 502, -32059, grpc.StatusCode.ABORTED, "output below required confidence"),
    ErrorKind("review_not_pending", 409, -32060, grpc.StatusCode.FAILED_PRECONDITION, "run awaits no review"),
    ErrorKind("review_rejected", 409, -32061, grpc.StatusCode.ABORTED, "a reviewer rejected the output"),
    ErrorKind("insufficient_results", 502, -32062, grpc.StatusCode.ABORTED, "too few steps completed"),
    ErrorKind(
        "approval_not_pending", 409, -32063, grpc.StatusCode.FAILED_PRECONDITION, "no such pending approval"
    ),
    ErrorKind("approval_rejected", 409, -32064, grpc.StatusCode.ABORTED, "an approver rejected it"),
    # A tool asked its caller for input (elicitation, sampling, roots) the caller could not or did not give.
    ErrorKind("input_unavailable", 409, -32065, grpc.StatusCode.FAILED_PRECONDITION, "input not given"),
    # Agent Card trust: the registering caller is fine, the card it points at is not (hence 422, not 401).
    ErrorKind("card_unsigned", 422, -32070, _REFUSED_CARD, "agent card is not signed"),
    ErrorKind("card_signature_invalid", 422, -32071, _REFUSED_CARD, "card signature is invalid"),
    ErrorKind("card_signer_unknown", 422, -32072, _REFUSED_CARD, "card signer is not trusted"),
    ErrorKind("card_algorithm_not_allowed", 422, -32073, _REFUSED_CARD, "card signing algorithm refused"),
    ErrorKind("card_origin_mismatch", 422, -32074, _REFUSED_CARD, "card interfaces are not at its origin"),
    ErrorKind("card_drift", 409, -32075, _REFUSED_CARD, "card changed without a new version"),
    # Registration: where the registry may fetch from, and whose names an agent may take.
    ErrorKind("target_forbidden", 403, -32076, grpc.StatusCode.PERMISSION_DENIED, "address not allowed"),
    ErrorKind("name_confusable", 409, -32077, grpc.StatusCode.ALREADY_EXISTS, "name looks like another"),
    ErrorKind("agent_shadowing", 409, -32078, grpc.StatusCode.ALREADY_EXISTS, "another owner's name"),
    ErrorKind("internal_error", 500, -32603, grpc.StatusCode.INTERNAL, "internal error"),
)

ERROR_TABLE: dict[str, ErrorKind] = {kind.reason: kind for kind in _KINDS}


class AccordError(Exception):
    """An error with a stable reason code; `detail` is safe to show to the caller."""

    def __init__(self, reason: str, detail: str | None = None, **context: Any) -> None:
        if reason not in ERROR_TABLE:
            raise ValueError(f"unknown reason code {reason!r}")
        self.kind = ERROR_TABLE[reason]
        self.reason = reason
        self.detail = detail or self.kind.summary
        self.context = context
        super().__init__(f"{reason}: {self.detail}")

    def to_body(self) -> dict[str, Any]:
        """The JSON error body shared by every REST endpoint."""
        body: dict[str, Any] = {"error": {"reason": self.reason, "message": self.detail}}
        if self.context:
            body["error"]["context"] = self.context
        return body


class Refusal(AccordError):
    """A refused call: `cause` refines the reason (a token error's cause, say), `scope` names the scope
    an `insufficient_scope` refusal lacked (for the Bearer challenge)."""

    def __init__(
        self, reason: str, detail: str | None = None, cause: str | None = None, scope: str | None = None
    ) -> None:
        super().__init__(reason, detail)
        self.cause = cause
        self.scope = scope


def as_accord_error(exc: BaseException) -> AccordError:
    """Map any exception to an AccordError without leaking its text."""
    if isinstance(exc, AccordError):
        return exc
    return AccordError("internal_error")
