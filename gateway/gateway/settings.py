"""The gateway's settings: the upstream tool servers it federates and its own credential for each, and
the identity and policy files its authorization server and per-call authorization read."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from accord.settings import ServiceSettings
from accord.topology import repo_root

UPSTREAM_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class GatewaySettings(ServiceSettings):
    """`ACCORD_GATEWAY_UPSTREAMS` is JSON {upstream: url}; `ACCORD_GATEWAY_UPSTREAM_SECRETS` is JSON
    {upstream: secret}, the bearer credential the gateway itself presents to that upstream."""

    port: int = Field(default=8700, ge=1, le=65535)
    # The A2A relay's gRPC port (its JSON-RPC and HTTP+JSON endpoints share the HTTP port).
    grpc_port: int | None = Field(default=None, ge=1, le=65535)
    # Where the relay resolves the agent a message is addressed to (its card, its declared tools).
    registry_url: str | None = None
    gateway_upstreams: dict[str, str] = Field(default_factory=dict)
    gateway_upstream_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # How long a federated tool list is served before the upstreams are asked again.
    gateway_tools_ttl_seconds: float = Field(default=30.0, ge=0)
    # A down upstream is retried on demand, but not more often than this.
    gateway_upstream_retry_seconds: float = Field(default=1.0, ge=0)
    gateway_upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    # One upstream whose tools and prompts are also offered under their own names, as that server would
    # offer them (for clients built against it); scopes, policy and audit still use `<upstream>.<name>`.
    gateway_unprefixed_upstream: str | None = None
    # Sessions of clients that negotiate a handshake protocol version (<= 2025-11-25): they carry what an
    # upstream sends back while a call runs (progress, logs, elicitation, sampling) and resource
    # subscriptions. A session lives on the replica that opened it; an idle one is closed.
    gateway_session_idle_seconds: float = Field(default=1800.0, gt=0)
    gateway_max_sessions: int = Field(default=10_000, ge=1)
    gateway_max_sessions_per_client: int = Field(default=100, ge=1)
    # Signs the state of an elicitation/sampling round a 2026-07-28 caller echoes back
    # (`gateway.input_state`); replicas must share it. Unset: each process draws its own.
    gateway_input_state_secret: SecretStr | None = Field(default=None, min_length=32)
    # Extra Host header values the MCP endpoint accepts (DNS-rebinding protection), e.g. a compose name.
    gateway_allowed_hosts: list[str] = Field(default_factory=list)
    # Bearer secret of the client admin API (`/admin/clients`); without it that API is disabled.
    gateway_admin_secret: SecretStr | None = Field(default=None, min_length=16)
    # Registered OAuth clients (identities only); secrets come from the env vars each entry names.
    gateway_clients_file: Path = Field(default_factory=lambda: _policies_dir() / "clients.yaml")
    # The tool policy (deny by default): which tools each client may call, with which arguments, how often.
    gateway_policy_file: Path = Field(default_factory=lambda: _policies_dir() / "tools.yaml")
    # How often (seconds) the policy file's mtime is looked at; a changed valid file replaces the policy.
    gateway_policy_reload_seconds: float = Field(default=1.0, ge=0)
    # Other resources clients may ask this authorization server for tokens to (RFC 8707 resource
    # indicators), e.g. the orchestrator's API URL: JSON list of absolute http(s) URLs.
    gateway_resources: list[str] = Field(default_factory=list)
    # Other OIDC issuers whose access tokens `/mcp` accepts: JSON {issuer: jwks_url}.
    gateway_trusted_issuers: dict[str, str] = Field(default_factory=dict)
    # The authorization server's signing keys (private JWKs, 0600); created on first start.
    gateway_key_file: Path | None = None
    # Clock skew tolerated on token `exp`/`nbf`, in seconds (bounded: never more than two minutes).
    gateway_token_leeway_seconds: int = Field(default=30, ge=0, le=120)
    # Lifetime of tokens issued by client credentials and by grant exchange, in seconds.
    gateway_client_token_lifetime_seconds: int = Field(default=600, gt=0, le=86_400)
    gateway_access_token_lifetime_seconds: int = Field(default=300, gt=0, le=3600)
    # The delegation policy (deny by default): which client may call which agent's skills through the relay.
    gateway_delegation_file: Path = Field(default_factory=lambda: _policies_dir() / "delegation.yaml")
    # Lifetime of the signature on a relayed message or reply (it is verified on arrival, so short).
    gateway_relay_signature_lifetime_seconds: int = Field(default=60, gt=0, le=600)
    # The longest step deadline a caller may ask for; a later `accord.deadline` is cut down to it.
    gateway_relay_max_deadline_seconds: int = Field(default=900, gt=0, le=3600)
    # How long the relay waits for an agent's answer to one call.
    gateway_relay_timeout_seconds: float = Field(default=120.0, gt=0)
    # How long a registry answer about an agent is reused (quarantines apply after at most this).
    gateway_relay_registry_ttl_seconds: float = Field(default=2.0, ge=0, le=60)
    # Strict JSON at the relay: the largest body and the deepest nesting accepted.
    gateway_relay_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=16_777_216)
    gateway_relay_max_json_depth: int = Field(default=32, ge=4, le=64)

    @model_validator(mode="after")
    def _every_upstream_is_named_reachable_and_credentialed(self) -> GatewaySettings:
        for name, url in self.gateway_upstreams.items():
            if not UPSTREAM_NAME.match(name):
                raise ValueError(f"upstream name {name!r} must match {UPSTREAM_NAME.pattern}")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"upstream {name!r} needs an http(s) URL")
            if parts.username or parts.password:
                raise ValueError(f"upstream {name!r}: credentials belong in ACCORD_GATEWAY_UPSTREAM_SECRETS")
            secret = self.gateway_upstream_secrets.get(name)
            if secret is None or not secret.get_secret_value():
                raise ValueError(f"upstream {name!r} has no secret in ACCORD_GATEWAY_UPSTREAM_SECRETS")
        unprefixed = self.gateway_unprefixed_upstream
        if unprefixed is not None and unprefixed not in self.gateway_upstreams:
            raise ValueError(f"ACCORD_GATEWAY_UNPREFIXED_UPSTREAM {unprefixed!r} is not an upstream")
        strays = sorted(set(self.gateway_upstream_secrets) - set(self.gateway_upstreams))
        if strays:
            raise ValueError(f"secrets given for unknown upstreams: {', '.join(strays)}")
        if self.registry_url is not None:
            parts = urlsplit(self.registry_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("the registry URL must be an http(s) URL")
        for issuer, jwks_url in self.gateway_trusted_issuers.items():
            for name, url in (("trusted issuer", issuer), (f"JWKS URL of {issuer}", jwks_url)):
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ValueError(f"{name} must be an http(s) URL")
        return self

    @property
    def key_file(self) -> Path:
        return self.gateway_key_file or self.state_dir / "gateway-keys.json"

    @property
    def mcp_resource(self) -> str:
        """The MCP endpoint's URL: the audience of the tokens `/mcp` accepts (RFC 8707 resource)."""
        return self.base_url + "/mcp"

    def allowed_hosts(self) -> list[str]:
        """Host header values the MCP endpoint accepts: loopback, the bind host, the public URL's host."""
        names = list(_LOOPBACK_HOSTS)
        if self.host not in _WILDCARD_HOSTS:
            names.append(_host_form(self.host))
        public_host = urlsplit(self.public_url).hostname if self.public_url else None
        if public_host:
            names.append(_host_form(public_host))
        names.extend(self.gateway_allowed_hosts)
        unique = list(dict.fromkeys(names))
        # A Host header carries the port unless it is the scheme's default, so allow both forms.
        return [form for name in unique for form in (name, f"{name}:*")]

    def allowed_origins(self) -> list[str]:
        return [f"{scheme}://{host}" for host in self.allowed_hosts() for scheme in ("http", "https")]


def _host_form(host: str) -> str:
    """How a host appears in a Host header: IPv6 literals are bracketed."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _policies_dir() -> Path:
    return repo_root() / "deploy" / "policies"
