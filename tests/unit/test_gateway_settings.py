"""The gateway reads its upstreams and their credentials from the environment and refuses bad ones."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings

UPSTREAMS = {"sanctions": "http://127.0.0.1:8740/mcp", "ledger": "http://127.0.0.1:8742/mcp"}
SECRETS = {"sanctions": "s-secret-value", "ledger": "l-secret-value"}


def from_env(
    monkeypatch: pytest.MonkeyPatch, upstreams: object, secrets: object, **env: str
) -> GatewaySettings:
    monkeypatch.setenv("ACCORD_GATEWAY_UPSTREAMS", json.dumps(upstreams))
    monkeypatch.setenv("ACCORD_GATEWAY_UPSTREAM_SECRETS", json.dumps(secrets))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return GatewaySettings()


def test_upstreams_and_secrets_are_read_from_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, UPSTREAMS, SECRETS, ACCORD_PORT="9700")
    assert settings.gateway_upstreams == UPSTREAMS
    assert settings.gateway_upstream_secrets["ledger"].get_secret_value() == "l-secret-value"
    assert settings.port == 9700


def test_secrets_never_appear_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, UPSTREAMS, SECRETS)
    assert "s-secret-value" not in repr(settings)
    assert "s-secret-value" not in settings.model_dump_json()


def test_an_upstream_without_a_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="'ledger' has no secret"):
        from_env(monkeypatch, UPSTREAMS, {"sanctions": "s-secret-value"})


def test_an_empty_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="'ledger' has no secret"):
        from_env(monkeypatch, UPSTREAMS, {**SECRETS, "ledger": ""})


def test_a_secret_for_an_unknown_upstream_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="unknown upstreams: bureau"):
        from_env(monkeypatch, UPSTREAMS, {**SECRETS, "bureau": "b"})


@pytest.mark.parametrize("name", ["Sanctions", "1ledger", "led.ger", "led_ger", ""])
def test_upstream_names_must_be_lowercase_slugs(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    with pytest.raises(ValidationError, match="must match"):
        from_env(monkeypatch, {name: "http://127.0.0.1:1/mcp"}, {name: "x"})


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/mcp", "127.0.0.1:8740/mcp", "http:///mcp"])
def test_upstream_urls_must_be_http(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    with pytest.raises(ValidationError, match="needs an http"):
        from_env(monkeypatch, {"ledger": url}, {"ledger": "x"})


def test_credentials_in_an_upstream_url_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="credentials belong in"):
        from_env(monkeypatch, {"ledger": "http://user:pw@127.0.0.1:8742/mcp"}, {"ledger": "x"})


def test_allowed_hosts_cover_loopback_the_bind_host_and_the_public_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = from_env(
        monkeypatch,
        UPSTREAMS,
        SECRETS,
        ACCORD_HOST="10.0.0.5",
        ACCORD_PUBLIC_URL="http://gateway:8700",
        ACCORD_GATEWAY_ALLOWED_HOSTS='["gw.example"]',
    )
    hosts = settings.allowed_hosts()
    for name in ("127.0.0.1", "localhost", "[::1]", "10.0.0.5", "gateway", "gw.example"):
        assert name in hosts
        assert f"{name}:*" in hosts
    assert "http://gateway:*" in settings.allowed_origins()


def test_a_wildcard_bind_host_is_not_an_allowed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, UPSTREAMS, SECRETS, ACCORD_HOST="0.0.0.0")
    assert "0.0.0.0" not in settings.allowed_hosts()


def test_authorization_files_default_to_the_deployed_policies_and_the_key_to_the_state_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = from_env(
        monkeypatch, UPSTREAMS, SECRETS, ACCORD_STATE_DIR="/var/lib/accord", ACCORD_PORT="8700"
    )
    assert settings.gateway_clients_file.parts[-3:] == ("deploy", "policies", "clients.yaml")
    assert settings.gateway_policy_file.parts[-3:] == ("deploy", "policies", "tools.yaml")
    assert str(settings.key_file) == "/var/lib/accord/gateway-keys.json"
    assert settings.mcp_resource == "http://127.0.0.1:8700/mcp"
    assert settings.gateway_admin_secret is None
    assert settings.gateway_trusted_issuers == {}


def test_trusted_issuers_are_read_as_json_and_must_be_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    issuers = {"https://idp.example": "https://idp.example/jwks"}
    settings = from_env(monkeypatch, UPSTREAMS, SECRETS, ACCORD_GATEWAY_TRUSTED_ISSUERS=json.dumps(issuers))
    assert settings.gateway_trusted_issuers == issuers
    with pytest.raises(ValidationError, match="JWKS URL"):
        from_env(
            monkeypatch, UPSTREAMS, SECRETS, ACCORD_GATEWAY_TRUSTED_ISSUERS='{"https://idp.example": "x"}'
        )


def test_a_short_admin_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="gateway_admin_secret"):
        from_env(monkeypatch, UPSTREAMS, SECRETS, ACCORD_GATEWAY_ADMIN_SECRET="short")
