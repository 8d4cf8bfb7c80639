"""The gateway's authorization server over real HTTP: metadata, JWKS, client credentials (secret and
private_key_jwt), RFC 8693 exchange of task grants, the client admin API, and the audit trail.

The router runs in a real uvicorn server on a free loopback port, backed by a real SQLite file; callers use
httpx. The harness is `tests.oauth_server`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accord.audit import verify_chain
from accord.errors import AccordError
from accord.keys import SigningKey, TrustStore
from accord.tokens import RemoteJwksTrust, TokenVerifier
from gateway.oauth import GRANT_TOKEN_TYPE, OAuthDeps
from gateway.oauth.client_auth import CLIENT_ASSERTION_TYPE
from gateway.oauth.grants import GrantError
from gateway.oauth.token_service import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE
from tests.oauth_server import (
    ADMIN_SECRET,
    AGGREGATE,
    CALLER_SECRET,
    GET_ACCOUNT,
    ORCHESTRATOR_API,
    SANCTIONS_SECRET,
    SEARCH,
    WAIT,
    AuthServer,
    agent_key,
    assertion_for,
    authorization_server,
    b64,
    eventually,
    standard_clients,
)

# --- fixtures


@dataclass
class World:
    server: AuthServer
    ledger_key: SigningKey
    http: httpx.AsyncClient

    @property
    def deps(self) -> OAuthDeps:
        return self.server.deps

    @property
    def mcp_resource(self) -> str:
        resource: str = self.server.deps.config.mcp_resource
        return resource

    async def token(self, data: dict[str, str], auth: tuple[str, str] | None = None) -> httpx.Response:
        if auth is None:
            return await self.http.post(self.server.token_endpoint, data=data)
        return await self.http.post(self.server.token_endpoint, data=data, auth=auth)

    async def grant(self, agent: str, scopes: list[str], deadline_s: float = 120, task: str = "t1") -> str:
        issued = await self.deps.grants.issue_grant(
            agent=agent,
            scopes=scopes,
            wf="wf-" + uuid.uuid4().hex[:8],
            task=task,
            deadline=time.time() + deadline_s,
            audience=self.mcp_resource,
            delegated_by="orchestrator",
            subject="outside-caller",
        )
        token: str = issued.token
        return token

    async def exchange(
        self, grant: str, auth: tuple[str, str] | None = None, **params: str
    ) -> httpx.Response:
        data = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": grant,
            "subject_token_type": GRANT_TOKEN_TYPE,
            "resource": self.mcp_resource,
            **params,
        }
        return await self.token(data, auth=auth or ("sanctions-agent", SANCTIONS_SECRET))


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    ledger_key = agent_key()
    state_dir = tmp_path_factory.mktemp("oauth")
    async with (
        authorization_server(state_dir, standard_clients(ledger_key)) as server,
        httpx.AsyncClient(timeout=WAIT) as http,
    ):
        yield World(server=server, ledger_key=ledger_key, http=http)


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description", "error_uri"}
    assert response.headers["cache-control"] == "no-store"
    return body


# --- metadata and keys


async def test_the_rfc_8414_metadata_describes_this_server(world: World) -> None:
    response = await world.http.get(world.server.url + "/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json()
    AuthorizationServerMetadata(metadata).validate()

    assert metadata["issuer"] == world.server.url
    assert metadata["token_endpoint"] == world.server.token_endpoint
    assert metadata["jwks_uri"] == world.server.url + "/.well-known/jwks.json"
    assert set(metadata["grant_types_supported"]) == {"client_credentials", TOKEN_EXCHANGE}
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(
        alg.startswith("HS") for alg in metadata["token_endpoint_auth_signing_alg_values_supported"]
    )
    assert {SEARCH, GET_ACCOUNT, AGGREGATE, "agent:orchestrator.credit-risk"} <= set(
        metadata["scopes_supported"]
    )


async def test_the_authorization_endpoint_grants_nothing(world: World) -> None:
    response = await world.http.get(world.server.url + "/oauth/authorize", params={"response_type": "code"})
    assert_oauth_error(response, 400, "unsupported_response_type")


async def test_the_jwks_publishes_the_active_public_key_only(world: World) -> None:
    response = await world.http.get(world.server.url + "/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [key["kid"] for key in keys] == [world.deps.ring.active.kid]
    assert all("d" not in key and key["use"] == "sig" for key in keys)


# --- client credentials


async def test_client_credentials_with_basic_auth_yields_a_token_verifiable_from_the_published_jwks(
    world: World,
) -> None:
    response = await world.token(
        {"grant_type": "client_credentials", "scope": SEARCH}, auth=("outside-caller", CALLER_SECRET)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == SEARCH
    assert body["expires_in"] == world.deps.config.client_token_lifetime_s

    remote = RemoteJwksTrust(world.server.url + "/.well-known/jwks.json")
    try:
        verifier = TokenVerifier(remote, issuers={world.server.url}, audience=world.mcp_resource)
        claims = await verifier.verify_async(body["access_token"])
    finally:
        await remote.aclose()
    assert claims.sub == claims.client_id == "outside-caller"
    assert claims.scopes == {SEARCH}
    assert claims.aud == (world.mcp_resource,)
    assert claims.exp - claims.iat == body["expires_in"]
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


async def test_client_credentials_with_a_posted_secret_and_a_resource_targets_that_resource(
    world: World,
) -> None:
    response = await world.token(
        {
            "grant_type": "client_credentials",
            "client_id": "outside-caller",
            "client_secret": CALLER_SECRET,
            "resource": ORCHESTRATOR_API,
        }
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    claims = world.deps.access_token_verifier(audience=ORCHESTRATOR_API).verify(token)
    assert claims.scopes == {"agent:orchestrator.credit-risk", SEARCH}


async def test_client_credentials_with_private_key_jwt_authenticates_by_the_registered_key(
    world: World,
) -> None:
    for audience in (world.server.url, world.server.token_endpoint):
        assertion = assertion_for(world.ledger_key, "ledger-agent", audience)
        response = await world.token(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
            }
        )
        assert response.status_code == 200, response.text
        claims = world.deps.access_token_verifier().verify(response.json()["access_token"])
        assert claims.client_id == "ledger-agent"
        # An agent's tool scopes come only from task grants, never from client credentials.
        assert claims.scopes == frozenset()


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        (("outside-caller", "wrong-secret-0123456789"), {}),
        (("nobody", CALLER_SECRET), {}),
        (None, {"client_id": "outside-caller", "client_secret": "wrong-secret-0123456789"}),
        (None, {"client_id": "outside-caller"}),
        (None, {}),
    ],
    ids=["bad-basic-secret", "unknown-client", "bad-posted-secret", "no-secret", "no-credentials"],
)
async def test_bad_client_credentials_are_refused_with_401_invalid_client(
    world: World, auth: tuple[str, str] | None, form: dict[str, str]
) -> None:
    response = await world.token({"grant_type": "client_credentials", **form}, auth=auth)
    body = assert_oauth_error(response, 401, "invalid_client")
    assert "wrong-secret" not in json.dumps(body)
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_a_secret_client_cannot_authenticate_with_an_assertion_and_vice_versa(world: World) -> None:
    by_secret = await world.token(
        {"grant_type": "client_credentials"}, auth=("ledger-agent", "whatever-secret-0123456789")
    )
    assert_oauth_error(by_secret, 401, "invalid_client")
    someone_elses_key = assertion_for(world.ledger_key, "sanctions-agent", world.server.url)
    by_assertion = await world.token(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": someone_elses_key,
        }
    )
    assert_oauth_error(by_assertion, 401, "invalid_client")


@pytest.mark.parametrize(
    "make_assertion",
    [
        lambda w: assertion_for(agent_key(), "ledger-agent", w.server.url),
        lambda w: assertion_for(w.ledger_key, "ledger-agent", "http://127.0.0.1:1/elsewhere"),
        lambda w: assertion_for(w.ledger_key, "ledger-agent", w.server.url, lifetime_s=3600),
        lambda w: assertion_for(w.ledger_key, "ledger-agent", w.server.url, lifetime_s=-120),
        lambda w: assertion_for(w.ledger_key, "ledger-agent", w.server.url, iss="someone-else"),
    ],
    ids=["foreign-key", "wrong-audience", "too-long-lived", "expired", "iss-not-client"],
)
async def test_a_bad_client_assertion_is_refused(
    world: World, make_assertion: Callable[[World], str]
) -> None:
    response = await world.token(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": make_assertion(world),
        }
    )
    assert_oauth_error(response, 401, "invalid_client")


async def test_a_client_assertion_works_only_once(world: World) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion_for(world.ledger_key, "ledger-agent", world.server.url),
    }
    assert (await world.token(form)).status_code == 200
    assert_oauth_error(await world.token(form), 401, "invalid_client")


async def test_an_hs256_client_assertion_keyed_with_the_public_key_is_refused(world: World) -> None:
    public_pem = world.ledger_key.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {
        "iss": "ledger-agent",
        "sub": "ledger-agent",
        "aud": world.server.url,
        "exp": now + 60,
        "jti": "x1",
    }
    header = {"alg": "HS256", "kid": world.ledger_key.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    response = await world.token(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": f"{signing_input}.{b64(signature)}",
        }
    )
    assert_oauth_error(response, 401, "invalid_client")


async def test_two_authentication_methods_at_once_are_an_invalid_request(world: World) -> None:
    response = await world.token(
        {"grant_type": "client_credentials", "client_secret": CALLER_SECRET},
        auth=("outside-caller", CALLER_SECRET),
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_client_credentials_beyond_the_registration_issue_only_the_registered_part(
    world: World,
) -> None:
    # RFC 6749 3.3: the server may issue fewer scopes than asked and must say which it issued.
    response = await world.token(
        {"grant_type": "client_credentials", "scope": f"{SEARCH} {GET_ACCOUNT}"},
        auth=("outside-caller", CALLER_SECRET),
    )
    assert response.status_code == 200
    assert response.json()["scope"] == SEARCH


async def test_client_credentials_with_nothing_registered_in_common_are_invalid_scope(world: World) -> None:
    response = await world.token(
        {"grant_type": "client_credentials", "scope": GET_ACCOUNT},
        auth=("outside-caller", CALLER_SECRET),
    )
    assert_oauth_error(response, 400, "invalid_scope")


async def test_client_credentials_for_an_unknown_resource_are_invalid_target(world: World) -> None:
    response = await world.token(
        {"grant_type": "client_credentials", "resource": "http://127.0.0.1:1/other"},
        auth=("outside-caller", CALLER_SECRET),
    )
    assert_oauth_error(response, 400, "invalid_target")


async def test_an_unsupported_grant_type_is_refused(world: World) -> None:
    response = await world.token({"grant_type": "password"}, auth=("outside-caller", CALLER_SECRET))
    assert_oauth_error(response, 400, "unsupported_grant_type")


async def test_malformed_token_requests_are_invalid_request(world: World) -> None:
    as_json = await world.http.post(world.server.token_endpoint, json={"grant_type": "client_credentials"})
    assert_oauth_error(as_json, 400, "invalid_request")
    repeated = await world.http.post(
        world.server.token_endpoint,
        content="grant_type=client_credentials&scope=a&scope=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=("outside-caller", CALLER_SECRET),
    )
    assert_oauth_error(repeated, 400, "invalid_request")
    no_grant_type = await world.token({}, auth=("outside-caller", CALLER_SECRET))
    assert_oauth_error(no_grant_type, 400, "invalid_request")


# --- task grants and token exchange


async def test_a_grant_is_cut_down_to_the_agents_policy_and_its_deadline(world: World) -> None:
    deadline = time.time() + 60
    issued = await world.deps.grants.issue_grant(
        agent="sanctions-agent",
        scopes=[SEARCH, GET_ACCOUNT],
        wf="wf-policy",
        task="t-policy",
        deadline=deadline,
        audience=world.mcp_resource,
        delegated_by="orchestrator",
    )
    assert issued.grant.scopes == {SEARCH}
    assert issued.dropped_scopes == {GET_ACCOUNT}
    assert issued.grant.expires_at <= deadline
    header = jwt.get_unverified_header(issued.token)
    assert header["typ"] == "accord-grant+jwt"
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["exp"] <= deadline
    assert claims["scope"] == SEARCH


@pytest.mark.parametrize(
    ("agent", "scopes", "delegated_by", "reason"),
    [
        ("sanctions-agent", [GET_ACCOUNT], "orchestrator", "policy_denied"),
        ("outside-caller", [SEARCH], "orchestrator", "policy_denied"),
        ("sanctions-agent", [SEARCH], "outside-caller", "policy_denied"),
    ],
    ids=["outside-policy", "not-an-agent", "not-an-orchestrator"],
)
async def test_grants_outside_policy_are_refused_and_stored_nowhere(
    world: World, agent: str, scopes: list[str], delegated_by: str, reason: str
) -> None:
    with pytest.raises(AccordError) as caught:
        await world.deps.grants.issue_grant(
            agent=agent,
            scopes=scopes,
            wf="wf-refused",
            task="t-refused",
            deadline=time.time() + 60,
            audience=world.mcp_resource,
            delegated_by=delegated_by,
        )
    assert caught.value.reason == reason
    assert await world.deps.grants.revoke_task("wf-refused", "t-refused") == []


async def test_a_grant_with_a_past_deadline_is_refused(world: World) -> None:
    with pytest.raises(AccordError) as caught:
        await world.grant("sanctions-agent", [SEARCH], deadline_s=-1)
    assert caught.value.reason == "invalid_input"


async def test_an_agent_exchanges_its_grant_for_a_short_lived_delegated_token(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH], deadline_s=120, task="screen-1")
    grant_claims = jwt.decode(grant, options={"verify_signature": False})

    response = await world.exchange(grant)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["scope"] == SEARCH
    assert 0 < body["expires_in"] <= world.deps.config.access_token_lifetime_s
    claims = world.deps.access_token_verifier().verify(body["access_token"])
    assert claims.sub == "outside-caller"
    assert claims.client_id == "sanctions-agent"
    assert claims.act_chain == ("sanctions-agent", "orchestrator")
    assert claims.wf == grant_claims["wf"]
    assert claims.task == "screen-1"
    assert claims.grant_id == grant_claims["jti"]
    assert claims.aud == (world.mcp_resource,)
    assert claims.exp <= grant_claims["exp"]
    raw = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert raw["act"] == {"sub": "sanctions-agent", "act": {"sub": "orchestrator"}}


async def test_an_agent_authenticated_by_private_key_jwt_can_exchange_and_narrow_its_grant(
    world: World,
) -> None:
    grant = await world.grant("ledger-agent", [GET_ACCOUNT, AGGREGATE])
    response = await world.token(
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": grant,
            "subject_token_type": GRANT_TOKEN_TYPE,
            "resource": world.mcp_resource,
            "scope": GET_ACCOUNT,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion_for(world.ledger_key, "ledger-agent", world.server.token_endpoint),
        }
    )
    assert response.status_code == 200, response.text
    assert world.deps.access_token_verifier().verify(response.json()["access_token"]).scopes == {GET_ACCOUNT}


async def test_an_exchange_asking_for_more_than_the_grant_is_invalid_scope(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH])
    response = await world.exchange(grant, scope=f"{SEARCH} {GET_ACCOUNT}")
    assert_oauth_error(response, 400, "invalid_scope")


async def test_an_exchange_for_another_resource_is_invalid_target(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH])
    for resource in (ORCHESTRATOR_API, "http://127.0.0.1:1/mcp"):
        assert_oauth_error(await world.exchange(grant, resource=resource), 400, "invalid_target")


async def test_a_revoked_grant_stops_working_at_once(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH])
    grant_id = jwt.decode(grant, options={"verify_signature": False})["jti"]
    assert (await world.exchange(grant)).status_code == 200

    await world.deps.grants.revoke(grant_id)

    assert_oauth_error(await world.exchange(grant), 400, "invalid_grant")
    assert not await world.deps.grants.is_active(grant_id)


async def test_ending_a_task_revokes_all_its_grants(world: World) -> None:
    issued = [
        await world.deps.grants.issue_grant(
            agent="sanctions-agent",
            scopes=[SEARCH],
            wf="wf-end",
            task="t-end",
            deadline=time.time() + 60,
            audience=world.mcp_resource,
            delegated_by="orchestrator",
        )
        for _ in range(2)
    ]
    revoked = await world.deps.grants.revoke_task("wf-end", "t-end")
    assert sorted(revoked) == sorted(i.grant.grant_id for i in issued)
    for grant in issued:
        assert_oauth_error(await world.exchange(grant.token), 400, "invalid_grant")


async def test_an_expired_grant_is_invalid_grant(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH], deadline_s=1.5)

    async def refused() -> bool:
        response = await world.exchange(grant)
        if response.status_code == 200:
            # Until then, every token it yields ends no later than the grant.
            grant_exp = jwt.decode(grant, options={"verify_signature": False})["exp"]
            assert (
                jwt.decode(response.json()["access_token"], options={"verify_signature": False})["exp"]
                <= grant_exp
            )
            return False
        assert_oauth_error(response, 400, "invalid_grant")
        return True

    await eventually(refused, timeout=5)


async def test_a_token_from_a_revoked_grant_fails_the_per_call_check(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH])
    claims = world.deps.access_token_verifier().verify((await world.exchange(grant)).json()["access_token"])
    await world.deps.grants.ensure_active(claims)

    await world.deps.grants.revoke(claims.grant_id or "")

    with pytest.raises(GrantError) as caught:
        await world.deps.grants.ensure_active(claims)
    assert caught.value.cause == "revoked"
    assert caught.value.reason == "invalid_token"


async def test_a_token_from_an_expired_grant_fails_the_per_call_check_despite_leeway(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH], deadline_s=2.5)
    token = (await world.exchange(grant)).json()["access_token"]
    verifier = world.deps.access_token_verifier()
    claims = verifier.verify(token)

    async def past_expiry() -> bool:
        return bool(time.time() >= claims.exp)

    await eventually(past_expiry, timeout=5)
    with pytest.raises(GrantError) as caught:
        await world.deps.grants.ensure_active(claims)
    assert caught.value.cause == "expired"
    assert verifier.verify(token).grant_id == claims.grant_id  # the token alone is still inside its leeway


async def test_a_grant_cannot_be_exchanged_by_another_client(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH])
    response = await world.exchange(grant, auth=("outside-caller", CALLER_SECRET))
    assert_oauth_error(response, 400, "invalid_grant")


async def test_a_forged_or_foreign_subject_token_is_invalid_grant(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH])
    header, payload, signature = grant.split(".")
    tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
    assert_oauth_error(await world.exchange(tampered), 400, "invalid_grant")
    access = await world.token({"grant_type": "client_credentials"}, auth=("outside-caller", CALLER_SECRET))
    assert_oauth_error(await world.exchange(access.json()["access_token"]), 400, "invalid_grant")


async def test_exchange_parameters_are_checked(world: World) -> None:
    grant = await world.grant("sanctions-agent", [SEARCH])
    wrong_type = await world.exchange(grant, subject_token_type=ACCESS_TOKEN_TYPE)
    assert_oauth_error(wrong_type, 400, "invalid_request")
    with_actor = await world.exchange(grant, actor_token=grant, actor_token_type=GRANT_TOKEN_TYPE)
    assert_oauth_error(with_actor, 400, "invalid_request")
    other_audience = await world.exchange(grant, audience=ORCHESTRATOR_API)
    assert_oauth_error(other_audience, 400, "invalid_target")


# --- admin API


async def test_the_admin_api_needs_the_admin_secret_and_changes_nothing_without_it(world: World) -> None:
    url = world.server.url + "/admin/clients"
    for headers in (
        {},
        {"Authorization": "Bearer not-the-admin-secret"},
        {"Authorization": f"Basic {ADMIN_SECRET}"},
    ):
        response = await world.http.post(
            url, json={"client_id": "intruder", "kind": "external"}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["error"]["reason"] == "unauthenticated"
    assert await world.deps.clients.get("intruder") is None


async def test_clients_registered_through_the_admin_api_can_get_tokens_until_deleted(world: World) -> None:
    url = world.server.url + "/admin/clients"
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}
    created = await world.http.post(
        url, json={"client_id": "partner-bank", "kind": "external", "scopes": [SEARCH]}, headers=admin
    )
    assert created.status_code == 201, created.text
    secret = created.json()["client_secret"]
    assert "secret_hash" not in created.json()

    duplicate = await world.http.post(
        url, json={"client_id": "partner-bank", "kind": "external"}, headers=admin
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["reason"] == "conflict"

    listing = (await world.http.get(url, headers=admin)).json()["clients"]
    assert "partner-bank" in {c["client_id"] for c in listing}
    assert all("secret_hash" not in c and "client_secret" not in c for c in listing)
    shown = (await world.http.get(f"{url}/partner-bank", headers=admin)).json()
    assert shown["token_endpoint_auth_methods"] == ["client_secret_basic", "client_secret_post"]

    token = await world.token({"grant_type": "client_credentials"}, auth=("partner-bank", secret))
    assert token.status_code == 200

    assert (await world.http.delete(f"{url}/partner-bank", headers=admin)).status_code == 204
    after = await world.token({"grant_type": "client_credentials"}, auth=("partner-bank", secret))
    assert_oauth_error(after, 401, "invalid_client")
    gone = await world.http.delete(f"{url}/partner-bank", headers=admin)
    assert gone.status_code == 404
    assert gone.json()["error"]["reason"] == "not_found"


async def test_the_admin_api_registers_private_key_jwt_clients_and_refuses_private_keys(world: World) -> None:
    url = world.server.url + "/admin/clients"
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}
    key = agent_key()
    leaked = await world.http.post(
        url, json={"client_id": "careless", "kind": "external", "jwk": key.private_jwk()}, headers=admin
    )
    assert leaked.status_code == 422
    assert leaked.json()["error"]["reason"] == "invalid_input"
    assert await world.deps.clients.get("careless") is None

    created = await world.http.post(
        url, json={"client_id": "keyed-partner", "kind": "external", "jwk": key.public_jwk()}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert "client_secret" not in created.json()
    response = await world.token(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion_for(key, "keyed-partner", world.server.url),
        }
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"client_id": "bad id with spaces", "kind": "external"},
        {"client_id": "ok-id", "kind": "superuser"},
        {"client_id": "ok-id", "kind": "external", "scopes": ['bad"scope']},
        {"client_id": "ok-id", "kind": "external", "secret": "short"},
        {"client_id": "ok-id", "kind": "external", "is_admin": True},
        {"kind": "external"},
        {"client_id": "ok-id", "kind": "external", "description": None},
    ],
    ids=[
        "bad-id",
        "bad-kind",
        "bad-scope",
        "short-secret",
        "unknown-field",
        "missing-id",
        "null-description",
    ],
)
async def test_invalid_registrations_are_refused_with_invalid_input(
    world: World, body: dict[str, Any]
) -> None:
    response = await world.http.post(
        world.server.url + "/admin/clients", json=body, headers={"Authorization": f"Bearer {ADMIN_SECRET}"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["reason"] == "invalid_input"
    assert await world.deps.clients.get("ok-id") is None


# --- audit


async def test_every_issuance_and_refusal_is_audited_without_tokens_or_secrets(world: World) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ok = await world.http.post(
        world.server.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=("outside-caller", CALLER_SECRET),
        headers={"traceparent": traceparent},
    )
    refused = await world.token({"grant_type": "client_credentials"}, auth=("outside-caller", "x" * 20))
    grant = await world.grant("sanctions-agent", [SEARCH])
    exchanged = await world.exchange(grant)

    records = await world.server.audit_records()
    assert verify_chain(records) is None
    token_records = [r for r in records if r["action"] == "oauth.token"]
    allowed = [r for r in token_records if r["outcome"] == "allowed"]
    denied = [r for r in token_records if r["outcome"] == "denied"]
    assert any(r["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" for r in allowed)
    assert any(r["actor"] == "outside-caller" and r["reason"] == "invalid_client" for r in denied)
    assert {r["reason"] for r in denied} >= {
        "invalid_client",
        "invalid_scope",
        "invalid_target",
        "invalid_grant",
    }
    grant_id = jwt.decode(grant, options={"verify_signature": False})["jti"]
    assert any(r["details"].get("grant_id") == grant_id and r["actor"] == "sanctions-agent" for r in allowed)
    assert any(r["action"] == "oauth.grant.issue" and r["outcome"] == "denied" for r in records)
    assert any(r["action"] == "oauth.grant.revoke" for r in records)

    dump = json.dumps(records, default=str)
    for secret in (
        ok.json()["access_token"],
        exchanged.json()["access_token"],
        grant,
        CALLER_SECRET,
        SANCTIONS_SECRET,
        ADMIN_SECRET,
        "x" * 20,
    ):
        assert secret not in dump
    assert refused.status_code == 401


async def test_a_trust_store_built_from_the_jwks_verifies_issued_tokens(world: World) -> None:
    jwks = (await world.http.get(world.server.url + "/.well-known/jwks.json")).json()
    response = await world.token({"grant_type": "client_credentials"}, auth=("outside-caller", CALLER_SECRET))
    verifier = TokenVerifier(
        TrustStore.from_jwks(jwks), issuers={world.server.url}, audience=world.mcp_resource
    )
    assert verifier.verify(response.json()["access_token"]).client_id == "outside-caller"
