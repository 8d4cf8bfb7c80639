"""The relay as an a2a-sdk `RequestHandler`: the same handler class serves JSON-RPC, HTTP+JSON and gRPC.

A message send, once admitted (`gateway.relay.gate`): the step's task grant is issued (the tools the
agent's card declares for the skill, bounded by the tool policy; bindings = the scalar fields of the
message's data part; run, step and deadline from the message metadata) and written into the message,
which is then signed for the agent and forwarded on the caller's transport and mode (unary or streaming).
Each reply object is signed for the caller on its way back, carrying the grant's record; the grant is
revoked as soon as the task is over. A failure to reach the agent revokes the grant at once and is
answered as an A2A `InternalError` with reason `agent_unavailable`; errors the agent itself answers are
passed on unchanged.

Reads (get, cancel, subscribe, list) reach only the tasks the caller created through this relay.
Push-notification configuration and extended cards are not relayed (`UnsupportedOperationError`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from a2a.client import A2AClientError, ClientCallContext
from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from accord.a2a_errors import LINK_LOST_CAUSE, AccordRefusal, a2a_refusal
from accord.audit import AuditEvent, AuditLog
from accord.bearer import bearer_of
from accord.errors import AccordError
from accord.gateway_client import tool_scope
from accord.payloads import first_data, metadata_of
from accord.trace_context import valid_traceparent
from gateway.oauth.grants import MAX_BINDING_CHARS, MAX_BINDINGS, GrantAuthority
from gateway.relay.credentials import RelayCredentials
from gateway.relay.envelopes import EnvelopeSigner, Step
from gateway.relay.gate import (
    Admission,
    Refused,
    RelayGate,
    target_from_metadata,
)
from gateway.relay.links import AgentLinks
from gateway.relay.tasks import RelayedTask, RelayedTasks, StepGrant

logger = logging.getLogger(__name__)

ADMISSION_KEY = "accord.relay.admission"
FORWARD_ACTION = "a2a.relay.forward"
_BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_INPUT_REASONS = frozenset({"invalid_input", "malformed_json", "body_too_large"})

Reply = Task | Message | TaskStatusUpdateEvent | TaskArtifactUpdateEvent


@dataclass(frozen=True)
class RelayLimits:
    mcp_resource: str
    max_deadline_s: float
    timeout_s: float


@dataclass(frozen=True)
class RelayCore:
    """What the three transports' handlers share."""

    gate: RelayGate
    grants: GrantAuthority
    signer: EnvelopeSigner
    credentials: RelayCredentials
    links: AgentLinks
    tasks: RelayedTasks
    audit: AuditLog
    limits: RelayLimits


@dataclass(frozen=True)
class _Prepared:
    step: Step
    message: Message
    grant: StepGrant | None
    timeout_s: float


def step_bindings(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The step inputs a tool policy can hold arguments to: top-level scalar fields (strings up to the
    binding limit). A field left out can only make an `equals_binding` constraint deny, never allow."""
    bindings: dict[str, Any] = {}
    for name, value in sorted((data or {}).items()):
        if len(bindings) >= MAX_BINDINGS or not _BINDING_NAME.match(name):
            continue
        short_text = isinstance(value, str) and len(value) <= MAX_BINDING_CHARS
        number = isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))
        if short_text or number:
            bindings[name] = value
    return bindings


def _kind_for(error: AccordError) -> type[A2AError]:
    if error.reason in _INPUT_REASONS:
        return InvalidParamsError
    return InvalidRequestError if error.kind.http_status < 500 else InternalError


def _unavailable(agent: str, cause: str | None = None) -> A2AError:
    error = AccordError("agent_unavailable", f"agent {agent} did not answer")
    return a2a_refusal(error, InternalError, cause)


def _payload(event: StreamResponse) -> Reply:
    kind = event.WhichOneof("payload")
    if kind is None:
        raise _unavailable("(unknown)")
    payload: Reply = getattr(event, kind)
    return payload


@dataclass
class _Accepted:
    """The task an agent accepted in one streamed exchange, once it has."""

    task_id: str | None = None


def _task_id(reply: Reply) -> str | None:
    if isinstance(reply, Task):
        return reply.id
    if isinstance(reply, Message):
        return reply.task_id or None
    return reply.task_id


def _state(reply: Reply) -> int | None:
    if isinstance(reply, Task | TaskStatusUpdateEvent):
        return int(reply.status.state)
    return None


def _forwarded(params: SendMessageRequest, message: Message) -> SendMessageRequest:
    """The send as the agent gets it: the signed message, the caller's configuration without any push
    notification target (the relay does not relay push notifications), and no tenant."""
    request = SendMessageRequest(message=message, configuration=params.configuration)
    request.configuration.ClearField("task_push_notification_config")
    return request


def _untenanted(request: Any) -> Any:
    """The caller's request as the agent must see it: the tenant named the agent for the relay only."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("tenant")
    return copy


class RelayHandler(RequestHandler):
    """One transport's face of the relay; `binding` is that transport, used towards the agent too."""

    def __init__(self, core: RelayCore, binding: str) -> None:
        self._core = core
        self._binding = binding

    # --- messages -------------------------------------------------------------------------------------

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        admission = await self._admission(context, "SendMessage", params.message)
        self._check_follow_up(admission, params.message)
        prepared = await self._prepare(admission, params.message)
        client = self._core.links.client(admission.agent, self._binding, streaming=False)
        request = _forwarded(params, prepared.message)
        reply: Reply | None = None
        async with self._forwarding(admission, prepared.grant):
            async for event in client.send_message(
                request, context=self._call(prepared.step, prepared.timeout_s)
            ):
                reply = _payload(event)
        if not isinstance(reply, Task | Message):
            await self._abandon(admission, prepared.grant)
            raise _unavailable(admission.agent.name)
        signed: Task | Message = await self._returned(reply, prepared.step, prepared.grant)
        return signed

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        admission = await self._admission(context, "SendStreamingMessage", params.message)
        self._check_follow_up(admission, params.message)
        prepared = await self._prepare(admission, params.message)
        client = self._core.links.client(admission.agent, self._binding, streaming=True)
        request = _forwarded(params, prepared.message)
        accepted = _Accepted()
        async with self._forwarding(admission, prepared.grant, accepted):
            async for event in client.send_message(
                request, context=self._call(prepared.step, prepared.timeout_s)
            ):
                reply = _payload(event)
                accepted.task_id = accepted.task_id or _task_id(reply)
                yield await self._returned(reply, prepared.step, prepared.grant)

    # --- reads of relayed tasks -----------------------------------------------------------------------

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        admission, entry = await self._owned(context, "GetTask", params.id)
        client = self._core.links.client(admission.agent, self._binding, streaming=False)
        async with self._forwarding(admission):
            task = await client.get_task(_untenanted(params), context=self._call(entry.step))
        signed: Task = await self._returned(task, entry.step, entry.grant)
        return signed

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        admission, entry = await self._owned(context, "CancelTask", params.id)
        client = self._core.links.client(admission.agent, self._binding, streaming=False)
        async with self._forwarding(admission):
            task = await client.cancel_task(_untenanted(params), context=self._call(entry.step))
        signed: Task = await self._returned(task, entry.step, entry.grant)
        return signed

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        admission, entry = await self._owned(context, "SubscribeToTask", params.id)
        client = self._core.links.client(admission.agent, self._binding, streaming=True)
        async with self._forwarding(admission):
            async for event in client.subscribe(_untenanted(params), context=self._call(entry.step)):
                yield await self._returned(_payload(event), entry.step, entry.grant)

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        admission = await self._admission(context, "ListTasks", None)
        client = self._core.links.client(admission.agent, self._binding, streaming=False)
        step = Step(admission.client_id, admission.agent.name, trace_id=admission.target.trace_id)
        async with self._forwarding(admission):
            listed = await client.list_tasks(_untenanted(params), context=self._call(step))
        response = ListTasksResponse(next_page_token=listed.next_page_token, page_size=listed.page_size)
        for task in listed.tasks:
            entry = self._core.tasks.owned(task.id, admission.client_id, admission.agent.name)
            if entry is not None:  # only the caller's own relayed tasks
                response.tasks.append(await self._returned(task, entry.step, entry.grant))
        response.total_size = len(response.tasks)
        return response

    # --- not relayed ----------------------------------------------------------------------------------

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise UnsupportedOperationError("push notifications are not relayed")

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise UnsupportedOperationError("push notifications are not relayed")

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise UnsupportedOperationError("push notifications are not relayed")

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise UnsupportedOperationError("push notifications are not relayed")

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise UnsupportedOperationError("extended agent cards are not relayed")

    # --- steps ----------------------------------------------------------------------------------------

    async def _admission(self, context: ServerCallContext, method: str, message: Message | None) -> Admission:
        """The call's admission: made by the HTTP guard (and checked to be about this very request), or
        here for gRPC, whose refusals carry the error table's status (`AccordRefusal`)."""
        headers = context.state.get("headers")
        headers = headers if isinstance(headers, Mapping) else {}
        metadata = metadata_of(message) if message is not None else None
        admitted = context.state.get(ADMISSION_KEY)
        if isinstance(admitted, Admission):
            parsed = target_from_metadata(method, context.tenant, metadata, admitted.target.traceparent)
            if parsed != admitted.target:
                raise a2a_refusal(
                    AccordError("invalid_input", "the request differs from what was authorized")
                )
            return admitted
        target = target_from_metadata(
            method, context.tenant, metadata, valid_traceparent(headers.get("traceparent"))
        )
        try:
            return await self._core.gate.admit(bearer_of(headers.get("authorization")), target)
        except Refused as refused:
            raise AccordRefusal(refused, refused.cause) from None

    def _check_follow_up(self, admission: Admission, message: Message) -> None:
        """A message continuing a task may only continue one the caller created through this relay."""
        owned = self._core.tasks.owned(message.task_id, admission.client_id, admission.agent.name)
        if message.task_id and owned is None:
            raise TaskNotFoundError

    async def _owned(
        self, context: ServerCallContext, method: str, task_id: str
    ) -> tuple[Admission, RelayedTask]:
        admission = await self._admission(context, method, None)
        entry = self._core.tasks.owned(task_id, admission.client_id, admission.agent.name)
        if entry is None:
            raise TaskNotFoundError
        return admission, entry

    async def _prepare(self, admission: Admission, message: Message) -> _Prepared:
        target = admission.target
        step = Step(admission.client_id, admission.agent.name, target.wf, target.task, target.trace_id)
        limits = self._core.limits
        now = time.time()
        deadline = min(target.deadline or math.inf, now + limits.max_deadline_s)
        grant: StepGrant | None = None
        if admission.tools:
            try:
                issued = await self._core.grants.issue_grant(
                    agent=admission.agent.name,
                    scopes=[tool_scope(tool) for tool in admission.tools],
                    wf=target.wf or "",
                    task=target.task or "",
                    deadline=deadline,
                    audience=limits.mcp_resource,
                    delegated_by=admission.client_id,
                    subject=admission.caller.sub,
                    skill=target.skill,
                    bindings=step_bindings(first_data(message.parts)),
                    tool_call_limit=target.tool_call_limit,
                )
            except AccordError as error:
                raise a2a_refusal(error, _kind_for(error)) from None
            grant = StepGrant(issued)
        signed = self._core.signer.request(message, step, grant.issued.token if grant else None)
        timeout = max(1.0, min(limits.timeout_s, deadline - now))
        return _Prepared(step, signed, grant, timeout)

    def _call(self, step: Step, timeout_s: float | None = None) -> ClientCallContext:
        # The relay's own token for this agent, never the caller's (`gateway.relay.credentials`).
        parameters = {"authorization": self._core.credentials.header(step.agent, step.caller)}
        if step.trace_id:
            parameters["traceparent"] = f"00-{step.trace_id}-{_span_id()}-01"
        return ClientCallContext(
            service_parameters=parameters, timeout=timeout_s or self._core.limits.timeout_s
        )

    async def _returned(self, reply: Any, step: Step, grant: StepGrant | None) -> Any:
        """A reply object on its way back: its task remembered, the grant settled, signed for the caller."""
        task_id = _task_id(reply)
        if task_id:
            self._core.tasks.remember(task_id, RelayedTask(step, grant))
        state = _state(reply)
        if state is not None:
            await self._core.tasks.settle(grant, state, step.caller)
        elif isinstance(reply, Message) and not task_id and grant is not None:
            await self._core.tasks.revoke(grant, step.caller)  # a direct message ends the exchange
        return self._core.signer.reply(reply, step, grant.record() if grant else None)

    @contextlib.asynccontextmanager
    async def _forwarding(
        self, admission: Admission, grant: StepGrant | None = None, accepted: _Accepted | None = None
    ) -> AsyncIterator[None]:
        """Around one call to an agent: a transport failure becomes `agent_unavailable` (the grant revoked,
        the link dropped, audited); the agent's own A2A errors pass through (the grant revoked). A stream
        that breaks after the agent accepted the task leaves the grant alone: the task runs on at the
        agent, the caller follows it by id, and its end settles the grant."""
        try:
            yield
        except (A2AClientError, httpx.HTTPError, grpc.aio.AioRpcError, OSError, TimeoutError) as exc:
            if accepted is None or not accepted.task_id:
                await self._abandon(admission, grant)
            await self._core.links.forget(admission.agent)
            await self._record_failure(admission, "agent_unavailable", type(exc).__name__)
            raise _unavailable(admission.agent.name, LINK_LOST_CAUSE) from None
        except A2AError as exc:
            await self._abandon(admission, grant)
            await self._record_failure(admission, "agent_failed", f"the agent answered {type(exc).__name__}")
            raise

    async def _abandon(self, admission: Admission, grant: StepGrant | None) -> None:
        """The agent was never reached (or answered nothing usable): its grant ends now."""
        if grant is not None:
            await self._core.tasks.revoke(grant, admission.client_id)

    async def _record_failure(self, admission: Admission, reason: str, detail: str) -> None:
        target = admission.target
        await self._core.audit.append(
            AuditEvent(
                actor=admission.client_id,
                action=FORWARD_ACTION,
                outcome="failed",
                reason=reason,
                trace_id=target.trace_id,
                run_id=target.wf,
                details={
                    "method": target.method,
                    "agent": admission.agent.name,
                    **({"skill": target.skill} if target.skill else {}),
                    **({"task": target.task} if target.task else {}),
                    "detail": detail[:200],
                },
            )
        )


def _span_id() -> str:
    return secrets.token_hex(8)


__all__ = ["ADMISSION_KEY", "RelayCore", "RelayHandler", "RelayLimits", "step_bindings"]
