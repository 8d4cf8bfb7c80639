"""Sending one step to an agent found by its card, through the gateway relay, and checking what comes back.

Each attempt is a message to the agent through the relay (`orchestrator.relay_link`) carrying the run,
the step and its deadline (`accord.wf`, `accord.task`, `accord.deadline`): the relay issues the step's
task grant from them, signs the message for the agent, and revokes the grant when the task ends. Every
reply object must carry the relay's signature for this orchestrator about this step before anything in it
is read; then the output is validated against the skill's contract in the agent's card.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import httpx
from a2a.client import A2AClientError, Client, ClientCallContext
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import A2AError, TaskNotFoundError
from jsonschema import Draft202012Validator
from opentelemetry.trace import Span

from accord.a2a_errors import LINK_LOST_CAUSE
from accord.cards import skill_schemas
from accord.errors import AccordError
from accord.payloads import (
    GRANT_RECORD_METADATA_KEY,
    RESULT_ARTIFACT,
    first_data,
    metadata_of,
    skill_request,
    task_result,
)
from accord.registry_client import RegisteredAgent, RegistryClient
from accord.telemetry import invoke_agent, record_retry, record_usage
from accord.usage import USAGE_METADATA_KEY, Usage
from orchestrator import faults
from orchestrator.breakers import CircuitBreakers
from orchestrator.latency import Deadline, ObservedLatency
from orchestrator.prices import PriceCatalog
from orchestrator.relay_link import RelayLink, relay_failure
from orchestrator.step_grants import RemoteTask, StepRef

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Reply = Task | Message | TaskStatusUpdateEvent | TaskArtifactUpdateEvent
# Refusals worth a fresh token: the relay no longer accepts the cached one (e.g. its key was retired).
_STALE_TOKEN = frozenset({"unauthenticated", "invalid_token"})
# A task in one of these states will not change without the caller: its outcome can be read.
_SETTLED = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
        TaskState.TASK_STATE_AUTH_REQUIRED,
    }
)
_POLL_FIRST_S, _POLL_MAX_S = 0.01, 0.25
CANCEL_TIMEOUT_S = 1.0
# What an agent may say about the caller's own input: no fault of the agent's (nor worth a retry).
CALLER_MISTAKES = frozenset({"invalid_input", "not_found", "unknown_skill", "policy_denied"})
# What the gateway refused the agent's tools for (the run's budget, rate limits, scopes): no fault of the
# agent's either.
_REFUSED_FOR_THE_RUN = frozenset({"budget_exceeded", "rate_limited", "insufficient_scope"})


@dataclass(frozen=True)
class StepOutcome:
    """What one agent returned for one step, after validation."""

    agent: str
    output: dict[str, Any]
    latency_ms: float
    task_id: str
    attempts: list[dict[str, Any]]
    grant: dict[str, Any] | None = None
    # The model usage the agent reported with its answer (untrusted; checked by `Usage.from_json`).
    usage: Usage = field(default_factory=Usage)


class TaskAssembly:
    """The task a reply stream describes: a Task snapshot, then status and artifact updates applied."""

    def __init__(self) -> None:
        self.task: Task | None = None
        self.message: Message | None = None
        self.grant: dict[str, Any] | None = None
        # Whether it is a task a previous process left with the agent (None: not looked for).
        self.reattached: bool | None = None
        # Whether the reply stream broke after the agent accepted, and the task was followed by id.
        self.stream_lost = False

    def apply(self, reply: Reply) -> None:
        record = metadata_of(reply).get(GRANT_RECORD_METADATA_KEY)
        if isinstance(record, dict):
            self.grant = record
        if isinstance(reply, Message):
            self.message = reply
        elif isinstance(reply, Task):
            self.task = Task()
            self.task.CopyFrom(reply)
        elif isinstance(reply, TaskStatusUpdateEvent):
            self._current(reply.task_id, reply.context_id).status.CopyFrom(reply.status)
        else:
            self._add_artifact(reply)

    def _current(self, task_id: str, context_id: str) -> Task:
        if self.task is None:
            self.task = Task(id=task_id, context_id=context_id)
        return self.task

    def _add_artifact(self, event: TaskArtifactUpdateEvent) -> None:
        task = self._current(event.task_id, event.context_id)
        for artifact in task.artifacts:
            if artifact.artifact_id == event.artifact.artifact_id:
                if event.append:
                    artifact.parts.extend(event.artifact.parts)
                else:
                    artifact.CopyFrom(event.artifact)
                return
        task.artifacts.append(event.artifact)


def _payload(event: StreamResponse) -> Reply:
    kind = event.WhichOneof("payload")
    if kind is None:
        raise AccordError("agent_failed", "the relay answered an empty event")
    reply: Reply = getattr(event, kind)
    return reply


class AgentDispatcher:
    """Resolves skills through the registry, balances across agents, fails over when an agent is
    unavailable or its circuit breaker is open (`orchestrator.breakers`). Without a relay (no gateway
    credentials) no step can be dispatched: every inter-agent call goes through the gateway.

    The step's deadline is kept here (the workflow's `timeout_s`, or one learned from the agents' observed
    latency: `orchestrator.latency`): an agent that has not finished by then is told to stop (A2A
    CancelTask through the relay, for the task it accepted) and the step fails `timeout`."""

    def __init__(
        self,
        registry: RegistryClient,
        timeout_s: float,
        relay: RelayLink | None = None,
        breakers: CircuitBreakers | None = None,
        prices: PriceCatalog | None = None,
        latency: ObservedLatency | None = None,
    ) -> None:
        self._registry = registry
        self.prices = prices
        self.latency = latency or ObservedLatency()
        self._timeout_s = timeout_s
        self._relay = relay
        self._turns = itertools.count()
        self.breakers = breakers or CircuitBreakers()
        # Steps being dispatched right now (a queue depth on `/metrics`).
        self.in_flight = 0

    async def aclose(self) -> None:
        if self._relay is not None:
            await self._relay.aclose()

    async def candidates(self, skill: str) -> list[RegisteredAgent]:
        agents = [
            agent
            for agent in await self._registry.discover(skill=skill)
            if agent.status == "active" and any(s.id == skill for s in agent.card.skills)
        ]
        if not agents:
            raise AccordError("no_agent_for_skill", f"no active agent offers skill {skill!r}")
        start = next(self._turns) % len(agents)
        return agents[start:] + agents[:start]

    async def dispatch(
        self, skill: str, data: dict[str, Any], step: StepRef, timeout_s: float | None = None
    ) -> StepOutcome:
        self.in_flight += 1
        try:
            return await self._dispatch(skill, data, step, timeout_s)
        finally:
            self.in_flight -= 1

    async def _dispatch(
        self, skill: str, data: dict[str, Any], step: StepRef, timeout_s: float | None
    ) -> StepOutcome:
        attempts: list[dict[str, Any]] = []
        last_error: AccordError | None = None
        candidates = await self.candidates(skill)
        names = (agent.name for agent in candidates)
        chosen = self.latency.deadline(timeout_s, names, skill, self._timeout_s)
        if chosen.source == "observed" and step.retry_reason == "timeout":
            # A learned deadline just proved too short for this step: its retry gets the default.
            chosen = Deadline(self._timeout_s, "default")
        timeout = chosen.seconds
        deadline = asyncio.get_running_loop().time() + timeout
        resumed = self._resumable(candidates, step)
        if resumed is not None:
            # The agent that accepted this attempt before a restart comes first, re-attached by task id.
            candidates = [resumed, *(agent for agent in candidates if agent is not resumed)]
        for agent in candidates:
            attempt: dict[str, Any] = {"agent": agent.name, "deadline_s": timeout, "deadline": chosen.source}
            attempts.append(attempt)
            if not self.breakers.admit(agent.name):
                attempt["outcome"] = "circuit_open"
                last_error = AccordError(
                    "agent_unavailable", f"{agent.name} is out of rotation (circuit open)"
                )
                continue
            accepted: list[RemoteTask] = []
            started = time.perf_counter()
            try:
                # The GenAI span of this orchestrator calling the agent (the agent's own is INTERNAL).
                with invoke_agent(agent.name, skill=skill, step=step.step_id, run_id=step.run_id) as span:
                    called_before = sum(1 for a in attempts[:-1] if a.get("outcome") != "circuit_open")
                    _mark_retry(span, step, called_before, last_error)
                    async with asyncio.timeout_at(deadline):
                        assembly = await self._attempt(
                            agent, resumed, _watching(step, accepted), skill, data, timeout
                        )
                    usage = reported_usage(agent, assembly.task) if assembly.task is not None else Usage()
                    if usage.by_model:
                        # Once, on the span of the call that used them (GenAI `invoke_agent`), as checked
                        # and priced here: the agent's own span names the models only.
                        cost = self.prices.cost(usage) if self.prices is not None else None
                        record_usage(usage.input_tokens, usage.output_tokens, cost, span=span)
            except TimeoutError:
                attempt["outcome"] = "timed_out"
                # It took at least this long: counted, so an agent that became slower is not timed out
                # forever by deadlines learned from its faster past.
                self.latency.observe(agent.name, skill, time.perf_counter() - started)
                self.breakers.failed(agent.name)
                await self._cancel(agent, step, accepted)
                error = AccordError("timeout", f"{agent.name} did not finish {skill} within {timeout:g}s")
                raise _with_attempts(error, attempts) from None
            except asyncio.CancelledError:
                # The run stopped (its budget is spent): the agent is told to stop too. Any other
                # cancellation (this process stopping) leaves the task running, to be re-attached to.
                if step.stop_at_agent is not None and step.stop_at_agent():
                    attempt["outcome"] = "cancelled"
                    await asyncio.shield(self._cancel(agent, step, accepted))
                raise
            except AccordError as error:
                if _agents_fault(error):
                    self.breakers.failed(agent.name)
                if error.reason != "agent_unavailable":
                    attempt.setdefault("outcome", "refused" if error.kind.http_status < 500 else "failed")
                    raise _with_attempts(error, attempts) from None
                attempt["outcome"] = "unavailable"
                last_error = error
                continue
            attempt["reattached"] = assembly.reattached if agent is resumed else None
            if attempt["reattached"] is None:
                del attempt["reattached"]
            if assembly.stream_lost:
                attempt["stream_lost"] = True
            latency_ms = (time.perf_counter() - started) * 1000
            attempt["outcome"] = "answered"
            if assembly.grant is not None:
                attempt["grant"] = assembly.grant
            try:
                task = self._final_task(agent, assembly)
                output = self._checked_output(agent, skill, task, usage)
            except AccordError as error:
                if _agents_fault(error):
                    self.breakers.failed(agent.name)
                if usage.by_model:
                    # Spent whether or not the answer is usable: the engine still counts it.
                    error.context.setdefault("usage", usage.to_json())
                raise _with_attempts(error, attempts) from None
            self.breakers.succeeded(agent.name)
            if not assembly.reattached:
                # Only whole, good answers teach deadlines: fast failures and the tail of a re-attached
                # task would make them too short.
                self.latency.observe(agent.name, skill, latency_ms / 1000)
            return StepOutcome(agent.name, output, latency_ms, task.id, attempts, assembly.grant, usage)
        assert last_error is not None
        raise _with_attempts(AccordError("agent_unavailable", last_error.detail), attempts)

    async def _attempt(
        self,
        agent: RegisteredAgent,
        resumed: RegisteredAgent | None,
        step: StepRef,
        skill: str,
        data: dict[str, Any],
        timeout: float,
    ) -> TaskAssembly:
        """One agent's try: re-attach to the task a previous process left with it, else send the step."""
        if agent is resumed:
            assembly = await self._relayed(agent, step, timeout, self._reattach)
            if assembly is not None:
                assembly.reattached = True
                return assembly
        sent = await self._relayed(
            agent, step, timeout, functools.partial(self._send, skill=skill, data=data)
        )
        sent.reattached = False
        return sent

    async def _cancel(self, agent: RegisteredAgent, step: StepRef, accepted: list[RemoteTask]) -> None:
        """Tell the agent to stop the task it accepted for a step that ran out of time or whose run was
        stopped (best effort: the step has failed whatever the agent answers)."""
        if not accepted:
            return

        async def cancel(call: _Call) -> None:
            async with self._relaying(call):
                client = await call.relay.client_for(call.agent)
                await client.cancel_task(CancelTaskRequest(id=accepted[-1].task_id), context=call.context())

        try:
            await self._relayed(agent, step, CANCEL_TIMEOUT_S, cancel)
        except (AccordError, _UnknownTask, TimeoutError) as error:
            logger.info("cancel not confirmed", extra={"agent": agent.name, "error": type(error).__name__})

    @staticmethod
    def _resumable(candidates: list[RegisteredAgent], step: StepRef) -> RegisteredAgent | None:
        if step.resume is None:
            return None
        return next((agent for agent in candidates if agent.name == step.resume.agent), None)

    async def _relayed(
        self,
        agent: RegisteredAgent,
        step: StepRef,
        timeout_s: float,
        exchange: Callable[[_Call], Awaitable[_T]],
    ) -> _T:
        """One exchange with the agent through the relay (sending the step, or following the task it
        already has there), again once with a fresh token if the relay refused the cached one."""
        relay = self._relay
        if relay is None:
            raise AccordError(
                "upstream_unavailable", "no gateway credentials: steps can only go through the relay"
            )
        for fresh_token in (False, True):
            token = await relay.token()
            try:
                return await exchange(_Call(relay, agent, step, timeout_s, token.token))
            except AccordError as error:
                if fresh_token or error.reason not in _STALE_TOKEN or error.context.get("from_agent"):
                    raise
                relay.forget(token)
        raise AssertionError("unreachable")

    async def _send(self, call: _Call, *, skill: str, data: dict[str, Any]) -> TaskAssembly:
        """Send the step. When the caller listens for acceptance, a unary send returns as soon as the agent
        has the task (A2A `return_immediately`) and the task is then followed until it ends; a stream
        shows the task in its first event."""
        step = call.step
        message = skill_request(
            skill,
            data,
            wf=step.run_id,
            task=step.step_id,
            deadline=time.time() + call.timeout_s,
            idempotency_key=step.key,
            tool_call_limit=step.tool_call_limit,
            token_allowance=step.token_allowance,
            depth_limit=step.depth_limit,
        )
        request = SendMessageRequest(message=message)
        # The client streams only when the agent's card says it can; otherwise the send is unary.
        streamed = call.relay.streaming and call.agent.card.capabilities.streaming
        if step.on_accepted is not None and not streamed:
            request.configuration.return_immediately = True
        assembly = TaskAssembly()
        try:
            try:
                async with self._relaying(call):
                    client = await call.relay.client_for(call.agent)
                    async for event in client.send_message(request, context=call.context()):
                        reply = _payload(event)
                        await call.relay.replies.check(reply, call.agent.name, step)
                        assembly.apply(reply)
                        await self._accepted(call, assembly)
                        if streamed:
                            faults.reached("mid_stream")
                    await self._follow(call, client, assembly)
            except AccordError as error:
                if not _followable(error, assembly):
                    raise
                await self._follow_lost(call, assembly, error)
        except _UnknownTask:
            # The task was lost under us (the relay forgot it): the step may be tried again.
            detail = f"the task {call.agent.name} accepted can no longer be followed"
            raise AccordError("agent_unavailable", detail) from None
        return assembly

    async def _follow_lost(self, call: _Call, assembly: TaskAssembly, error: AccordError) -> None:
        """The stream broke after the agent accepted the task: it runs on there, so it is followed by id
        (as after a restart), through further link failures too, until it settles or the step's deadline
        passes. It is never sent again, here or elsewhere: that could run it twice."""
        assembly.stream_lost = True
        delay = _POLL_FIRST_S
        while True:
            extra = {"agent": call.agent.name, "reason": error.reason}
            logger.info("stream lost, following the task", extra=extra)
            try:
                async with self._relaying(call):
                    client = await call.relay.client_for(call.agent)
                    await self._follow(call, client, assembly)
                return
            except AccordError as again:
                if not _followable(again, assembly):
                    raise
                error = again
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)

    async def _reattach(self, call: _Call) -> TaskAssembly | None:
        """Follow the task a previous process left in flight, by its id; None when it is not known."""
        assert call.step.resume is not None
        assembly = TaskAssembly()
        try:
            async with self._relaying(call):
                client = await call.relay.client_for(call.agent)
                await self._poll(call, client, assembly, call.step.resume.task_id)
                await self._follow(call, client, assembly)
        except _UnknownTask:
            logger.info("in-flight task unknown, sending again", extra={"agent": call.agent.name})
            return None
        return assembly

    async def _accepted(self, call: _Call, assembly: TaskAssembly) -> None:
        task = assembly.task
        if call.announced or task is None or not task.id or call.step.on_accepted is None:
            return
        if task.status.state in _SETTLED:
            return
        call.announced = True
        state = TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()
        await call.step.on_accepted(RemoteTask(call.agent.name, task.id, state))

    async def _follow(self, call: _Call, client: Client, assembly: TaskAssembly) -> None:
        """Poll the task (through the relay) until it has settled."""
        delay = _POLL_FIRST_S
        while assembly.task is not None and assembly.task.status.state not in _SETTLED:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)
            await self._poll(call, client, assembly, assembly.task.id)

    async def _poll(self, call: _Call, client: Client, assembly: TaskAssembly, task_id: str) -> None:
        try:
            task = await client.get_task(GetTaskRequest(id=task_id), context=call.context())
        except TaskNotFoundError:
            raise _UnknownTask from None
        await call.relay.replies.check(task, call.agent.name, call.step)
        assembly.apply(task)
        await self._accepted(call, assembly)

    @contextlib.asynccontextmanager
    async def _relaying(self, call: _Call) -> AsyncIterator[None]:
        """Around the calls to one agent: failures become the relay's or the agent's reason."""
        relay, agent = call.relay, call.agent
        listening = relay.capture()
        try:
            yield
        except (A2AClientError, httpx.HTTPError, grpc.aio.AioRpcError, OSError) as exc:
            await relay.drop(agent)
            error = relay_failure(exc, relay.captured(), agent.name)
            logger.warning("relayed call failed", extra={"agent": agent.name, "reason": error.reason})
            raise error from None
        except TaskNotFoundError:
            raise _UnknownTask from None
        except A2AError as exc:
            # An A2A error the relay or the agent answered: its reason says which step failed how.
            error = relay_failure(exc, relay.captured(), agent.name)
            error.context["from_agent"] = True
            raise error from None
        finally:
            relay.release(listening)

    @staticmethod
    def _final_task(agent: RegisteredAgent, assembly: TaskAssembly) -> Task:
        if assembly.task is None:
            raise AccordError("agent_failed", f"agent {agent.name} answered without a task")
        return assembly.task

    @staticmethod
    def _checked_output(agent: RegisteredAgent, skill: str, task: Task, usage: Usage) -> dict[str, Any]:
        if task.status.state != TaskState.TASK_STATE_COMPLETED:
            reported = first_data(task.status.message.parts) if task.status.HasField("message") else None
            error = (reported or {}).get("error") or {}
            reason = error.get("reason", "unknown")
            limit = error.get("limit")
            raise AccordError(
                "agent_failed",
                f"agent {agent.name} failed the step ({reason})",
                agent_reason=reason,
                **({"agent_limit": limit} if isinstance(limit, str) else {}),
                **({"usage": usage.to_json()} if usage.by_model else {}),
            )
        output = task_result(task)
        contract = skill_schemas(agent.card).get(skill)
        if output is None or contract is None:
            raise AccordError("contract_violation", f"agent {agent.name} returned no checkable result")
        problems = sorted(Draft202012Validator(contract.output_schema).iter_errors(output), key=str)
        if problems:
            where = "/".join(str(p) for p in problems[0].absolute_path) or "(root)"
            raise AccordError("contract_violation", f"agent {agent.name} output invalid at {where}")
        return output


def _followable(error: AccordError, assembly: TaskAssembly) -> bool:
    """Whether a failed exchange left an accepted, unfinished task to follow: a link broke after the
    task's id arrived, ours to the relay (`upstream_unavailable`, or a 5xx without an answer), or the
    relay's to the agent (the relay says so: `agent_unavailable` with cause `link_lost`, and keeps the
    task's grant for the follow). What the agent itself answered is its answer, not a lost link."""
    task = assembly.task
    if task is None or not task.id or task.status.state in _SETTLED:
        return False
    if error.context.get("from_agent"):
        return error.reason == "agent_unavailable" and error.context.get("cause") == LINK_LOST_CAUSE
    return error.reason in ("agent_unavailable", "upstream_unavailable")


def _mark_retry(span: Span, step: StepRef, failovers: int, last_error: AccordError | None) -> None:
    """A call that is not the step's first (an engine retry, or failing over to the next agent) says so on
    its span, with why the one before it failed, for `accord trace`'s retry counts."""
    retry = step.attempt - 1 + failovers
    if retry > 0:
        reason = last_error.reason if failovers and last_error is not None else step.retry_reason
        record_retry(retry, reason or "unknown", span=span)


def reported_usage(agent: RegisteredAgent, task: Task) -> Usage:
    """The model usage an agent reported on its task: with the result artifact, or next to the error of
    a failed task. A malformed report is the agent breaking its contract."""
    report: object = None
    if task.status.state == TaskState.TASK_STATE_COMPLETED:
        for artifact in task.artifacts:
            if artifact.name == RESULT_ARTIFACT:
                report = metadata_of(artifact).get(USAGE_METADATA_KEY)
    elif task.status.HasField("message"):
        report = (first_data(task.status.message.parts) or {}).get("usage")
    if report is None:
        return Usage()
    try:
        return Usage.from_json(report)
    except AccordError as error:
        raise AccordError("contract_violation", f"agent {agent.name}: {error.detail}") from None


class _UnknownTask(Exception):
    """The relay or the agent does not know the task asked for."""


def _agents_fault(error: AccordError) -> bool:
    """A failure that counts against the agent's breaker (not the caller's own bad input)."""
    if error.reason in ("agent_unavailable", "contract_violation"):
        return True
    reported = error.context.get("agent_reason")
    return error.reason == "agent_failed" and reported not in CALLER_MISTAKES | _REFUSED_FOR_THE_RUN


def _watching(step: StepRef, accepted: list[RemoteTask]) -> StepRef:
    """The step, noting the task its agent accepts (to cancel it should the step run out of time)."""
    listener = step.on_accepted

    async def noted(remote: RemoteTask) -> None:
        accepted.append(remote)
        if listener is not None:
            await listener(remote)

    return dataclasses.replace(step, on_accepted=noted)


@dataclass
class _Call:
    """One exchange with one agent through the relay for one step attempt."""

    relay: RelayLink
    agent: RegisteredAgent
    step: StepRef
    timeout_s: float
    bearer: str
    announced: bool = False

    def context(self) -> ClientCallContext:
        return ClientCallContext(
            service_parameters={"authorization": f"Bearer {self.bearer}"}, timeout=self.timeout_s
        )


def _with_attempts(error: AccordError, attempts: list[dict[str, Any]]) -> AccordError:
    """The step's error, carrying what each attempt did (agents, grants) for the run record."""
    error.context.pop("from_agent", None)
    error.context["attempts"] = attempts
    grants = [attempt["grant"] for attempt in attempts if "grant" in attempt]
    if grants:
        error.context["grant"] = grants[-1]
    return error
