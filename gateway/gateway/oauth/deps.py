"""Everything the OAuth router needs, assembled once per app (no module-level singletons)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.audit import AuditLog
from accord.keys import DEFAULT_ALGORITHM, KeyRing
from accord.tokens import KeyLookup, TokenVerifier
from gateway.oauth.client_auth import ClientAuthenticator
from gateway.oauth.clients import ClientRegistry
from gateway.oauth.config import OAuthConfig
from gateway.oauth.grants import (
    GrantAuthority,
    MemoryRevocationList,
    RedisRevocationList,
    RevocationList,
    ScopeBound,
)
from gateway.oauth.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from gateway.oauth.token_service import TokenService


@dataclass(frozen=True)
class OAuthDeps:
    """Built synchronously (so `create_app` can mount the router), then `initialize`d in the lifespan."""

    config: OAuthConfig
    ring: KeyRing
    clients: ClientRegistry
    grants: GrantAuthority
    replay: ReplayGuard
    audit: AuditLog
    clients_file: Path | None = None
    redis: Redis | None = None

    async def initialize(self) -> None:
        """Create the tables if missing and load the clients file (the audit log is the caller's)."""
        await self.clients.initialize()
        if self.clients_file is not None:
            await self.clients.load_config(self.clients_file)
        await self.grants.initialize()

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    @property
    def authenticator(self) -> ClientAuthenticator:
        return ClientAuthenticator(
            self.clients,
            self.replay,
            # RFC 7523bis: the issuer identifier; RFC 7523 §3: the token endpoint. Both name this server.
            assertion_audiences=frozenset({self.config.issuer, self.config.token_endpoint}),
            max_assertion_lifetime_s=self.config.max_assertion_lifetime_s,
            leeway_s=self.config.leeway_s,
        )

    @property
    def token_service(self) -> TokenService:
        return TokenService(self.config, self.ring, self.grants)

    def access_token_verifier(
        self, audience: str | None = None, trusted_issuers: Mapping[str, KeyLookup] | None = None
    ) -> TokenVerifier:
        """A verifier for tokens addressed to `audience` (the MCP resource by default), trusting this
        server's keys plus any other issuer's keys (e.g. a `RemoteJwksTrust` per OIDC issuer)."""
        trust: dict[str, KeyLookup] = {self.config.issuer: self.ring, **(trusted_issuers or {})}
        return TokenVerifier(
            trust,
            issuers=trust.keys(),
            audience=audience or self.config.mcp_resource,
            leeway_s=self.config.leeway_s,
        )


def build_oauth(
    config: OAuthConfig,
    engine: AsyncEngine,
    audit: AuditLog,
    key_file: Path,
    redis_url: str | None = None,
    clients_file: Path | None = None,
    key_alg: str = DEFAULT_ALGORITHM,
    redis_prefix: str = "accord:gateway:",
    scope_bound: ScopeBound | None = None,
) -> OAuthDeps:
    """The key ring (created in `key_file` on first start), client registry, grant store and, with
    `redis_url`, the revocation list and assertion replay guard shared by all replicas.

    Replicas share state when they share the database, the key file and Redis (and one public issuer URL).
    `scope_bound` is what grants are cut down to (the gateway passes its tool policy).
    """
    redis = Redis.from_url(redis_url) if redis_url else None
    revocations: RevocationList = (
        RedisRevocationList(redis, redis_prefix + "revoked-grant:") if redis else MemoryRevocationList()
    )
    replay: ReplayGuard = RedisReplayGuard(redis, redis_prefix + "jti:") if redis else MemoryReplayGuard()
    ring = KeyRing.load_or_create(key_file, alg=key_alg)
    clients = ClientRegistry(engine)
    grants = GrantAuthority(
        ring,
        config.issuer,
        engine,
        clients,
        revocations,
        audit,
        max_lifetime_s=config.max_grant_lifetime_s,
        bound=scope_bound,
    )
    return OAuthDeps(
        config=config,
        ring=ring,
        clients=clients,
        grants=grants,
        replay=replay,
        audit=audit,
        clients_file=clients_file,
        redis=redis,
    )
