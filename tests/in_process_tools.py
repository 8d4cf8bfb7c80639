"""The support and compliance tool servers called in process on the committed data set, for tests.

`InProcessTools` is a `ToolCaller` that answers `<upstream>.<tool>` from the real tool servers' MCP objects
in this process, so skill handlers can be driven through a real `ToolBox` without a network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp.types import CallToolResult
from pydantic import BaseModel, SecretStr

from accord.agent import Agent, ToolBox
from accord.tools_server import ToolsSettings
from accord.topology import repo_root
from compliance_tools.server import build_mcp as compliance_mcp
from support_tools.server import build_mcp as support_mcp

DATA = repo_root() / "data"


def tools_settings() -> ToolsSettings:
    return ToolsSettings(port=1, tools_gateway_secret=SecretStr("unit-test-tools-secret-0123"), data_dir=DATA)


class InProcessTools:
    """A `ToolCaller` over the real support and compliance tool servers, in this process."""

    def __init__(self) -> None:
        settings = tools_settings()
        self.servers = {"support": support_mcp(settings), "compliance": compliance_mcp(settings)}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, tool: str, arguments: dict[str, Any], bearer: str | None = None) -> dict[str, Any]:
        upstream, _, name = tool.partition(".")
        self.calls.append((tool, dict(arguments)))
        result = await self.servers[upstream].call_tool(name, dict(arguments))
        assert isinstance(result, CallToolResult)
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict)
        return dict(result.structured_content)

    async def run(self, agent: Agent, skill_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Run one skill's handler on `data` through a `ToolBox` limited to its declared tools."""
        skill = agent.skills[skill_id]
        output: BaseModel = await skill.handler(
            skill.input_model.model_validate(data), ToolBox(self, skill.tools)
        )
        return skill.output_model.model_validate(output.model_dump(mode="json")).model_dump(mode="json")


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def ticket(scenario: str) -> dict[str, Any]:
    return next(t for t in load("support/tickets.json")["tickets"] if t["scenario"] == scenario)
