"""A live policy file: loaded at startup (an invalid file stops the gateway), reloaded when it changes.

`watch()` (run for the gateway's lifetime) looks at the file's stat once per interval, traffic or not. A
changed file that validates replaces the policy at once (decisions read `current`, a single attribute);
one that does not is refused, the old policy stays in force, and both outcomes are audited (with the
file's digest or its errors, never its whole content). `PolicyStore` is the tool policy's; the relay's
delegation policy is another `WatchedPolicy`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from accord.audit import AuditEvent, AuditLog
from gateway.policy.document import PolicyError, read_policy_file
from gateway.policy.rules import ToolPolicy

logger = logging.getLogger(__name__)

ACTION = "policy.reload"
_MAX_AUDITED_PROBLEMS = 20
_Signature = tuple[int, int, int] | None


def _signature(path: Path) -> _Signature:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def load_policy(path: Path) -> ToolPolicy:
    document, digest = read_policy_file(path)
    return ToolPolicy(document, digest, str(path))


class Digested(Protocol):
    @property
    def digest(self) -> str: ...


P = TypeVar("P", bound=Digested)


class WatchedPolicy(Generic[P]):
    """One policy file and the policy `loader` made of it (raising `PolicyError` when invalid)."""

    def __init__(
        self,
        path: Path,
        audit: AuditLog,
        loader: Callable[[Path], P],
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._audit = audit
        self._loader = loader
        self._interval = check_interval_s
        self._clock = clock
        self._seen = _signature(path)
        self._policy = loader(path)  # raises PolicyError: a gateway never starts without a policy
        self._checked_at = clock()

    @property
    def current(self) -> P:
        return self._policy

    @property
    def path(self) -> Path:
        return self._path

    async def watch(self) -> None:
        """Reload on change until cancelled; a failure to look never stops the watching."""
        while True:
            await asyncio.sleep(max(self._interval, 0.05))
            try:
                await self.refresh()
            except Exception:
                logger.exception("policy watch failed; retrying", extra={"file": str(self._path)})

    async def refresh(self) -> None:
        """Reload if the file changed since it was last looked at (cheap when not due)."""
        now = self._clock()
        if now - self._checked_at < self._interval:
            return
        self._checked_at = now
        signature = _signature(self._path)
        if signature == self._seen:
            return
        self._seen = signature  # set before any await: concurrent callers do not reload twice
        await self._reload()

    async def _reload(self) -> None:
        try:
            policy = self._loader(self._path)
        except PolicyError as exc:
            logger.error("policy reload refused; the previous policy stays", extra={"file": str(self._path)})
            await self._record("denied", "invalid_input", problems=exc.problems[:_MAX_AUDITED_PROBLEMS])
            return
        previous, self._policy = self._policy, policy
        logger.info("policy reloaded", extra={"file": str(self._path), "sha256": policy.digest})
        await self._record("allowed", None, sha256=policy.digest, previous_sha256=previous.digest)

    async def _record(self, outcome: str, reason: str | None, **details: object) -> None:
        await self._audit.append(
            AuditEvent(
                actor="gateway",
                action=ACTION,
                outcome=outcome,
                reason=reason,
                details={"file": str(self._path), **details},
            )
        )


class PolicyStore(WatchedPolicy[ToolPolicy]):
    """The live tool policy."""

    def __init__(
        self,
        path: Path,
        audit: AuditLog,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(path, audit, load_policy, check_interval_s, clock)
