"""The audit trail of tool calls: one hash-chained record per call, whatever its outcome.

Records hold a digest of the arguments, never the arguments themselves (they carry personal data), and never
a token: the digest lets an investigator confirm what was sent without the trail becoming a data store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import rfc8785

from accord.audit import AuditEvent, AuditLog

ACTION = "tools/call"
# Caller-chosen strings are clipped so a hostile tool name cannot bloat the trail.
_MAX_NAME = 256


class Outcome(StrEnum):
    OK = "ok"  # the upstream answered (its answer may still be a tool error)
    INPUT_REQUIRED = "input_required"  # the upstream asked the caller for input; the caller retries
    CANCELLED = "cancelled"  # the caller went away while the upstream had the call
    DENIED = "denied"  # the authorizer refused the call
    REJECTED = "rejected"  # the call named no known tool
    FAILED = "failed"  # the upstream, or the gateway itself, could not serve the call


def argument_digest(arguments: Mapping[str, Any]) -> str:
    """sha256 of the RFC 8785 canonical JSON of the arguments."""
    plain = dict(arguments)
    try:
        canonical = rfc8785.dumps(plain)
    except (rfc8785.CanonicalizationError, TypeError):
        # Values outside JSON's safe domain (NaN, huge integers) still need a stable digest.
        canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=repr).encode()
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class ToolCallRecord:
    """What the trail keeps about one call."""

    tool: str
    upstream: str | None
    arguments_sha256: str
    outcome: Outcome
    duration_ms: float
    trace_id: str
    principal: str
    reason: str | None = None
    run_id: str | None = None
    tool_error: bool | None = None
    # Who and under what: the calling client, the principal it acts for, its task grant, and the policy
    # rule that decided (None where no rule was reached).
    client_id: str | None = None
    subject: str | None = None
    grant_id: str | None = None
    task: str | None = None
    rule: str | None = None
    detail: str | None = None


class ToolCallAudit:
    """Writes `ToolCallRecord`s to the service's `AuditLog`."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def record(self, entry: ToolCallRecord) -> None:
        details: dict[str, Any] = {
            "tool": entry.tool[:_MAX_NAME],
            "upstream": entry.upstream,
            "arguments_sha256": entry.arguments_sha256,
            "duration_ms": round(entry.duration_ms, 3),
        }
        if entry.tool_error is not None:
            details["tool_error"] = entry.tool_error
        labels = {
            "client_id": entry.client_id,
            "subject": entry.subject,
            "grant_id": entry.grant_id,
            "task": entry.task,
            "rule": entry.rule,
            "detail": entry.detail,
        }
        details.update({name: value[:_MAX_NAME] for name, value in labels.items() if value is not None})
        await self._log.append(
            AuditEvent(
                actor=entry.principal[:_MAX_NAME],
                action=ACTION,
                outcome=entry.outcome.value,
                reason=entry.reason,
                trace_id=entry.trace_id,
                run_id=entry.run_id,
                details=details,
            )
        )
