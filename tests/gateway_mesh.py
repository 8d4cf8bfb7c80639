"""The gateway as the policy enforcement point on real processes, for tests: the three upstream tool servers
and the gateway started from `deploy/topology.yaml` (`MeshRunner`), called over loopback HTTP.

`gateway_mesh` starts one such mesh with its own tool policy and port offset; `GatewayMesh` mints tokens
for it and reads its audit trail; `assert_rejected` checks a refusal's status, reason and challenge.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from accord.audit import AuditLog
from accord.keys import KeyRing
from accord.mesh import MeshRunner
from accord.storage import create_engine
from accord.tokens import issue_access_token
from accord.topology import load_topology, repo_root

WAIT = 15.0
# Every tool server the gateway federates (it is ready only once each has connected).
TOOLS = tuple(spec.name for spec in load_topology().of_kind("tools"))
ONLY = {*TOOLS, "gateway"}
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TOKEN_TYPE = "urn:accord:params:oauth:token-type:grant"
SEARCH = "tool:sanctions.search"
CREDIT_FILE = "tool:bureau.get_credit_file"
GET_ACCOUNT = "tool:ledger.get_account"
BY_PERIOD = "tool:ledger.aggregate_by_period"
BY_COUNTERPARTY = "tool:ledger.aggregate_by_counterparty"
ACCOUNT = "ACC-100007"
OTHER_ACCOUNT = "ACC-100014"
APPLICANT = "APP-0001"
MCP_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2025-11-25",
}
CLIENT_SECRET_OF = {
    "orchestrator": "orchestrator-client",
    "sanctions-agent": "sanctions-agent-client",
    "bureau-agent": "bureau-agent-client",
    "ledger-agent": "ledger-agent-client",
}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll until `check` holds, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polling a condition with no event to wait on
            await asyncio.sleep(0.02)


def deploy_policy() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((repo_root() / "deploy/policies/tools.yaml").read_text())
    return loaded


def new_trace() -> tuple[str, str]:
    """A fresh W3C trace id and the `traceparent` carrying it."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


@dataclass
class GatewayMesh:
    runner: MeshRunner
    http: httpx.AsyncClient
    secrets: dict[str, str]
    policy_file: Path
    audit: AuditLog
    _orchestrator_token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.runner.url("gateway")

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    @property
    def admin_secret(self) -> str:
        return self.secrets["gateway-admin"]

    def client_secret(self, client_id: str) -> str:
        return self.secrets[CLIENT_SECRET_OF[client_id]]

    def key_ring(self) -> KeyRing:
        """The gateway's own signing keys, read from its key file (to mint tokens the tests need)."""
        return KeyRing.load_or_create(self.runner.state_dir / "gateway-keys.json")

    # --- OAuth ---------------------------------------------------------------------------------------

    async def token_request(self, client_id: str, secret: str, **form: str) -> httpx.Response:
        return await self.http.post(self.url + "/oauth/token", data=form, auth=(client_id, secret))

    async def client_credentials(self, client_id: str, secret: str | None = None, **form: str) -> str:
        response = await self.token_request(
            client_id, secret or self.client_secret(client_id), grant_type="client_credentials", **form
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def orchestrator_token(self) -> str:
        if self._orchestrator_token is None:
            self._orchestrator_token = await self.client_credentials("orchestrator", scope="grants:issue")
        return self._orchestrator_token

    async def request_grant(self, token: str | None = None, **body: Any) -> httpx.Response:
        bearer = token or await self.orchestrator_token()
        return await self.http.post(
            self.url + "/v1/grants", json=body, headers={"Authorization": f"Bearer {bearer}"}
        )

    async def grant(
        self,
        agent: str,
        scopes: list[str],
        bindings: dict[str, Any] | None = None,
        deadline_s: float = 120,
        skill: str = "test-skill",
    ) -> dict[str, Any]:
        response = await self.request_grant(
            agent=agent,
            skill=skill,
            wf="run-" + uuid.uuid4().hex[:12],
            task="step-" + uuid.uuid4().hex[:8],
            scopes=scopes,
            deadline=time.time() + deadline_s,
            bindings=bindings or {},
        )
        assert response.status_code == 201, response.text
        issued: dict[str, Any] = response.json()
        return issued

    async def revoke(self, grant_id: str) -> httpx.Response:
        token = await self.orchestrator_token()
        return await self.http.delete(
            f"{self.url}/v1/grants/{grant_id}", headers={"Authorization": f"Bearer {token}"}
        )

    async def exchange(self, agent: str, grant: str, **params: str) -> httpx.Response:
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": grant,
            "subject_token_type": GRANT_TOKEN_TYPE,
            "resource": self.mcp_url,
            **params,
        }
        return await self.token_request(agent, self.client_secret(agent), **form)

    async def agent_token(
        self, agent: str, scopes: list[str], bindings: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """An access token exchanged from a fresh grant, as the agent SDK obtains it; and the grant."""
        issued = await self.grant(agent, scopes, bindings)
        response = await self.exchange(agent, issued["grant"])
        assert response.status_code == 200, response.text
        return response.json()["access_token"], issued

    # --- MCP -----------------------------------------------------------------------------------------

    async def rpc(
        self, token: str | None, method: str, params: dict[str, Any], traceparent: str | None = None
    ) -> httpx.Response:
        headers = dict(MCP_HEADERS)
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if traceparent is not None:
            headers["traceparent"] = traceparent
        body = {"jsonrpc": "2.0", "id": 41, "method": method, "params": params}
        return await self.http.post(self.mcp_url, json=body, headers=headers)

    async def call(
        self, token: str | None, tool: str, arguments: dict[str, Any], traceparent: str | None = None
    ) -> httpx.Response:
        return await self.rpc(token, "tools/call", {"name": tool, "arguments": arguments}, traceparent)

    async def list_tools(self, token: str) -> list[str]:
        response = await self.rpc(token, "tools/list", {})
        assert response.status_code == 200, response.text
        return sorted(tool["name"] for tool in response.json()["result"]["tools"])

    # --- evidence ------------------------------------------------------------------------------------

    async def upstream_tool_calls(self) -> int:
        """Tool calls that reached any upstream (the tool servers' own `accord_tool_calls_total`)."""
        total = 0.0
        for name in TOOLS:
            text = (await self.http.get(self.runner.url(name) + "/metrics")).text
            total += sum(
                float(v) for v in re.findall(r"^accord_tool_calls_total\{[^}]*\} (\S+)$", text, re.M)
            )
        return int(total)

    async def received_headers(self, tools: str) -> list[dict[str, str]]:
        """Every request's headers as the upstream recorded them (its debug route needs its secret)."""
        response = await self.http.get(
            self.runner.url(tools) + "/debug/received-headers",
            headers={"Authorization": f"Bearer {self.secrets[tools]}"},
        )
        assert response.status_code == 200, response.text
        return [{k: v for k, v in request["headers"]} for request in response.json()["requests"]]

    async def records(self, trace_id: str) -> list[dict[str, Any]]:
        return [r for r in await self.audit.records() if r["trace_id"] == trace_id]

    async def record_for(self, trace_id: str) -> dict[str, Any]:
        """The one audit record of a call, waiting for it (group commit answers after writing)."""
        found: list[dict[str, Any]] = []

        async def written() -> bool:
            found[:] = await self.records(trace_id)
            return bool(found)

        await eventually(written)
        assert len(found) == 1, found
        return found[0]

    def mint(self, ring: KeyRing | None = None, **claims: Any) -> str:
        """A well-formed access token; by default signed with the gateway's own key for its MCP resource."""
        values: dict[str, Any] = {
            "issuer": self.url,
            "subject": "sanctions-agent",
            "client_id": "sanctions-agent",
            "audience": self.mcp_url,
            "scopes": [SEARCH],
            "lifetime_s": 120,
        }
        values.update(claims)
        return issue_access_token(ring or self.key_ring(), **values)


@asynccontextmanager
async def gateway_mesh(
    state_dir: Path,
    port_offset: int,
    policy: dict[str, Any] | None = None,
    extra_env: dict[str, dict[str, str]] | None = None,
) -> AsyncIterator[GatewayMesh]:
    """Tool servers (recording the headers they receive) and the gateway with `policy` as its tool policy."""
    policy_file = state_dir / "tools.yaml"
    policy_file.write_text(yaml.safe_dump(policy or deploy_policy(), sort_keys=False))
    env: dict[str, dict[str, str]] = {name: {"ACCORD_TOOLS_RECORD_HEADERS": "1"} for name in TOOLS}
    env["gateway"] = {
        "ACCORD_GATEWAY_POLICY_FILE": str(policy_file),
        "ACCORD_GATEWAY_POLICY_RELOAD_SECONDS": "0.1",
    }
    for name, values in (extra_env or {}).items():
        env.setdefault(name, {}).update(values)
    runner = MeshRunner(state_dir, port_offset=port_offset, only=ONLY, extra_env=env)
    await asyncio.to_thread(runner.start, 60)
    engine = create_engine(f"sqlite+aiosqlite:///{state_dir / 'gateway.db'}")
    try:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            secrets_file = json.loads((state_dir / "secrets.json").read_text())
            yield GatewayMesh(runner, http, secrets_file, policy_file, AuditLog(engine, "gateway"))
    finally:
        await engine.dispose()
        await asyncio.to_thread(runner.stop)


def assert_rejected(
    response: httpx.Response, status: int, reason: str, challenge: str | None = None
) -> dict[str, Any]:
    """A JSON-RPC error answer with this status, reason code and (if given) WWW-Authenticate error."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == 41
    assert body["error"]["data"] == {"reason": reason}
    if challenge is None:
        assert "www-authenticate" not in response.headers
    else:
        header = response.headers["www-authenticate"]
        assert header.startswith(f'Bearer error="{challenge}"'), header
        assert 'resource_metadata="' in header
    return body
