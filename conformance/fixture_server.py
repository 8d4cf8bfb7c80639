"""An upstream MCP server offering the MCP conformance suite's server fixtures, behind the gateway.

The suite (`@modelcontextprotocol/conformance`, server scenarios) expects a server with these tools,
resources and prompts. `make conformance` runs this server as one more upstream of the gateway (upstream
name `conformance`), so the suite exercises the gateway as an MCP server in front of a faithful upstream.
It is a tool server like the mesh's own: `/mcp` accepts only the gateway's bearer secret
(`ACCORD_TOOLS_GATEWAY_SECRET`). Run: `python conformance/fixture_server.py` with `ACCORD_PORT` set.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from accord.tools_server import ToolsSettings, run_tools_server

# A 1x1 PNG and a tiny WAV header: real media types, small enough to inline.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
WAV = base64.b64encode(
    b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00@\x1f\x00\x00\x01\x00\x08\x00"
    b"data\x00\x00\x00\x00"
).decode()


class Address(BaseModel):
    street: str = Field(description="Street address")
    city: str


WATCHED = "test://watched-resource"
USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}
DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}
_OPTIONS = ["option1", "option2", "option3"]
ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": _OPTIONS},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": _OPTIONS}},
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


def _elicited(
    ctx: Context, message: str, schema: dict[str, Any], label: str
) -> str | types.InputRequiredResult:
    """The caller's answer to one form elicitation, or the question while it has not answered."""
    answer = (ctx.input_responses or {}).get("elicit")
    if not isinstance(answer, types.ElicitResult):
        params = types.ElicitRequestFormParams(message=message, requested_schema=schema)
        return types.InputRequiredResult(input_requests={"elicit": types.ElicitRequest(params=params)})
    return f"{label}: action={answer.action}, content={json.dumps(answer.content, sort_keys=True)}"


def build(_settings: ToolsSettings) -> MCPServer:
    mcp = MCPServer("conformance-fixtures", version="1.0.0")
    _tools(mcp)
    _resources(mcp)
    _prompts(mcp)
    _completions(mcp)
    return mcp


def _tools(mcp: MCPServer) -> None:
    @mcp.tool(description="Tests simple text content response")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @mcp.tool(description="Tests image content response")
    def test_image_content() -> list[types.ContentBlock]:
        return [types.ImageContent(type="image", data=PNG, mime_type="image/png")]

    @mcp.tool(description="Tests audio content response")
    def test_audio_content() -> list[types.ContentBlock]:
        return [types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")]

    @mcp.tool(description="Tests embedded resource content response")
    def test_embedded_resource() -> list[types.ContentBlock]:
        resource = types.TextResourceContents(
            uri="test://embedded-resource",
            mime_type="text/plain",
            text="This is an embedded resource content.",
        )
        return [types.EmbeddedResource(type="resource", resource=resource)]

    @mcp.tool(description="Tests response with multiple content types (text, image, resource)")
    def test_multiple_content_types() -> list[types.ContentBlock]:
        resource = types.TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text='{"test": "data", "value": 123}',
        )
        return [
            types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG, mime_type="image/png"),
            types.EmbeddedResource(type="resource", resource=resource),
        ]

    @mcp.tool(description="Tests tool that emits log messages during execution")
    async def test_tool_with_logging(ctx: Context) -> str:
        for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(message)
        return "Tool with logging executed successfully"

    @mcp.tool(description="Tests tool that reports progress notifications")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step in (0, 50, 100):
            await ctx.report_progress(step, 100)
        return "Tool with progress executed successfully"

    @mcp.tool(description="Tests error response handling")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    # Sampling and elicitation ask the caller through an `input_required` result (2026-07-28): the tool
    # returns its question and answers once the caller retries the call with the answer.
    @mcp.tool(description="Tests server-initiated sampling (LLM completion request)")
    async def test_sampling(prompt: str, ctx: Context) -> str | types.InputRequiredResult:
        answer = (ctx.input_responses or {}).get("sample")
        if not isinstance(answer, types.CreateMessageResult):
            message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
            params = types.CreateMessageRequestParams(messages=[message], max_tokens=100)
            asked = {"sample": types.CreateMessageRequest(params=params)}
            return types.InputRequiredResult(input_requests=asked)
        content = answer.content
        return f"LLM response: {content.text if isinstance(content, types.TextContent) else content}"

    @mcp.tool(description="Tests server-initiated elicitation (user input request)")
    async def test_elicitation(message: str, ctx: Context) -> str | types.InputRequiredResult:
        return _elicited(ctx, message, USER_SCHEMA, "User response")

    @mcp.tool(description="Tests elicitation with default values for every primitive type (SEP-1034)")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str | types.InputRequiredResult:
        return _elicited(ctx, "Test client default value handling", DEFAULTS_SCHEMA, "Elicitation completed")

    @mcp.tool(description="Tests elicitation with every enum schema variant (SEP-1330)")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str | types.InputRequiredResult:
        return _elicited(ctx, "Test enum schema variants", ENUMS_SCHEMA, "Elicitation completed")

    # Not one of the suite's fixtures: it lets a test change the watched resource, for its subscribers.
    @mcp.tool(description="Reports that test://watched-resource changed, to its subscribers")
    async def update_watched_resource(ctx: Context) -> str:
        await ctx.notify_resource_updated(WATCHED)
        return "updated"

    @mcp.tool(description="Tool with JSON Schema 2020-12 features")
    def json_schema_2020_12_tool(name: str, address: Address | None = None) -> dict[str, Any]:
        return {"name": name, "address": address.model_dump() if address else None}


def _resources(mcp: MCPServer) -> None:
    @mcp.resource("test://static-text", name="static-text", mime_type="text/plain")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary", name="static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        return base64.b64decode(PNG)

    @mcp.resource("test://template/{id}/data", name="template", mime_type="application/json")
    def template(id: str) -> str:
        return f'{{"id": "{id}", "templateTest": true, "data": "Data for ID: {id}"}}'

    @mcp.resource(WATCHED, name="watched-resource", mime_type="text/plain")
    def watched() -> str:
        return "Watched resource content"


def _completions(mcp: MCPServer) -> None:
    @mcp.completion()
    async def complete(
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        _context: types.CompletionContext | None,
    ) -> types.Completion:
        """Values of a prompt argument or template variable that start with what was typed."""
        known = {"arg1": ["paris", "park", "party"], "id": ["123", "124", "200"]}.get(argument.name, [])
        values = [value for value in known if value.startswith(argument.value)]
        return types.Completion(values=values, total=len(values), has_more=False)


def _prompts(mcp: MCPServer) -> None:
    @mcp.prompt(description="A simple prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @mcp.prompt(description="A prompt with required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @mcp.prompt(description="A prompt that includes an embedded resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[dict[str, Any]]:
        return [
            {
                "role": "user",
                "content": {
                    "type": "resource",
                    "resource": {"uri": resourceUri, "mimeType": "text/plain", "text": "Embedded resource"},
                },
            },
            {"role": "user", "content": {"type": "text", "text": "Process the embedded resource above."}},
        ]

    @mcp.prompt(description="A prompt that includes image content")
    def test_prompt_with_image() -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
            {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}},
        ]


if __name__ == "__main__":
    run_tools_server("conformance-tools", build)
