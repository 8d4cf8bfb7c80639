"""The gateway as the single policy enforcement point, on real processes: the three upstream tool servers
and the gateway started from `deploy/topology.yaml` (`MeshRunner`), called over loopback HTTP.

The harness (`gateway_mesh`, `GatewayMesh`) is `tests.gateway_mesh`: each module starts one mesh with its
own policy file and port offset.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from accord.audit import verify_chain
from accord.keys import KeyRing
from gateway.tool_audit import argument_digest
from tests.gateway_mesh import (
    ACCOUNT,
    APPLICANT,
    BY_COUNTERPARTY,
    BY_PERIOD,
    CREDIT_FILE,
    GET_ACCOUNT,
    SEARCH,
    GatewayMesh,
    gateway_mesh,
    new_trace,
)


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
