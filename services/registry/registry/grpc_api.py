"""`accord.registry.v1.RegistryService` over grpc.aio, calling the same catalog as the REST API.

Errors are handled in one place: an `AccordError` becomes the gRPC status from the error table, with the
reason code in the trailing metadata key `accord-reason`; anything else becomes `internal_error`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from accord.errors import AccordError, as_accord_error
from accord.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from accord.service import BackgroundServer
from registry.access import AdminCredential, grpc_peer_host
from registry.catalog import REGISTER, REMOVE, Caller, Catalog
from registry.rest_api import INVENTORY_FIELDS
from registry.store import AgentRecord

logger = logging.getLogger(__name__)

REASON_METADATA_KEY = "accord-reason"

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]


def accord_errors(method: Method[Request, Reply]) -> Method[Request, Reply]:
    """Map whatever the method raises to its status and reason code, never leaking exception text."""

    @functools.wraps(method)
    async def guarded(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Reply:
        try:
            return await method(self, request, context)
        except Exception as exc:
            error = as_accord_error(exc)
            if not isinstance(exc, AccordError):
                logger.error("unhandled error in %s", method.__name__, exc_info=exc)
            await context.abort(
                error.kind.grpc_status, error.detail, trailing_metadata=((REASON_METADATA_KEY, error.reason),)
            )
            raise AssertionError("context.abort returned") from exc  # abort always raises

    return guarded


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, catalog: Catalog, admin: AdminCredential | None = None) -> None:
        self._catalog = catalog
        self._admin = admin or AdminCredential()

    async def _caller(
        self, context: grpc.aio.ServicerContext, action: str, details: dict[str, Any]
    ) -> Caller:
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        peer = grpc_peer_host(context.peer())
        try:
            return self._admin.caller(authorization if isinstance(authorization, str) else None, peer, "grpc")
        except AccordError as error:
            await self._catalog.refused(action, _actor(context), error, details)
            raise

    @accord_errors
    async def RegisterAgent(
        self, request: registry_pb2.RegisterAgentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.Agent:
        if not request.card_url:
            raise AccordError("invalid_input", "card_url is required")
        fields = {key: getattr(request, key) for key in INVENTORY_FIELDS if getattr(request, key)}
        caller = await self._caller(context, REGISTER, {"card_url": request.card_url})
        registration = await self._catalog.register(request.card_url, caller, fields or None)
        return agent_message(registration.record)

    @accord_errors
    async def GetAgent(
        self, request: registry_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.Agent:
        return agent_message(await self._catalog.get(request.name))

    @accord_errors
    async def ListAgents(
        self, request: registry_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListAgentsResponse:
        return agents_message(await self._catalog.all_agents())

    @accord_errors
    async def RefreshAgent(
        self, request: registry_pb2.RefreshAgentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.Agent:
        return agent_message(await self._catalog.refresh(request.name, actor=_actor(context)))

    @accord_errors
    async def DiscoverAgents(
        self, request: registry_pb2.DiscoverAgentsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListAgentsResponse:
        return agents_message(await self._catalog.discover(request.skill, request.tag))

    @accord_errors
    async def RemoveAgent(
        self, request: registry_pb2.RemoveAgentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RemoveAgentResponse:
        await self._catalog.remove(request.name, await self._caller(context, REMOVE, {"name": request.name}))
        return registry_pb2.RemoveAgentResponse()


def agent_message(record: AgentRecord) -> registry_pb2.Agent:
    registered_at, updated_at = Timestamp(), Timestamp()
    registered_at.FromDatetime(record.registered_at)
    updated_at.FromDatetime(record.updated_at)
    return registry_pb2.Agent(
        name=record.name,
        card_url=record.card_url,
        card_json=json.dumps(record.card, ensure_ascii=False),
        status=record.status,
        skills=record.skill_ids,
        tags=record.tags,
        registered_at=registered_at,
        updated_at=updated_at,
        inventory=inventory_message(record),
    )


def inventory_message(record: AgentRecord) -> registry_pb2.Inventory | None:
    entry = record.inventory
    if entry is None:
        return None
    return registry_pb2.Inventory(
        owner=entry.owner,
        policy=entry.policy,
        purpose=entry.purpose,
        model=entry.model,
        model_version=entry.model_version,
        risk=entry.risk,
        review_date=entry.review_date.isoformat() if entry.review_date else "",
        data_access=entry.data_access,
    )


def agents_message(records: list[AgentRecord]) -> registry_pb2.ListAgentsResponse:
    return registry_pb2.ListAgentsResponse(agents=[agent_message(record) for record in records])


def grpc_server(
    catalog: Catalog, host: str, port: int, admin: AdminCredential | None = None
) -> BackgroundServer:
    """The gRPC server as a background server for `accord.service.serve`."""

    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        # `serve` starts extras before the HTTP lifespan, so make sure the tables exist first.
        await catalog.start()
        server = grpc.aio.server()
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(catalog, admin), server)  # type: ignore[no-untyped-call]
        if server.add_insecure_port(f"{host}:{port}") == 0:
            raise OSError(f"cannot bind gRPC port {host}:{port}")
        await server.start()
        try:
            yield
        finally:
            await server.stop(grace=2)

    return running


def _actor(context: grpc.aio.ServicerContext) -> str:
    return f"grpc:{context.peer()}"
