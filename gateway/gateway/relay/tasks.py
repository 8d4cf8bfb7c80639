"""The tasks the relay created, whose they are, and the grant each one runs under.

A caller may read, cancel and subscribe to the tasks it created through the relay only; others are not
found. A task's grant is revoked as soon as the relay sees the task reach a terminal state (on the reply
that ends it, or on a later read); otherwise it ends at its deadline. The register is per gateway replica
and bounded: entries are forgotten once their grant and signature would be long expired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from a2a.types import TaskState

from accord.errors import AccordError
from gateway.oauth.grants import GrantAuthority, IssuedGrant
from gateway.relay.envelopes import Step

logger = logging.getLogger(__name__)

TERMINAL_STATES = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
_MAX_ENTRIES = 50_000
_KEEP_AFTER_S = 3600.0


@dataclass
class StepGrant:
    """The grant of one relayed step, and whether it has been revoked yet."""

    issued: IssuedGrant
    revoked: bool = False
    revoke_error: str | None = None

    def record(self) -> dict[str, Any]:
        """What the caller learns about the grant (ids and scopes; never the grant itself)."""
        grant = self.issued.grant
        record: dict[str, Any] = {
            "grant_id": grant.grant_id,
            "scopes": sorted(grant.scopes),
            "dropped_scopes": sorted(self.issued.dropped_scopes),
            "expires_at": grant.expires_at,
            "revoked": self.revoked,
        }
        if self.revoke_error is not None:
            record["revoke_error"] = self.revoke_error
        return record


@dataclass
class RelayedTask:
    step: Step
    grant: StepGrant | None = None
    forget_at: float = field(default_factory=lambda: time.monotonic() + _KEEP_AFTER_S)


class RelayedTasks:
    def __init__(self, grants: GrantAuthority, clock: Callable[[], float] = time.monotonic) -> None:
        self._grants = grants
        self._clock = clock
        self._tasks: dict[str, RelayedTask] = {}

    def remember(self, task_id: str, entry: RelayedTask) -> None:
        if task_id in self._tasks:
            return
        if len(self._tasks) >= _MAX_ENTRIES:
            now = self._clock()
            self._tasks = {k: v for k, v in self._tasks.items() if v.forget_at > now}
            if len(self._tasks) >= _MAX_ENTRIES:
                for stale in list(self._tasks)[: _MAX_ENTRIES // 2]:
                    del self._tasks[stale]
        self._tasks[task_id] = entry

    def owned(self, task_id: str, caller: str, agent: str) -> RelayedTask | None:
        entry = self._tasks.get(task_id)
        if entry is None or entry.step.caller != caller or entry.step.agent != agent:
            return None
        return entry

    def owned_by(self, caller: str, agent: str) -> set[str]:
        return {
            task_id for task_id, e in self._tasks.items() if (e.step.caller, e.step.agent) == (caller, agent)
        }

    async def settle(self, grant: StepGrant | None, state: int, actor: str) -> None:
        """Revoke the grant once its task is over (harmless when already revoked)."""
        if grant is not None and state in TERMINAL_STATES:
            await self.revoke(grant, actor)

    async def revoke(self, grant: StepGrant, actor: str) -> None:
        if grant.revoked:
            return
        try:
            await self._grants.revoke(grant.issued.grant.grant_id, actor=actor)
        except AccordError as error:
            # The grant still ends at its deadline; the caller's record says revocation failed.
            grant.revoke_error = error.reason
            logger.warning("grant revocation failed", extra={"grant_id": grant.issued.grant.grant_id})
            return
        grant.revoked = True
