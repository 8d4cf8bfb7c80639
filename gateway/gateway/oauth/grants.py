"""Task grants: just-in-time tool permissions for one workflow step.

When the relay dispatches a step, the agent gets a grant for exactly that step's tool scopes, cut down to
the agent's policy (a `ScopeBound`: the gateway's tool policy, or the client's registered `grant_scopes`
where no policy is wired) and ending at the step's deadline. A grant also carries the step's `bindings`
(e.g. the one account a ledger step may read), which argument constraints compare tool arguments with.
The grant is a signed JWT (`typ: accord-grant+jwt`) that only this authorization server accepts, as the
subject token of an RFC 8693 exchange. Revoking a grant (when its task ends) stops it at once on every
replica: the revocation list is shared through Redis when configured.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.audit import AuditEvent, AuditLog
from accord.errors import AccordError
from accord.keys import Clock, KeyRing
from accord.storage import add_missing_columns
from accord.tokens import AccessClaims, TokenError, act_chain_of, act_claim, sign_jwt, verify_jwt
from gateway.oauth.clients import ClientRegistry, OAuthClient

GRANT_TYP = "accord-grant+jwt"
GRANT_TOKEN_TYPE = "urn:accord:params:oauth:token-type:grant"  # noqa: S105 (a URN)
_GRANT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "resource", "wf", "task")
_BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_BINDINGS = 32
MAX_BINDING_CHARS = 256
MAX_TOOL_CALL_LIMIT = 1_000_000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")

_metadata = MetaData()
grants_table = Table(
    "oauth_grants",
    _metadata,
    Column("grant_id", String(64), primary_key=True),
    Column("agent", String(128), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("delegated_by", String(128), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("wf", String(128), nullable=False, index=True),
    Column("task", String(128), nullable=False, index=True),
    Column("audience", String(512), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("skill", String(128), nullable=True),
    Column("bindings", JSON, nullable=True),
    # The run's limit on tool calls, which `/mcp` enforces per run (`gateway.run_budget`).
    Column("tool_call_limit", Integer, nullable=True),
)
# Columns added after the first release: created on existing databases at startup.
_ADDED_COLUMNS = {"skill": "VARCHAR(128)", "bindings": "JSON", "tool_call_limit": "INTEGER"}


class GrantError(AccordError):
    """A grant was refused (`invalid_token`); `cause` is a token cause, `revoked` or `unknown_grant`."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__("invalid_token", detail)
        self.cause = cause


@dataclass(frozen=True)
class TaskGrant:
    grant_id: str
    agent: str
    subject: str
    delegated_by: str
    scopes: frozenset[str]
    wf: str
    task: str
    audience: str
    issued_at: float
    expires_at: float
    revoked: bool = False
    skill: str | None = None
    bindings: Mapping[str, Any] = field(default_factory=dict)
    tool_call_limit: int | None = None


@dataclass(frozen=True)
class IssuedGrant:
    grant: TaskGrant
    token: str
    dropped_scopes: frozenset[str]


class ScopeBound(Protocol):
    """Which of the requested scopes a client may hold through a grant (its tool policy)."""

    def grantable(self, client: OAuthClient, scopes: frozenset[str]) -> frozenset[str]: ...


class RegisteredGrantScopes:
    """The bound where no tool policy is wired: the client's registered `grant_scopes`."""

    def grantable(self, client: OAuthClient, scopes: frozenset[str]) -> frozenset[str]:
        return scopes & client.grant_scopes


def checked_bindings(bindings: object) -> dict[str, Any]:
    """Bindings as a grant stores them: a small flat object of named JSON scalars."""
    if bindings is None:
        return {}
    if not isinstance(bindings, Mapping) or len(bindings) > MAX_BINDINGS:
        raise AccordError("invalid_input", f"bindings must be an object of at most {MAX_BINDINGS} entries")
    for name, value in bindings.items():
        if not isinstance(name, str) or not _BINDING_NAME.match(name):
            raise AccordError("invalid_input", "binding names are identifiers of at most 64 characters")
        if isinstance(value, str):
            if len(value) > MAX_BINDING_CHARS:
                raise AccordError("invalid_input", f"binding {name} is longer than {MAX_BINDING_CHARS}")
        elif not isinstance(value, bool | int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise AccordError("invalid_input", f"binding {name} must be a string, number or boolean")
    return dict(bindings)


class RevocationList(Protocol):
    async def revoke(self, grant_id: str, expires_at: float) -> None:
        """Mark a grant revoked until it would have expired anyway."""
        ...

    async def is_revoked(self, grant_id: str) -> bool: ...


class MemoryRevocationList:
    """Per-process revocations: right for a single gateway replica."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._revoked: dict[str, float] = {}
        self._clock = clock

    async def revoke(self, grant_id: str, expires_at: float) -> None:
        now = self._clock()
        self._revoked = {g: t for g, t in self._revoked.items() if t > now}
        self._revoked[grant_id] = expires_at

    async def is_revoked(self, grant_id: str) -> bool:
        return grant_id in self._revoked


class RedisRevocationList:
    """Revocations shared by every replica; each key lives until its grant would have expired."""

    def __init__(self, redis: Redis, prefix: str = "accord:gateway:revoked-grant:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def revoke(self, grant_id: str, expires_at: float) -> None:
        # One extra second covers clock skew between replicas at the very end of the grant's life.
        ttl_ms = max(1000, math.ceil((expires_at - time.time() + 1) * 1000))
        await self._redis.set(self._prefix + grant_id, "1", px=ttl_ms)

    async def is_revoked(self, grant_id: str) -> bool:
        return bool(await self._redis.exists(self._prefix + grant_id))


def _from_row(row: RowMapping) -> TaskGrant:
    return TaskGrant(
        grant_id=row["grant_id"],
        agent=row["agent"],
        subject=row["subject"],
        delegated_by=row["delegated_by"],
        scopes=frozenset(row["scopes"]),
        wf=row["wf"],
        task=row["task"],
        audience=row["audience"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        revoked=row["revoked"],
        skill=row["skill"],
        bindings=dict(row["bindings"] or {}),
        tool_call_limit=row["tool_call_limit"],
    )


class GrantAuthority:
    """Issues, verifies and revokes task grants; every decision is audited."""

    def __init__(
        self,
        ring: KeyRing,
        issuer: str,
        engine: AsyncEngine,
        clients: ClientRegistry,
        revocations: RevocationList,
        audit: AuditLog,
        max_lifetime_s: int = 900,
        clock: Clock = time.time,
        bound: ScopeBound | None = None,
    ) -> None:
        self._ring = ring
        self.bound: ScopeBound = bound or RegisteredGrantScopes()
        self._issuer = issuer
        self._engine = engine
        self._clients = clients
        self._revocations = revocations
        self._audit = audit
        self._max_lifetime_s = max_lifetime_s
        self._clock = clock

    async def initialize(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)
            await conn.run_sync(add_missing_columns, grants_table, _ADDED_COLUMNS)

    async def issue_grant(
        self,
        agent: str,
        scopes: Iterable[str],
        wf: str,
        task: str,
        deadline: float,
        audience: str,
        delegated_by: str,
        subject: str | None = None,
        skill: str | None = None,
        bindings: Mapping[str, Any] | None = None,
        tool_call_limit: int | None = None,
    ) -> IssuedGrant:
        """A grant for `agent` to use `scopes` ∩ its policy for task `task` of workflow `wf` until `deadline`.

        `delegated_by` is the orchestrator client that dispatches the step; `subject` is the principal the
        work is done for (the orchestrator itself when not given); `skill` names the step's skill and
        `bindings` the values its tool arguments are held to; `tool_call_limit` the run's budget of tool
        calls, which every token exchanged from the grant carries for `/mcp` to enforce.
        """
        requested = frozenset(scopes)
        try:
            grant, dropped = await self._bounded_grant(
                agent, requested, wf, task, deadline, audience, delegated_by, subject, skill, bindings
            )
            if tool_call_limit is not None:
                if isinstance(tool_call_limit, bool) or not 0 <= tool_call_limit <= MAX_TOOL_CALL_LIMIT:
                    raise AccordError("invalid_input", "the tool-call budget must be a whole number >= 0")
                grant = replace(grant, tool_call_limit=tool_call_limit)
        except AccordError as exc:
            await self._record(
                "oauth.grant.issue",
                delegated_by,
                "denied",
                wf,
                exc.reason,
                agent=agent,
                task=task,
                scopes=sorted(requested),
                detail=exc.detail,
            )
            raise
        token = sign_jwt(self._ring, self._claims(grant), GRANT_TYP)
        async with self._engine.begin() as conn:
            await conn.execute(grants_table.insert().values(**self._row(grant)))
        await self._record(
            "oauth.grant.issue",
            delegated_by,
            "allowed",
            wf,
            grant_id=grant.grant_id,
            agent=agent,
            task=task,
            skill=skill,
            scopes=sorted(grant.scopes),
            dropped_scopes=sorted(dropped),
            binding_names=sorted(grant.bindings),
            expires_at=grant.expires_at,
            tool_call_limit=grant.tool_call_limit,
        )
        return IssuedGrant(grant=grant, token=token, dropped_scopes=dropped)

    async def _bounded_grant(
        self,
        agent: str,
        requested: frozenset[str],
        wf: str,
        task: str,
        deadline: float,
        audience: str,
        delegated_by: str,
        subject: str | None,
        skill: str | None,
        bindings: Mapping[str, Any] | None,
    ) -> tuple[TaskGrant, frozenset[str]]:
        if not wf or not task:
            raise AccordError("invalid_input", "a grant needs a workflow and a task id")
        if not all(_ID.match(value) for value in (wf, task, *((skill,) if skill is not None else ()))):
            raise AccordError("invalid_input", "wf, task and skill are identifiers of at most 128 characters")
        bound_values = checked_bindings(bindings)
        delegator = await self._clients.get(delegated_by)
        if delegator is None or delegator.kind != "orchestrator":
            raise AccordError("policy_denied", "only a registered orchestrator can delegate")
        client = await self._clients.get(agent)
        if client is None or client.kind != "agent":
            raise AccordError("policy_denied", f"{agent} is not a registered agent")
        scopes = self.bound.grantable(client, requested)
        if not scopes:
            raise AccordError("policy_denied", f"the policy of {agent} allows none of the requested scopes")
        now = self._clock()
        if deadline <= now:
            raise AccordError("invalid_input", "the step deadline has already passed")
        grant = TaskGrant(
            grant_id=uuid.uuid4().hex,
            agent=agent,
            subject=subject or delegated_by,
            delegated_by=delegated_by,
            scopes=scopes,
            wf=wf,
            task=task,
            audience=audience,
            issued_at=now,
            expires_at=min(deadline, now + self._max_lifetime_s),
            skill=skill,
            bindings=bound_values,
        )
        return grant, requested - scopes

    def _claims(self, grant: TaskGrant) -> dict[str, Any]:
        # The grant's audience is this authorization server: nobody else may accept it. The resource it
        # unlocks travels in its own claim.
        return {
            "iss": self._issuer,
            "sub": grant.subject,
            "aud": self._issuer,
            "client_id": grant.agent,
            "act": act_claim([grant.delegated_by]),
            "scope": " ".join(sorted(grant.scopes)),
            "resource": grant.audience,
            "wf": grant.wf,
            "task": grant.task,
            "iat": int(grant.issued_at),
            # Rounded down so the JWT never outlives the deadline.
            "exp": math.floor(grant.expires_at),
            "jti": grant.grant_id,
            **({"skill": grant.skill} if grant.skill else {}),
            **({"bindings": dict(grant.bindings)} if grant.bindings else {}),
            **({"tool_call_limit": grant.tool_call_limit} if grant.tool_call_limit is not None else {}),
        }

    @staticmethod
    def _row(grant: TaskGrant) -> dict[str, Any]:
        return {
            "grant_id": grant.grant_id,
            "agent": grant.agent,
            "subject": grant.subject,
            "delegated_by": grant.delegated_by,
            "scopes": sorted(grant.scopes),
            "wf": grant.wf,
            "task": grant.task,
            "audience": grant.audience,
            "issued_at": grant.issued_at,
            "expires_at": grant.expires_at,
            "revoked": grant.revoked,
            "skill": grant.skill,
            "bindings": dict(grant.bindings),
            "tool_call_limit": grant.tool_call_limit,
        }

    async def verify_grant(self, token: str) -> TaskGrant:
        """The grant behind a grant JWT, if its signature, issuer, expiry and revocation status allow."""
        try:
            claims = verify_jwt(
                token,
                self._ring,
                algorithms=frozenset({key.alg for key in self._ring.verification_keys()}),
                typ=GRANT_TYP,
                issuers=[self._issuer],
                audience=self._issuer,
                leeway_s=0,  # an expired grant stops working at once
                required=_GRANT_CLAIMS,
            )
        except TokenError as exc:
            raise GrantError(exc.cause, exc.detail) from exc
        grant_id = str(claims["jti"])
        stored = await self.get(grant_id)
        if stored is None:
            raise GrantError("unknown_grant", "grant is unknown")
        if stored.revoked or await self._revocations.is_revoked(grant_id):
            raise GrantError("revoked", "grant has been revoked")
        if stored.expires_at <= self._clock():
            raise GrantError("expired", "grant has expired")
        if act_chain_of(claims) != (stored.delegated_by,) or str(claims["client_id"]) != stored.agent:
            raise GrantError("bad_signature", "grant does not match its record")
        return stored

    async def get(self, grant_id: str) -> TaskGrant | None:
        query = select(grants_table).where(grants_table.c.grant_id == grant_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _from_row(row._mapping) if row is not None else None

    async def is_active(self, grant_id: str) -> bool:
        """Not revoked: one lookup in the shared revocation list."""
        return not await self._revocations.is_revoked(grant_id)

    async def ensure_active(self, claims: AccessClaims) -> None:
        """The per-call check for a verified access token: if it was issued from a grant, that grant must
        not be revoked or expired. Token verification allows clock-skew leeway; this check does not, since
        the token's `exp` never exceeds its grant's, so an expired grant stops working at once."""
        if claims.grant_id is None:
            return
        if claims.exp <= self._clock():
            raise GrantError("expired", "grant has expired")
        if not await self.is_active(claims.grant_id):
            raise GrantError("revoked", "grant has been revoked")

    async def revoke(self, grant_id: str, actor: str = "gateway") -> TaskGrant:
        """Revoke one grant now; revoking twice is harmless. Unknown grants are `not_found`."""
        grant = await self.get(grant_id)
        if grant is None:
            raise AccordError("not_found", "no such grant")
        await self._revoke(grant, actor)
        return grant

    async def revoke_task(self, wf: str, task: str, actor: str = "gateway") -> list[str]:
        """Revoke every grant of a task, e.g. when the task ends; returns the grant ids."""
        query = select(grants_table).where(
            grants_table.c.wf == wf, grants_table.c.task == task, grants_table.c.revoked.is_(False)
        )
        async with self._engine.connect() as conn:
            grants = [_from_row(row._mapping) for row in await conn.execute(query)]
        for grant in grants:
            await self._revoke(grant, actor)
        return [grant.grant_id for grant in grants]

    async def _revoke(self, grant: TaskGrant, actor: str) -> None:
        # The shared list first: it is what every replica checks on the hot path.
        await self._revocations.revoke(grant.grant_id, grant.expires_at)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(grants_table).where(grants_table.c.grant_id == grant.grant_id).values(revoked=True)
            )
        await self._record(
            "oauth.grant.revoke",
            actor,
            "allowed",
            grant.wf,
            grant_id=grant.grant_id,
            agent=grant.agent,
            task=grant.task,
        )

    async def _record(
        self, action: str, actor: str, outcome: str, wf: str, reason: str | None = None, **details: Any
    ) -> None:
        await self._audit.append(
            AuditEvent(actor=actor, action=action, outcome=outcome, reason=reason, run_id=wf, details=details)
        )
