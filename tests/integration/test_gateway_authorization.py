"""The gateway as the single policy enforcement point, on real processes: the three upstream tool servers
and the gateway started from `deploy/topology.yaml` (`MeshRunner`), called over loopback HTTP.

The helpers at the top (`gateway_mesh`, `GatewayMesh`) are shared by the other `test_gateway_*` modules and
by `tests/security/test_gateway_*`: each module starts one mesh with its own policy file and port offset.
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
import pytest
import yaml

from accord.audit import AuditLog, verify_chain
from accord.keys import KeyRing
from accord.mesh import MeshRunner
from accord.storage import create_engine
from accord.tokens import issue_access_token
from accord.topology import load_topology, repo_root
from gateway.tool_audit import argument_digest

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


# --- this module -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayMesh]:
    async with gateway_mesh(tmp_path_factory.mktemp("gw-authz"), port_offset=22100) as running:
        yield running


async def test_an_agent_calls_its_granted_tool_with_an_exchanged_token_and_the_call_is_audited(
    mesh: GatewayMesh,
) -> None:
    token, grant = await mesh.agent_token("ledger-agent", [GET_ACCOUNT], {"account_id": ACCOUNT})
    trace_id, traceparent = new_trace()
    before = await mesh.upstream_tool_calls()

    response = await mesh.call(token, "ledger.get_account", {"account_id": ACCOUNT}, traceparent)

    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["structuredContent"]["account_id"] == ACCOUNT
    assert result["_meta"]["accord/provenance"]["untrusted"] is True
    assert await mesh.upstream_tool_calls() == before + 1
    record = await mesh.record_for(trace_id)
    assert (record["action"], record["outcome"], record["reason"]) == ("tools/call", "ok", None)
    assert record["actor"] == "ledger-agent"
    details = record["details"]
    assert details["tool"] == "ledger.get_account"
    assert details["client_id"] == "ledger-agent"
    assert details["subject"] == "orchestrator"
    assert details["grant_id"] == grant["grant_id"]
    assert details["rule"] == "ledger-own-account"
    assert details["task"].startswith("step-")
    assert record["run_id"].startswith("run-")
    assert details["arguments_sha256"] == argument_digest({"account_id": ACCOUNT})
    assert token not in json.dumps(record)


async def test_tools_list_shows_each_caller_only_the_tools_it_may_call(mesh: GatewayMesh) -> None:
    ledger, _ = await mesh.agent_token("ledger-agent", [GET_ACCOUNT, BY_PERIOD], {"account_id": ACCOUNT})
    sanctions, _ = await mesh.agent_token("sanctions-agent", [SEARCH])
    orchestrator = await mesh.orchestrator_token()

    assert await mesh.list_tools(ledger) == ["ledger.aggregate_by_period", "ledger.get_account"]
    assert await mesh.list_tools(sanctions) == ["sanctions.search"]
    assert await mesh.list_tools(orchestrator) == []


async def test_the_inbound_token_never_reaches_an_upstream(mesh: GatewayMesh) -> None:
    sanctions, _ = await mesh.agent_token("sanctions-agent", [SEARCH])
    bureau, _ = await mesh.agent_token("bureau-agent", [CREDIT_FILE], {"applicant_id": APPLICANT})
    ledger, _ = await mesh.agent_token("ledger-agent", [GET_ACCOUNT], {"account_id": ACCOUNT})
    calls = [
        (sanctions, "sanctions.search", {"name": "Tariq Hassan Al-Rashid"}),
        (bureau, "bureau.get_credit_file", {"applicant_id": APPLICANT}),
        (ledger, "ledger.get_account", {"account_id": ACCOUNT}),
    ]
    for token, tool, arguments in calls:
        assert (await mesh.call(token, tool, arguments)).status_code == 200

    for tools, (token, _, _) in zip(("sanctions-tools", "bureau-tools", "ledger-tools"), calls, strict=True):
        seen = await mesh.received_headers(tools)
        assert seen, tools
        assert {request.get("authorization") for request in seen} == {f"Bearer {mesh.secrets[tools]}"}
        everything = json.dumps(seen)
        for inbound in (sanctions, bureau, ledger):
            assert inbound not in everything
            assert inbound.split(".")[1] not in everything  # not even the claims part
        assert token not in everything


async def test_the_protected_resource_metadata_points_to_the_gateway_issuer(mesh: GatewayMesh) -> None:
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        response = await mesh.http.get(mesh.url + path)
        assert response.status_code == 200
        metadata = response.json()
        assert metadata["resource"] == mesh.mcp_url
        assert metadata["authorization_servers"] == [mesh.url]
        assert metadata["bearer_methods_supported"] == ["header"]
        assert {SEARCH, CREDIT_FILE, GET_ACCOUNT, BY_PERIOD, BY_COUNTERPARTY} <= set(
            metadata["scopes_supported"]
        )
    issuer = (await mesh.http.get(mesh.url + "/.well-known/oauth-authorization-server")).json()
    assert issuer["issuer"] == mesh.url


# --- the grant API -----------------------------------------------------------------------------------------


async def test_a_grant_holds_the_requested_scopes_the_agents_policy_allows_and_reports_the_rest(
    mesh: GatewayMesh,
) -> None:
    deadline = time.time() + 60
    response = await mesh.request_grant(
        agent="ledger-agent",
        skill="transaction-profile",
        wf="run-grant-shape",
        task="ledger",
        scopes=[GET_ACCOUNT, BY_PERIOD, SEARCH],
        deadline=deadline,
        bindings={"account_id": ACCOUNT},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"grant_id", "grant", "scopes", "dropped_scopes", "expires_at"}
    assert body["scopes"] == [BY_PERIOD, GET_ACCOUNT]
    assert body["dropped_scopes"] == [SEARCH]
    assert body["expires_at"] <= deadline
    exchanged = await mesh.exchange("ledger-agent", body["grant"])
    claims = json.loads(_b64decode(exchanged.json()["access_token"].split(".")[1]))
    assert claims["bindings"] == {"account_id": ACCOUNT}
    assert claims["act"] == {"sub": "ledger-agent", "act": {"sub": "orchestrator"}}
    assert (claims["wf"], claims["task"], claims["grant_id"]) == (
        "run-grant-shape",
        "ledger",
        body["grant_id"],
    )
    assert claims["aud"] == mesh.mcp_url


async def test_a_grant_for_nothing_the_policy_allows_is_refused_and_stored_nowhere(mesh: GatewayMesh) -> None:
    response = await mesh.request_grant(
        agent="sanctions-agent",
        skill="sanctions-screening",
        wf="run-refused",
        task="sanctions",
        scopes=[GET_ACCOUNT, CREDIT_FILE],
        deadline=time.time() + 60,
    )
    assert response.status_code == 403
    assert response.json()["error"]["reason"] == "policy_denied"
    refused = [
        r for r in await mesh.audit.records(run_id="run-refused") if r["action"] == "oauth.grant.issue"
    ]
    assert [(r["outcome"], r["reason"]) for r in refused] == [("denied", "policy_denied")]


async def test_the_grant_api_needs_an_orchestrator_token_with_grants_issue(mesh: GatewayMesh) -> None:
    body = {
        "agent": "sanctions-agent",
        "skill": "sanctions-screening",
        "wf": "run-x",
        "task": "t",
        "scopes": [SEARCH],
        "deadline": time.time() + 60,
    }
    anonymous = await mesh.http.post(mesh.url + "/v1/grants", json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["reason"] == "unauthenticated"
    assert anonymous.headers["www-authenticate"].startswith('Bearer error="invalid_token"')

    agent_token, _ = await mesh.agent_token("sanctions-agent", [SEARCH])
    as_agent = await mesh.request_grant(agent_token, **body)
    assert as_agent.status_code == 403
    assert as_agent.json()["error"]["reason"] == "insufficient_scope"
    assert 'scope="grants:issue"' in as_agent.headers["www-authenticate"]

    forged = mesh.mint(
        KeyRing.generate(), subject="orchestrator", client_id="orchestrator", scopes=["grants:issue"]
    )
    assert (await mesh.request_grant(forged, **body)).status_code == 401


@pytest.mark.parametrize(
    "change",
    [
        {"scopes": []},
        {"deadline": "tomorrow"},
        {"bindings": {"account_id": {"nested": True}}},
        {"bindings": {"bad name": "x"}},
        {"wf": ""},
        {"unexpected": 1},
    ],
    ids=[
        "no-scopes",
        "deadline-not-a-number",
        "nested-binding",
        "bad-binding-name",
        "empty-wf",
        "unknown-field",
    ],
)
async def test_malformed_grant_requests_are_invalid_input(mesh: GatewayMesh, change: dict[str, Any]) -> None:
    body = {
        "agent": "sanctions-agent",
        "skill": "sanctions-screening",
        "wf": "run-malformed",
        "task": "t",
        "scopes": [SEARCH],
        "deadline": time.time() + 60,
        **change,
    }
    response = await mesh.request_grant(**body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["reason"] == "invalid_input"


async def test_revoking_a_grant_is_204_once_and_404_for_unknown_grants(mesh: GatewayMesh) -> None:
    issued = await mesh.grant("sanctions-agent", [SEARCH])
    assert (await mesh.revoke(issued["grant_id"])).status_code == 204
    assert (await mesh.revoke(issued["grant_id"])).status_code == 204  # harmless twice
    missing = await mesh.revoke("0" * 32)
    assert missing.status_code == 404
    assert missing.json()["error"]["reason"] == "not_found"
    refused = await mesh.exchange("sanctions-agent", issued["grant"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


async def test_client_credentials_yield_only_the_registered_scopes(mesh: GatewayMesh) -> None:
    response = await mesh.token_request(
        "orchestrator",
        mesh.client_secret("orchestrator"),
        grant_type="client_credentials",
        scope=f"grants:issue {SEARCH} {GET_ACCOUNT}",
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "grants:issue"
    nothing = await mesh.token_request(
        "sanctions-agent",
        mesh.client_secret("sanctions-agent"),
        grant_type="client_credentials",
        scope=SEARCH,
    )
    assert nothing.status_code == 400
    assert nothing.json()["error"] == "invalid_scope"


async def test_the_audit_chain_stays_intact(mesh: GatewayMesh) -> None:
    token, _ = await mesh.agent_token("sanctions-agent", [SEARCH])
    await mesh.call(token, "sanctions.search", {"name": "Ana"})
    await mesh.call(None, "sanctions.search", {"name": "Ana"})
    assert verify_chain(await mesh.audit.records()) is None


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
