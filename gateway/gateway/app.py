"""The gateway service: `create_app(settings)` builds it, `python -m gateway` runs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from mcp.server.transport_security import TransportSecuritySettings

from accord.bearer import CachedTokenVerifier, keys_still_trusted
from accord.resource_metadata import resource_metadata_router, resource_metadata_url
from accord.service import create_service_app, service_metrics
from accord.storage import create_engine
from accord.tokens import RemoteJwksTrust, TokenVerifier
from gateway.audit_batch import GroupCommitAuditLog
from gateway.authorization import LayerVerdictAuthorizer
from gateway.federation import MCP_PATH, Federation
from gateway.grant_api import grants_router
from gateway.mcp_guard import GuardConfig, McpGuard
from gateway.oauth import OAuthConfig, OAuthDeps, build_oauth, create_oauth_router
from gateway.policy import PolicyStore, prompts_scope, resources_scope, tool_scope
from gateway.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from gateway.relay import Relay
from gateway.run_budget import MemoryRunToolCalls, RedisRunToolCalls, RunToolCalls
from gateway.settings import GatewaySettings
from gateway.tool_access import (
    PolicyScopeBound,
    policy_read_access,
    policy_visibility,
    subscription_authority,
)
from gateway.upstream_routes import upstreams_router

SERVICE = "gateway"


def oauth_config(settings: GatewaySettings) -> OAuthConfig:
    """The authorization server's view of itself: issuer = the gateway's base URL."""
    admin = settings.gateway_admin_secret
    return OAuthConfig(
        issuer=settings.base_url,
        mcp_resource=settings.mcp_resource,
        # The gateway's own APIs (the grant API) are addressed by its base URL; other resources (the
        # orchestrator's API) by theirs.
        extra_resources=frozenset({settings.base_url, *(r.rstrip("/") for r in settings.gateway_resources)}),
        admin_secret=admin.get_secret_value() if admin is not None else None,
        access_token_lifetime_s=settings.gateway_access_token_lifetime_seconds,
        client_token_lifetime_s=settings.gateway_client_token_lifetime_seconds,
        leeway_s=settings.gateway_token_leeway_seconds,
        allow_http=settings.environment != "production",
    )


def create_app(settings: GatewaySettings, *, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The gateway app: the OAuth 2.1 authorization server (`/oauth/token`, metadata, JWKS, client admin),
    the grant API (`/v1/grants`), the A2A relay (`/a2a/relay/...`; its gRPC server is
    `app.state.relay.grpc_server`), `/mcp` (federated tools behind per-call authorization, with RFC 9728
    metadata), `/v1/upstreams`, health, readiness and metrics. Authorization is always on: `/mcp` denies
    every request without a valid token, and every tool not allowed by the policy file; the relay every
    call not allowed by the delegation policy.

    One `AuditLog` chain records everything: token issuance, grants, policy reloads, every relay decision
    and every tool call decision. `routers` are included before the MCP mount, which would otherwise
    shadow them.
    """
    engine = create_engine(settings.sqlite_url(SERVICE))
    audit_log = GroupCommitAuditLog(engine, SERVICE)
    policy = PolicyStore(settings.gateway_policy_file, audit_log, settings.gateway_policy_reload_seconds)
    config = oauth_config(settings)
    oauth = build_oauth(
        config,
        engine,
        audit_log,
        settings.key_file,
        redis_url=settings.redis_url,
        clients_file=settings.gateway_clients_file,
        scope_bound=PolicyScopeBound(policy),
    )
    trusted = {issuer: RemoteJwksTrust(url) for issuer, url in settings.gateway_trusted_issuers.items()}
    key_trusted = keys_still_trusted({**trusted, config.issuer: oauth.ring})
    verifier = CachedTokenVerifier(
        oauth.access_token_verifier(trusted_issuers=dict(trusted)),
        own_issuer=config.issuer,
        leeway_s=config.leeway_s,
        key_trusted=key_trusted,
    )
    limiter: RateLimiter = RedisRateLimiter(oauth.redis) if oauth.redis is not None else MemoryRateLimiter()
    run_tool_calls: RunToolCalls = (
        RedisRunToolCalls(oauth.redis) if oauth.redis is not None else MemoryRunToolCalls()
    )
    federation = Federation(
        settings,
        audit_log,
        LayerVerdictAuthorizer(),
        policy_visibility(policy),
        policy_read_access(policy),
        subscription_authority(policy, oauth.grants, key_trusted),
    )
    mcp_app = federation.http_app(
        TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=settings.allowed_hosts(),
            allowed_origins=settings.allowed_origins(),
        ),
        settings,
    )
    relay = Relay(settings, oauth, audit_log)
    metadata_url = resource_metadata_url(settings.base_url, MCP_PATH)
    guarded = McpGuard(
        mcp_app,
        GuardConfig(
            path=MCP_PATH,
            resource_metadata_url=metadata_url,
            max_sessions_per_client=settings.gateway_max_sessions_per_client,
        ),
        verifier,
        policy,
        oauth.grants,
        limiter,
        audit_log,
        run_tool_calls,
        federation.names,
        federation.features,
        federation.open_sessions,
        federation.session_seen,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await audit_log.initialize()
        await oauth.initialize()
        watchers = [
            asyncio.create_task(policy.watch(), name="policy-watch"),
            asyncio.create_task(relay.delegation.watch(), name="delegation-watch"),
        ]
        try:
            # A mounted app's own lifespan never runs, so the MCP session manager (and through it the upstream
            # clients) is started here.
            async with federation.running():
                yield
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await relay.aclose()
            await audit_log.drain()
            await oauth.aclose()
            for trust in trusted.values():
                await trust.aclose()
            await engine.dispose()

    async def mcp_scopes() -> list[str]:
        """Every scope `/mcp` knows: each tool's, and each upstream's that offers resources or prompts."""
        tools = [tool_scope(tool.name) for tool in await federation.catalog.tools()]
        resources = {resources_scope(u) for u, _ in await federation.features.resources.resources()}
        resources |= {resources_scope(u) for u, _ in await federation.features.resources.templates()}
        prompts = {prompts_scope(u) for u, _ in await federation.features.prompts.prompts()}
        return tools + sorted(resources) + sorted(prompts)

    app = create_service_app(
        SERVICE, lifespan=lifespan, readiness=[federation.upstreams.ready], audit=audit_log
    )
    depth = service_metrics(app).gauge("accord_queue_depth", "Work under way, by queue", ["service", "queue"])
    depth.labels(SERVICE, "audit_records").set_function(lambda: audit_log.queued)
    app.state.federation = federation
    app.state.audit_log = audit_log
    app.state.oauth = oauth
    app.state.policy = policy
    app.state.relay = relay
    app.include_router(create_oauth_router(oauth))
    app.include_router(
        grants_router(oauth.grants, _grant_api_verifiers(oauth, settings), audit_log, config.mcp_resource)
    )
    app.include_router(
        resource_metadata_router(
            config.mcp_resource,
            MCP_PATH,
            [config.issuer, *settings.gateway_trusted_issuers],
            mcp_scopes,
            "Accord gateway: federated MCP tools, resources and prompts",
        )
    )
    app.include_router(upstreams_router(federation.upstreams, federation.catalog))
    for router in routers:
        app.include_router(router)
    app.router.routes.extend(relay.routes())
    # The MCP app is mounted at the root, last: it serves `/mcp`, and a root mount would shadow any route
    # added after it.
    app.mount("/", guarded)
    return app


def _grant_api_verifiers(oauth: OAuthDeps, settings: GatewaySettings) -> list[TokenVerifier]:
    """Only this gateway's own tokens, addressed to its MCP resource (the client-credentials default) or to
    its base URL."""
    return [
        oauth.access_token_verifier(audience=audience)
        for audience in (settings.mcp_resource, settings.base_url)
    ]
