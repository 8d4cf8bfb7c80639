"""`Agent`: a specialist is a name, a few decorated skills, and `agent.run()`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import TypeVar

from a2a.types import AgentCard
from fastapi import FastAPI
from redis.asyncio import Redis

from accord.a2a_server import A2AServer, SignedMessageGate
from accord.agent.executor import SkillExecutor
from accord.agent.grants import GrantExchange, GrantTokens
from accord.agent.registration import Register, Registration, register_with_registry
from accord.agent.settings import AgentSettings
from accord.agent.skills import Skill, SkillHandler, define_skill
from accord.agent.tools import ToolClient
from accord.audit import AuditLog
from accord.cards import SkillSchemas, build_card, load_card_source
from accord.gateway_client import GatewayClient
from accord.gateway_keys import GatewayKeys
from accord.logs import configure_logging
from accord.message_signing import MessageVerifier
from accord.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from accord.service import ReadinessCheck, create_service_app, serve
from accord.storage import create_engine

logger = logging.getLogger(__name__)

H = TypeVar("H", bound=SkillHandler)


class Agent:
    """One specialist: its card comes from `agent-cards/<name>.json`, its skills from decorated handlers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._skills: dict[str, Skill] = {}

    def skill(self, skill_id: str, tools: Sequence[str] = ()) -> Callable[[H], H]:
        """Declare an async `(input_model, ToolBox) -> output_model` handler as the skill `skill_id`."""

        def register(handler: H) -> H:
            if skill_id in self._skills:
                raise ValueError(f"{self.name}: skill {skill_id!r} is declared twice")
            self._skills[skill_id] = define_skill(skill_id, handler, tuple(tools))
            return handler

        return register

    @property
    def skills(self) -> Mapping[str, Skill]:
        return MappingProxyType(self._skills)

    def skill_schemas(self) -> dict[str, SkillSchemas]:
        return {skill_id: skill.schemas() for skill_id, skill in self._skills.items()}

    def build_card(self, settings: AgentSettings) -> AgentCard:
        """The card this agent serves; raises ValueError when the card file and the skills disagree."""
        return build_card(
            load_card_source(self.name),
            settings.base_url,
            settings.grpc_address(settings.grpc_port),
            self.skill_schemas(),
        )

    def create_app(
        self,
        settings: AgentSettings,
        grant_tokens: GrantTokens | None = None,
        register: Register | None = None,
        *,
        accept_unsigned_messages: bool = False,
    ) -> FastAPI:
        """The agent's HTTP app; `app.state.a2a_server.grpc_server(host, port)` serves gRPC beside it.

        Messages are accepted only when the gateway at `settings.gateway_url` signed them for this agent
        (keys from its JWKS; replays remembered in Redis when `settings.redis_url` is set, so replicas
        share them). `accept_unsigned_messages` exists for unit tests of the SDK alone; no setting or
        environment variable turns verification off.

        Tool tokens come from exchanging each task's grant at the gateway as `settings.client_id`, unless
        `grant_tokens` says otherwise.
        """
        if settings.client_id != self.name:
            # Grants are issued to the agent by name; under another identity every exchange would fail.
            raise ValueError(f"ACCORD_CLIENT_ID is {settings.client_id!r}; this agent is {self.name!r}")
        card = self.build_card(settings)
        tools = ToolClient(settings.mcp_url, settings.tool_timeout_s)
        gateway = GatewayClient(
            settings.gateway_url,
            settings.client_id,
            settings.client_secret,
            timeout_s=settings.tool_timeout_s,
        )
        grant_tokens = grant_tokens or GrantExchange(gateway, settings.mcp_url)
        executor = SkillExecutor(self._skills, tools, grant_tokens, settings.fault_delay_ms, self.name)
        engine = create_engine(settings.sqlite_url(self.name))
        audit = AuditLog(engine, self.name)
        keys = GatewayKeys(settings.gateway_url)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        gate = None
        if not accept_unsigned_messages:
            replay: ReplayGuard = (
                RedisReplayGuard(redis, f"accord:{self.name}:") if redis is not None else MemoryReplayGuard()
            )
            verifier = MessageVerifier(
                keys,
                issuers=[settings.gateway_issuer],
                audience=self.name,
                replay=replay,
                skew_s=settings.message_skew_s,
            )
            gate = SignedMessageGate(verifier, audit, self.name)
        a2a_server = A2AServer(card, executor, message_gate=gate)
        registration = _registration(settings, register)

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await audit.initialize()
            registering = asyncio.create_task(registration.run()) if registration else None
            try:
                yield
            finally:
                if registering is not None:
                    registering.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await registering
                await tools.aclose()
                await gateway.aclose()
                await keys.aclose()
                if redis is not None:
                    await redis.aclose()
                await engine.dispose()

        readiness: list[ReadinessCheck] = [registration.ready] if registration else []
        app = create_service_app(self.name, lifespan=lifespan, readiness=readiness, audit=audit)
        app.router.routes.extend(a2a_server.routes())
        app.state.settings = settings
        app.state.card = card
        app.state.a2a_server = a2a_server
        app.state.skill_executor = executor
        app.state.tool_client = tools
        app.state.gateway_client = gateway
        app.state.registration = registration
        app.state.audit_log = audit
        app.state.gateway_keys = keys
        return app

    def run(self) -> None:
        """Serve the agent (HTTP and gRPC) from environment settings until SIGTERM."""
        configure_logging(self.name)
        settings = AgentSettings()  # type: ignore[call-arg]
        logging.getLogger().setLevel(settings.log_level.upper())
        app = self.create_app(settings)
        a2a_server: A2AServer = app.state.a2a_server
        grpc = a2a_server.grpc_server(settings.host, settings.grpc_port)
        logger.info(
            "agent starting",
            extra={
                "agent": self.name,
                "url": settings.base_url,
                "grpc": settings.grpc_address(settings.grpc_port),
            },
        )
        asyncio.run(serve(app, settings.host, settings.port, extra=[grpc]))


def _registration(settings: AgentSettings, register: Register | None) -> Registration | None:
    if settings.registry_url is None:
        return None
    return Registration(
        settings.card_url,
        register or partial(register_with_registry, settings.registry_url),
        timeout_s=settings.registration_timeout_s,
    )
