"""Assembly of the orchestrator service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from accord.a2a_server import A2AServer
from accord.audit import AuditLog
from accord.caller_auth import CALLER_SCOPES, CallerGuard
from accord.cards import without_extension
from accord.gateway_client import GatewayClient
from accord.gateway_keys import GatewayKeys
from accord.message_signing import SIGNED_MESSAGE_EXTENSION, MessageVerifier
from accord.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from accord.resource_metadata import resource_metadata_router, resource_metadata_url
from accord.service import ReadinessCheck, create_service_app, service_metrics
from accord.storage import create_engine
from orchestrator.a2a_skills import WorkflowExecutor, orchestrator_card
from orchestrator.api import create_api_router
from orchestrator.breakers import STATES as BREAKER_STATES
from orchestrator.breakers import CircuitBreakers
from orchestrator.callers import CallerTrust, advertise_security
from orchestrator.discovery import CachingRegistryClient
from orchestrator.dispatch import AgentDispatcher
from orchestrator.latency import ObservedLatency
from orchestrator.prices import PriceCatalog
from orchestrator.relay_link import RelayLink, ReplyVerifier
from orchestrator.run_store import RunStore
from orchestrator.runs import RunService
from orchestrator.self_registration import self_registration
from orchestrator.settings import OrchestratorSettings
from orchestrator.workflows import load_workflows


class Orchestrator:
    """Everything the orchestrator process holds, built from settings, no globals."""

    def __init__(self, settings: OrchestratorSettings) -> None:
        self.settings = settings
        engine = create_engine(settings.sqlite_url("orchestrator"))
        self.engine = engine
        self.store = RunStore(engine)
        self.audit = AuditLog(engine, "orchestrator")
        # Discovery answers are reused for a moment: a fan-out does not ask the registry once per step.
        self.registry = CachingRegistryClient(settings.registry_url)
        self.redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        self.gateway_keys = GatewayKeys(settings.gateway_url) if settings.gateway_url else None
        self.breakers = CircuitBreakers(settings.breaker_failures, settings.breaker_open_s)
        prices = PriceCatalog.load(settings.model_prices_file)
        latency = ObservedLatency(
            factor=settings.deadline_latency_factor,
            floor_s=settings.deadline_floor_s,
            min_samples=settings.deadline_min_samples,
        )
        self.dispatcher = AgentDispatcher(
            self.registry, settings.step_timeout_s, self._relay_link(), self.breakers, prices, latency
        )
        workflows = load_workflows(settings.workflows_dir)
        self.runs = RunService(
            workflows,
            self.dispatcher,
            self.store,
            self.audit,
            owner=settings.lease_owner(),
            lease_s=settings.run_lease_s,
            prices=prices,
        )
        grpc_address = settings.grpc_address(settings.grpc_port)
        card = orchestrator_card(workflows, settings.base_url, grpc_address)
        # Its callers are end users as well as the relay, so it does not require relay-signed messages:
        # it requires an access token instead, from every caller, the relay included.
        without_extension(card, SIGNED_MESSAGE_EXTENSION)
        advertise_security(card, settings)
        self.caller_trust = CallerTrust(settings, self.gateway_keys)
        self.callers = self.caller_trust.authenticator(settings, self.audit, card.name)
        self.a2a = A2AServer(card, WorkflowExecutor(self.runs), callers=self.callers)
        # Its workflows are skills too: registered by card, other orchestrators can delegate to them.
        self.registration = self_registration(settings.registry_url, settings.base_url)

    def _relay_link(self) -> RelayLink | None:
        """Steps go through the gateway's relay as this orchestrator's own client; none without credentials.
        Replies are trusted only when the configured gateway signed them for this client."""
        settings = self.settings
        if settings.gateway_url is None or settings.client_id is None or settings.client_secret is None:
            return None
        assert self.gateway_keys is not None
        replay: ReplayGuard = (
            RedisReplayGuard(self.redis, "accord:orchestrator:")
            if self.redis is not None
            else MemoryReplayGuard()
        )
        verifier = MessageVerifier(
            self.gateway_keys,
            issuers=[settings.gateway_url.rstrip("/")],
            audience=settings.client_id,
            replay=replay,
            skew_s=settings.reply_skew_s,
        )
        return RelayLink(
            GatewayClient(settings.gateway_url, settings.client_id, settings.client_secret),
            ReplyVerifier(verifier),
            transport=settings.relay_transport,
            streaming=settings.relay_streaming,
            timeout_s=settings.step_timeout_s,
        )

    def create_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.store.initialize()
            await self.audit.initialize()
            registering = asyncio.create_task(self.registration.run())
            # Resumes this replica's unfinished runs now, and others' whose lease expires, from then on.
            maintaining = asyncio.create_task(self.runs.maintain())
            try:
                yield
            finally:
                for background in (maintaining, registering):
                    background.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await background
                await self.runs.aclose()
                await self.dispatcher.aclose()
                await self.registry.aclose()
                if self.gateway_keys is not None:
                    await self.gateway_keys.aclose()
                await self.caller_trust.aclose()
                if self.redis is not None:
                    await self.redis.aclose()
                await self.engine.dispose()

        readiness: list[ReadinessCheck] = [self.store.ping, self.registration.ready]
        app = create_service_app("orchestrator", lifespan=lifespan, readiness=readiness, audit=self.audit)
        app.include_router(create_api_router(self.runs, self.settings.run_wait_max_s))
        app.include_router(
            resource_metadata_router(
                self.settings.resource,
                "",
                list(self.settings.token_issuers()),
                _caller_scopes,
                "Accord orchestrator: workflow runs over REST and A2A",
            )
        )
        app.router.routes.extend(self.a2a.routes())
        self._count_breakers(app)
        self._count_work(app)
        metadata_url = resource_metadata_url(self.settings.base_url, "")
        app.add_middleware(CallerGuard, authenticator=self.callers, resource_metadata=metadata_url)
        return app

    def _count_breakers(self, app: FastAPI) -> None:
        """Each agent's breaker state on `/metrics`: 1 for the state it is in, 0 for the others."""
        gauge = service_metrics(app).gauge(
            "accord_circuit_breaker_state",
            "Each agent's circuit breaker state",
            ["service", "agent", "state"],
        )

        def changed(agent: str, state: str) -> None:
            for each in BREAKER_STATES:
                gauge.labels("orchestrator", agent, each).set(1 if each == state else 0)

        self.breakers.on_change = changed

    def _count_work(self, app: FastAPI) -> None:
        """Queue depths (runs executing here, steps being dispatched) and how much of their budgets
        finished runs used, on `/metrics`."""
        metrics = service_metrics(app)
        depth = metrics.gauge("accord_queue_depth", "Work under way, by queue", ["service", "queue"])
        depth.labels("orchestrator", "runs_executing").set_function(lambda: self.runs.executing)
        depth.labels("orchestrator", "steps_dispatching").set_function(lambda: self.dispatcher.in_flight)
        used = metrics.histogram(
            "accord_run_budget_used_ratio",
            "How much of each limit of its budget a finished run used",
            ["service", "limit"],
            buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5),
        )

        def observe(record: dict[str, Any]) -> None:
            for limit, allowed in record["limits"].items():
                spent = record["spent"].get(limit)
                if allowed and spent is not None:
                    used.labels("orchestrator", limit).observe(spent / allowed)

        self.runs.on_budget = observe


async def _caller_scopes() -> list[str]:
    return list(CALLER_SCOPES)
