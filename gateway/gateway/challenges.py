"""How `/mcp` refuses a request (MCP authorization spec 2025-11-25, RFC 6750 §3, RFC 9728 §5.1).

* no, invalid, expired, wrong-audience or untrusted token, or a revoked task grant: 401 with
  `WWW-Authenticate: Bearer error="invalid_token", error_description=..., resource_metadata=...`
* a valid token without the tool's scope: 403 with `error="insufficient_scope", scope="tool:<name>"`
* a policy or argument-constraint denial: 403 (no challenge: another token would not help)
* a rate-limited client: 429 with `Retry-After`

The body is always a JSON-RPC error whose `code` comes from the error table and whose `data.reason` is
the reason code, so a caller that reads only the body still learns why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Send

from accord.bearer import bearer_challenge
from accord.errors import AccordError


@dataclass(frozen=True)
class Rejection:
    """A refused request: the error and what the response must carry besides it."""

    error: AccordError
    scope: str | None = None  # the missing scope, for insufficient_scope
    retry_after_s: float | None = None
    cause: str | None = None  # the token error's precise cause, for the audit trail
    rule: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return self.error.kind.http_status

    def headers(self, resource_metadata: str) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
        challenge = bearer_challenge(self.error, self.scope, resource_metadata)
        if challenge is not None:
            headers.append((b"www-authenticate", challenge.encode()))
        if self.retry_after_s is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(self.retry_after_s))).encode()))
        return headers


def jsonrpc_error(request_id: object, error: AccordError) -> dict[str, Any]:
    # Only ids JSON-RPC allows are echoed; anything else is answered with null.
    echoed = request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None
    return {
        "jsonrpc": "2.0",
        "id": echoed,
        "error": {"code": error.kind.jsonrpc_code, "message": error.detail, "data": {"reason": error.reason}},
    }


async def send_rejection(
    send: Send, rejection: Rejection, request_id: object, resource_metadata: str
) -> None:
    body = json.dumps(jsonrpc_error(request_id, rejection.error), separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *rejection.headers(resource_metadata),
    ]
    await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
