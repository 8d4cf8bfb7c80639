"""An in-process dispatcher standing in for agents, for workflow engine and run service tests.

It answers each skill with a handler (`answer` for a fixed output), checks outputs against a schema per
skill and raises `contract_violation` like the real dispatcher does, and builds the real A2A message of
each call so the delegation depth can be read off it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from accord.delegation import depth_of
from accord.errors import AccordError
from accord.payloads import skill_request
from orchestrator.dispatch import StepOutcome
from orchestrator.step_grants import StepRef

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Call:
    skill: str
    data: dict[str, Any]
    task: str
    depth: int
    started: float
    finished: float | None = None


@dataclass
class StandInDispatcher:
    """Answers each skill with a handler; validates outputs against `schemas` as the real dispatcher does."""

    handlers: dict[str, Handler]
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # Each dispatch's step reference, as the engine built it (its limits, allowance, try).
    steps: list[StepRef] = field(default_factory=list)

    async def dispatch(
        self, skill: str, data: dict[str, Any], step: StepRef, timeout_s: float | None = None
    ) -> StepOutcome:
        self.steps.append(step)
        depth = depth_of(skill_request(skill, data))
        call = Call(skill, data, step.step_id, depth, time.monotonic())
        self.calls.append(call)
        agent = f"{skill}-agent"
        attempts: list[dict[str, Any]] = [{"agent": agent, "outcome": "answered"}]
        try:
            output = await self.handlers[skill](data)
        finally:
            call.finished = time.monotonic()
        schema = self.schemas.get(skill)
        if schema is not None and not Draft202012Validator(schema).is_valid(output):
            raise AccordError("contract_violation", f"agent {agent} output invalid", attempts=attempts)
        return StepOutcome(agent, output, 1.0, str(uuid.uuid4()), attempts)

    def called(self, skill: str) -> list[Call]:
        return [call for call in self.calls if call.skill == skill]


def answer(output: dict[str, Any], delay_s: float = 0.0) -> Handler:
    async def handler(_data: dict[str, Any]) -> dict[str, Any]:
        if delay_s:
            await asyncio.sleep(delay_s)
        return dict(output)

    return handler
