"""Tool access for skills: one MCP client per agent process, talking only to the gateway's `/mcp`.

A skill sees a `ToolBox` limited to the tools it declared. The box refuses anything else before any
network traffic (client-side least privilege; the gateway enforces the same rule server-side). Tool
results are untrusted data: an error result or a result without structured content is an upstream
failure, never something to interpret.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from accord.errors import ERROR_TABLE, AccordError
from accord.telemetry import execute_tool
from accord.usage import UsageMeter

logger = logging.getLogger(__name__)


@dataclass
class _CallAuth:
    """The bearer of the tool call in flight, and how the gateway answered it if it refused at HTTP level."""

    bearer: str | None
    refused_status: int | None = None
    challenge_error: str | None = None


# The MCP transport sends each request in the context of the task that issued it, so concurrent skills
# sharing one client each present their own token (and see their own refusal).
_call_auth: contextvars.ContextVar[_CallAuth | None] = contextvars.ContextVar(
    "accord_tool_auth", default=None
)
_CHALLENGE_ERROR = re.compile(r'error="([a-z_]+)"')
# A refusal at HTTP level (RFC 6750 challenge or status) when the body names no reason.
_CHALLENGE_REASONS = {"invalid_token": "invalid_token", "insufficient_scope": "insufficient_scope"}
_STATUS_REASONS = {401: "unauthenticated", 403: "policy_denied", 429: "rate_limited"}

# Reasons the gateway may state in an MCP error's data that are worth passing on as they are.
_FORWARDED_REASONS = frozenset(
    {
        "unauthenticated",
        "invalid_token",
        "insufficient_scope",
        "policy_denied",
        "rate_limited",
        "budget_exceeded",
    }
)


class TokenProvider(Protocol):
    """Supplies the bearer token for tool calls (issue 3: OAuth token exchange for a task grant)."""

    async def token(self, tools: Sequence[str]) -> str | None: ...


class ToolCaller(Protocol):
    async def call(
        self, tool: str, arguments: dict[str, Any], bearer: str | None = None
    ) -> dict[str, Any]: ...


class _ContextBearerAuth(httpx2.Auth):
    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        auth = _call_auth.get()
        if auth is not None and auth.bearer:
            request.headers["Authorization"] = f"Bearer {auth.bearer}"
        response = yield request
        if auth is not None and response.status_code in _STATUS_REASONS:
            auth.refused_status = response.status_code
            match = _CHALLENGE_ERROR.search(response.headers.get("www-authenticate", ""))
            auth.challenge_error = match.group(1) if match else None


class _Connection:
    """One connected `mcp.Client`, owned by a dedicated task.

    The client's transport holds anyio task groups that must be exited by the task that entered them, so
    neither a request handler (which connects lazily) nor the shutdown hook may own it directly.
    """

    def __init__(self, url: str, read_timeout_s: float) -> None:
        self._url = url
        self._read_timeout_s = read_timeout_s
        self._closing = asyncio.Event()
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(), name="accord-tool-client")

    @property
    def alive(self) -> bool:
        return not self._task.done() and not self._closing.is_set()

    async def client(self) -> Client:
        return await asyncio.shield(self._ready)

    async def close(self, timeout_s: float = 5.0) -> None:
        self._closing.set()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
        except Exception:  # noqa: S110 - a dead connection has already been logged by its owner
            pass

    async def _own(self) -> None:
        try:
            http = create_mcp_http_client(auth=_ContextBearerAuth())
            transport = streamable_http_client(self._url, http_client=http)
            async with http, Client(transport, read_timeout_seconds=self._read_timeout_s) as client:
                self._ready.set_result(client)
                await self._closing.wait()
        except Exception as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                logger.warning("tool client connection ended", extra={"error_type": type(exc).__name__})
        finally:
            if not self._ready.done():
                self._ready.cancel()


class ToolClient:
    """The agent's one MCP client to `{gateway_url}/mcp`: created on first use, reused, closed at shutdown."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self.connections_opened = 0

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.alive

    def _current(self) -> _Connection:
        if self._connection is None or not self._connection.alive:
            self._connection = _Connection(self.url, self._timeout_s)
            self.connections_opened += 1
        return self._connection

    async def call(self, tool: str, arguments: dict[str, Any], bearer: str | None = None) -> dict[str, Any]:
        auth = _CallAuth(bearer)
        reset = _call_auth.set(auth)
        connection = self._current()
        try:
            async with asyncio.timeout(self._timeout_s):
                client = await connection.client()
                result = await client.call_tool(tool, arguments)
        except MCPError as exc:
            raise _from_mcp_error(tool, exc, auth) from None
        except Exception as exc:
            # The transport is in an unknown state: drop it so the next call reconnects.
            await self._discard(connection)
            refusal = _http_refusal(auth)
            if refusal is not None:
                # Refused while connecting (the session's first request carries this call's token).
                raise AccordError(refusal, f"gateway refused tool {tool}") from None
            logger.warning("tool call failed", extra={"tool": tool, "error_type": type(exc).__name__})
            raise AccordError("upstream_unavailable", f"tool {tool} could not be reached") from None
        finally:
            _call_auth.reset(reset)
        if result.is_error:
            raise AccordError("upstream_unavailable", f"tool {tool} reported an error")
        if not isinstance(result.structured_content, dict):
            raise AccordError("upstream_unavailable", f"tool {tool} returned no structured result")
        return dict(result.structured_content)

    async def _discard(self, connection: _Connection) -> None:
        if self._connection is connection:
            self._connection = None
        await connection.close()

    async def aclose(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


def _from_mcp_error(tool: str, exc: MCPError, auth: _CallAuth) -> AccordError:
    data = exc.data if isinstance(exc.data, dict) else {}
    reason = data.get("reason")
    if isinstance(reason, str) and reason in _FORWARDED_REASONS and reason in ERROR_TABLE:
        return _refused(reason, tool)
    refusal = _http_refusal(auth)
    if refusal is not None:
        return _refused(refusal, tool)
    return AccordError("upstream_unavailable", f"tool {tool} failed at the gateway")


def _refused(reason: str, tool: str) -> AccordError:
    # The gateway spends only one budget: the run's tool calls. Saying so lets the orchestrator tell it
    # from the step's own share of tokens.
    limit = {"limit": "tool_calls"} if reason == "budget_exceeded" else {}
    return AccordError(reason, f"gateway refused tool {tool}", **limit)


def _http_refusal(auth: _CallAuth) -> str | None:
    """The reason of a refusal the gateway gave at HTTP level (401/403/429), from its bearer challenge."""
    if auth.refused_status is None:
        return None
    return _CHALLENGE_REASONS.get(auth.challenge_error or "") or _STATUS_REASONS[auth.refused_status]


class ToolBox:
    """The tools one skill may use. Anything it did not declare is refused before any I/O."""

    def __init__(
        self,
        caller: ToolCaller,
        tools: Sequence[str],
        token_provider: TokenProvider | None = None,
        meter: UsageMeter | None = None,
    ) -> None:
        self._caller = caller
        self._tools = tuple(tools)
        self._token_provider = token_provider
        self.meter = meter or UsageMeter()

    @property
    def tools(self) -> tuple[str, ...]:
        return self._tools

    @property
    def tokens_left(self) -> int | None:
        """The tokens this step may still spend on models (None: no limit); cap a model call with it."""
        return self.meter.tokens_left

    def report_usage(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """Report one model call's tokens (from the model's own response). The step's total goes back
        with its answer; past the step's allowance the step fails with `budget_exceeded`."""
        self.meter.record(model, input_tokens, output_tokens)

    async def call(self, tool: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call `<upstream>.<tool>` at the gateway and return its structured result."""
        if tool not in self._tools:
            raise AccordError("policy_denied", f"tool {tool} is not declared for this skill")
        # One token covers the skill's declared tools, so a provider can cache it for the whole task.
        bearer = await self._token_provider.token(self._tools) if self._token_provider else None
        with execute_tool(tool):
            return await self._caller.call(tool, dict(arguments or {}), bearer)
