"""A skill: one async handler plus the contract (input and output models) read from its type hints."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from accord.agent.tools import ToolBox
from accord.cards import SkillSchemas

SkillHandler = Callable[[Any, ToolBox], Awaitable[BaseModel]]

_SKILL_ID = re.compile(r"^[a-z][a-z0-9-]*$")
# Tools are always addressed by their gateway name: `<upstream>.<tool>`.
_TOOL_NAME = re.compile(r"^[a-z][a-z0-9_-]*\.[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Skill:
    """What the executor needs to run one skill, and what the card says about it."""

    skill_id: str
    handler: SkillHandler
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    tools: tuple[str, ...]

    def schemas(self) -> SkillSchemas:
        return SkillSchemas(
            input_schema=self.input_model.model_json_schema(),
            output_schema=self.output_model.model_json_schema(),
            tools=self.tools,
        )


def define_skill(skill_id: str, handler: SkillHandler, tools: tuple[str, ...]) -> Skill:
    """Check the handler's shape once, at import time, so a wrong signature never reaches a request."""
    if not _SKILL_ID.match(skill_id):
        raise ValueError(f"skill id {skill_id!r} must be lower-case kebab-case")
    for tool in tools:
        if not _TOOL_NAME.match(tool):
            raise ValueError(f"skill {skill_id!r}: tool {tool!r} is not named '<upstream>.<tool>'")
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"skill {skill_id!r}: handler must be an async function")
    input_model, output_model = _contract(skill_id, handler)
    return Skill(skill_id, handler, input_model, output_model, tuple(dict.fromkeys(tools)))


def _contract(skill_id: str, handler: SkillHandler) -> tuple[type[BaseModel], type[BaseModel]]:
    hints = typing.get_type_hints(handler)
    params = list(inspect.signature(handler).parameters)
    if len(params) != 2:
        raise TypeError(f"skill {skill_id!r}: handler must take (input_model, tools: ToolBox)")
    input_model = hints.get(params[0])
    output_model = hints.get("return")
    if not _is_model(input_model):
        raise TypeError(f"skill {skill_id!r}: first parameter must be annotated with a pydantic model")
    if hints.get(params[1]) is not ToolBox:
        raise TypeError(f"skill {skill_id!r}: second parameter must be annotated as ToolBox")
    if not _is_model(output_model):
        raise TypeError(f"skill {skill_id!r}: return type must be a pydantic model")
    return input_model, output_model


def _is_model(value: object) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(value, type) and issubclass(value, BaseModel)
