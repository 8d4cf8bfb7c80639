"""The registry's domain: register agents from their cards, refresh them, discover them, remove them.

REST and gRPC both call this class, so the rules (and their audit trail) exist once. Every registration,
refresh, quarantine, refusal and removal is written to the hash-chained audit log with its reason code.

Who may write (`Caller`): an operator presenting the admin credential registers any agent with its AI
inventory entry and removes any agent. Without it, an agent may register (and remove) only itself, and
only in local mode (`self_registration`): its card URL must lead to the very address the request comes
from (checked on the resolved, pinned address), and its card must be signed by a trusted publisher like
every card. Such an agent is owned by `self_owner` with an unassessed risk until an operator registers it
with an inventory entry. In-process callers passing a plain actor string are trusted as operators.

A new card URL whose card is refused leaves the registry unchanged. A registered agent's card is fetched
again from its registered URL on every refresh (and on re-registration); when that card fails
verification or drifts (`registry.drift`), the agent is quarantined: out of discovery, its last good card
kept, until a good card is served again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from a2a.types import AgentCard

from accord.audit import AuditEvent, AuditLog
from accord.cards import card_from_dict
from accord.errors import AccordError
from registry.card_intake import CardIntake
from registry.drift import check_drift
from registry.inventory import UNASSESSED, Inventory, PolicyScopes, requested_inventory
from registry.pinned_fetch import same_host
from registry.store import (
    QUARANTINED,
    AgentDraft,
    AgentRecord,
    AgentStore,
    Confusable,
    NameTaken,
    NotRegistered,
    PutOutcome,
    Shadowing,
)
from registry.targets import IPAddress

logger = logging.getLogger(__name__)

REGISTER = "agent.register"
REFRESH = "agent.refresh"
REMOVE = "agent.remove"
REFRESHER = "registry:refresher"

# The card could not be fetched: that says nothing about the card, so it quarantines nothing.
_FETCH_FAILURES = frozenset({"agent_unavailable", "timeout"})


DEFAULT_SELF_OWNER = "local"


@dataclass(frozen=True)
class Registration:
    record: AgentRecord
    created: bool


@dataclass(frozen=True)
class Caller:
    """Who asks: `admin` when the request carried the admin credential; `peer` is its network address."""

    actor: str
    admin: bool = False
    peer: str | None = None

    def peer_address(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.peer) if self.peer else None
        except ValueError:
            return None


def _caller(actor: str | Caller) -> Caller:
    # In-process callers (tests, tools on the registry's own host) hold the database anyway.
    return actor if isinstance(actor, Caller) else Caller(actor, admin=True)


class Catalog:
    """The agent catalog. `start` is idempotent: the HTTP lifespan and the gRPC server both call it."""

    def __init__(
        self,
        store: AgentStore,
        audit: AuditLog,
        intake: CardIntake,
        policies: PolicyScopes | None = None,
        self_registration: bool = False,
        self_owner: str = DEFAULT_SELF_OWNER,
    ) -> None:
        self._store = store
        self._audit = audit
        self._intake = intake
        self._policies = policies
        self._self_registration = self_registration
        self._self_owner = self_owner
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._start_lock:
            if not self._started:
                await self._store.initialize()
                await self._audit.initialize()
                self._started = True

    async def ready(self) -> bool:
        return await self._store.ping()

    async def register(
        self, card_url: str, actor: str | Caller, fields: dict[str, Any] | None = None
    ) -> Registration:
        """Register the agent whose card is at `card_url`; from a registered URL this is a refresh (which,
        from an operator with `fields`, also replaces the inventory entry). `fields`: owner, policy,
        purpose, model, model_version, risk, review_date (see `registry.inventory`)."""
        caller = _caller(actor)
        details: dict[str, Any] = {"card_url": card_url}
        if fields:
            details["owner"] = fields.get("owner")
        try:
            expect = self._authorize_register(caller, fields)
            requested = self._requested(fields) if fields else None
        except AccordError as error:
            await self._refused(REGISTER, caller.actor, error, details)
            raise
        known = await self._store.get_by_url(card_url)
        if known is not None:
            record = await self._refresh(known, caller.actor, REGISTER, explicit=True, inventory=requested)
            return Registration(record, created=False)
        try:
            draft = await self._intake.take(card_url, expect_address=expect, probe=True)
            details["name"] = draft.name
            details["signer"] = draft.signer
            inventory = requested or self._self_inventory(card_from_dict(dict(draft.card)))
            record, outcome = await self._put(replace(draft, inventory=inventory), create=True)
        except AccordError as error:
            await self._refused(REGISTER, caller.actor, error, details)
            raise
        details["skills"] = list(record.skill_ids)
        await self._audit.append(AuditEvent(caller.actor, REGISTER, outcome.value, details=details))
        return Registration(record, created=outcome is PutOutcome.CREATED)

    def _authorize_register(self, caller: Caller, fields: dict[str, Any] | None) -> IPAddress | None:
        """None for an operator; for an agent registering itself, the address its card URL must lead to."""
        if caller.admin:
            return None
        if fields:
            raise AccordError("unauthenticated", "an inventory entry needs the admin credential")
        return self._self_address(caller)

    def _self_address(self, caller: Caller) -> IPAddress:
        if not self._self_registration:
            raise AccordError("unauthenticated", "admin credentials required (self-registration is off)")
        peer = caller.peer_address()
        if peer is None:
            raise AccordError("unauthenticated", "the caller's address is unknown")
        return peer

    def _requested(self, fields: dict[str, Any]) -> Inventory:
        inventory = requested_inventory(fields, datetime.now(UTC).date())
        if self._policies is None or not self._policies.known(inventory.policy):
            raise AccordError("invalid_input", f"no tool policy entry named {inventory.policy!r}")
        return self._policies.with_access(inventory)

    def _self_inventory(self, card: AgentCard) -> Inventory:
        inventory = Inventory(
            owner=self._self_owner, policy=card.name, purpose=card.description, risk=UNASSESSED
        )
        return self._policies.with_access(inventory) if self._policies else inventory

    async def _put(self, draft: AgentDraft, create: bool) -> tuple[AgentRecord, PutOutcome]:
        """Store the draft; the store's conflicts become reason-coded refusals."""
        try:
            return await self._store.put(draft, datetime.now(UTC), create=create)
        except NameTaken as exc:
            raise AccordError("conflict", f"agent {exc.name!r} is registered from another card URL") from exc
        except Shadowing as exc:
            raise AccordError(
                "agent_shadowing",
                f"{exc.subject} {exc.wanted!r} is, or looks like, {exc.existing!r} of another owner",
                existing=exc.existing,
            ) from exc
        except Confusable as exc:
            raise AccordError(
                "name_confusable",
                f"{exc.subject} {exc.wanted!r} looks like {exc.existing!r} of the same owner",
                existing=exc.existing,
            ) from exc

    async def refresh(self, name: str, actor: str) -> AgentRecord:
        """Fetch the agent's card again from its registered URL and verify it; see the module docstring."""
        return await self._refresh(await self.get(name), actor, REFRESH, explicit=True)

    async def refresh_all(self) -> None:
        """One pass of the periodic refresher over every agent, quarantined ones included."""
        for record in await self._store.all_agents():
            try:
                await self._refresh(record, REFRESHER, REFRESH, explicit=False)
            except AccordError as error:
                logger.info("refresh refused", extra={"agent": record.name, "reason": error.reason})
            except Exception:
                logger.exception("refresh failed", extra={"agent": record.name})

    async def refresh_periodically(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh_all()

    async def _refresh(
        self,
        record: AgentRecord,
        actor: str,
        action: str,
        explicit: bool,
        inventory: Inventory | None = None,
    ) -> AgentRecord:
        """Refresh from the registered URL. The periodic refresher (`explicit=False`) audits changes only,
        so an agent that stays the same, stays down or stays quarantined does not flood the audit log.
        `inventory` replaces the stored entry; otherwise its data access is re-read from the policy."""
        details: dict[str, Any] = {"card_url": record.card_url, "name": record.name}
        try:
            draft = await self._intake.take(record.card_url)
            details["signer"] = draft.signer
            check_drift(record, draft)
        except AccordError as error:
            if error.reason in _FETCH_FAILURES:
                if explicit:
                    await self._refused(action, actor, error, details)
                raise
            await self._quarantine(record, actor, action, error, details, explicit)
            context = {**error.context, "status": QUARANTINED}
            raise AccordError(error.reason, error.detail, **context) from error
        entry = inventory or record.inventory
        if entry is not None and self._policies is not None:
            entry = self._policies.with_access(entry)
        if inventory is not None:
            details["owner"] = inventory.owner
        try:
            updated, outcome = await self._put(replace(draft, inventory=entry), create=False)
        except NotRegistered as exc:
            raise AccordError("not_found", f"no agent named {record.name!r}") from exc
        except AccordError as error:
            # The card is fine, but (with a new owner, or new skills) it collides with another agent.
            if explicit:
                await self._refused(action, actor, error, details)
            raise
        if explicit or outcome is not PutOutcome.UNCHANGED:
            details["skills"] = list(updated.skill_ids)
            await self._audit.append(AuditEvent(actor, action, outcome.value, details=details))
        return updated

    async def _quarantine(
        self,
        record: AgentRecord,
        actor: str,
        action: str,
        error: AccordError,
        details: dict[str, Any],
        explicit: bool,
    ) -> None:
        if await self._store.quarantine(record.name, datetime.now(UTC)) is None:
            raise AccordError("not_found", f"no agent named {record.name!r}")
        if explicit or record.status != QUARANTINED:
            event = AuditEvent(actor, action, QUARANTINED, reason=error.reason, details=details)
            await self._audit.append(event)
        logger.warning("agent quarantined", extra={"agent": record.name, "reason": error.reason})

    async def get(self, name: str) -> AgentRecord:
        record = await self._store.get(name)
        if record is None:
            raise AccordError("not_found", f"no agent named {name!r}")
        return record

    async def all_agents(self) -> list[AgentRecord]:
        return await self._store.all_agents()

    async def discover(self, skill: str | None = None, tag: str | None = None) -> list[AgentRecord]:
        """Active agents whose current card offers `skill` and/or a skill tagged `tag`; blank means any."""
        return await self._store.discover(skill or None, tag or None)

    async def remove(self, name: str, actor: str | Caller) -> None:
        """Remove an agent: an operator any, an agent (in local mode) only itself."""
        caller = _caller(actor)
        details = {"name": name}
        try:
            await self._authorize_remove(caller, name)
            if not await self._store.remove(name):
                raise AccordError("not_found", f"no agent named {name!r}")
        except AccordError as error:
            await self._refused(REMOVE, caller.actor, error, details)
            raise
        await self._audit.append(AuditEvent(caller.actor, REMOVE, "removed", details=details))

    async def _authorize_remove(self, caller: Caller, name: str) -> None:
        if caller.admin:
            return
        peer = self._self_address(caller)
        record = await self._store.get(name)
        if record is None:
            # Reads are open, so saying that the name is not registered discloses nothing.
            raise AccordError("not_found", f"no agent named {name!r}")
        try:
            hop = await self._intake.fetcher.check(record.card_url)
        except AccordError as exc:
            raise AccordError("unauthenticated", "admin credentials required") from exc
        if not same_host(hop.address, peer):
            raise AccordError("unauthenticated", "an agent may remove only itself; admin credentials needed")

    async def refused(self, action: str, actor: str, error: AccordError, details: dict[str, Any]) -> None:
        """Audit a refusal decided before the catalog was asked (e.g. a wrong admin credential)."""
        await self._refused(action, actor, error, details)

    async def _refused(self, action: str, actor: str, error: AccordError, details: dict[str, Any]) -> None:
        event = AuditEvent(actor, action, "refused", reason=error.reason, details=details)
        await self._audit.append(event)
