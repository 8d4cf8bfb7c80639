"""Runs skills behind the A2A server: one task per request, the output as the artifact named `result`.

Each task's tool calls carry a token derived from the grant in its message (see `accord.agent.grants`); a
task without a grant may call no tool. Failures are reported as a FAILED task whose status message carries
a data part `{"error": {"reason", "message"}}`. Exception text never leaves the process: the SDK would
otherwise put `str(exc)` into an InternalError that reaches the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from a2a.helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Message, TaskState
from pydantic import BaseModel, ValidationError

from accord.agent.grants import GrantTokens, NoGrant
from accord.agent.skills import Skill
from accord.agent.tools import TokenProvider, ToolBox, ToolCaller
from accord.errors import AccordError
from accord.payloads import data_part, first_data, message_grant, requested_skill

logger = logging.getLogger(__name__)

RESULT_ARTIFACT = "result"


class SkillExecutor(AgentExecutor):
    """Dispatches each message to the skill named in its metadata, with the tool token of its grant."""

    def __init__(
        self,
        skills: Mapping[str, Skill],
        tools: ToolCaller,
        grant_tokens: GrantTokens,
        fault_delay_ms: int = 0,
    ) -> None:
        self._skills = dict(skills)
        self._tools = tools
        self._grant_tokens = grant_tokens
        self._fault_delay_s = fault_delay_ms / 1000

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = await _open_task(context, event_queue)
        try:
            skill, request = self._parse(context.message)
        except AccordError as error:
            await _fail(updater, error)
            return
        assert context.message is not None  # _parse refuses a request without one
        await updater.start_work()
        try:
            result = data_part(await self._run(skill, request, self._tokens_for(context.message)))
        except AccordError as error:
            await _fail(updater, error)
            return
        except Exception:
            logger.exception("skill failed", extra={"skill": skill.skill_id, "task_id": updater.task_id})
            await _fail(updater, AccordError("agent_failed", f"skill {skill.skill_id} failed"))
            return
        await updater.add_artifact([result], name=RESULT_ARTIFACT)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # The SDK has already cancelled the asyncio task running `execute`; record the outcome.
        if context.task_id is None or context.context_id is None:
            return
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    def _parse(self, message: Message | None) -> tuple[Skill, BaseModel]:
        if message is None:
            raise AccordError("invalid_input", "the request carries no message")
        skill_id = requested_skill(message)
        skill = self._skills.get(skill_id or "")
        if skill is None:
            raise AccordError("unknown_skill", f"this agent offers {sorted(self._skills)}")
        data = first_data(message.parts)
        if data is None:
            raise AccordError("invalid_input", "the message carries no JSON object data part")
        try:
            return skill, skill.input_model.model_validate(data)
        except ValidationError as exc:
            raise AccordError("invalid_input", _describe(exc)) from None

    def _tokens_for(self, message: Message) -> TokenProvider:
        grant = message_grant(message)
        return NoGrant() if grant is None else self._grant_tokens.for_grant(grant)

    async def _run(self, skill: Skill, request: BaseModel, tokens: TokenProvider) -> dict[str, Any]:
        if self._fault_delay_s:
            await asyncio.sleep(self._fault_delay_s)
        toolbox = ToolBox(self._tools, skill.tools, tokens)
        output = await skill.handler(request, toolbox)
        try:
            payload = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
            return skill.output_model.model_validate(payload).model_dump(mode="json")
        except ValidationError:
            logger.error("skill output breaks its contract", extra={"skill": skill.skill_id})
            detail = f"skill {skill.skill_id} produced invalid output"
            raise AccordError("contract_violation", detail) from None


async def _open_task(context: RequestContext, event_queue: EventQueue) -> TaskUpdater:
    task = context.current_task
    if task is None:
        # A new task must reach the queue as a Task before any status update, or the SDK rejects it.
        history = [context.message] if context.message is not None else []
        task = new_task(
            task_id=context.task_id or "",
            context_id=context.context_id or "",
            state=TaskState.TASK_STATE_SUBMITTED,
            history=history,
        )
        await event_queue.enqueue_event(task)
    return TaskUpdater(event_queue, task.id, task.context_id)


async def _fail(updater: TaskUpdater, error: AccordError) -> None:
    body = {"error": {"reason": error.reason, "message": error.detail}}
    await updater.failed(updater.new_agent_message([data_part(body)]))


def _describe(exc: ValidationError) -> str:
    """Field locations and messages only: the offending input values are not echoed back."""
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
    ]
    return "input does not match the skill's schema: " + "; ".join(problems)
