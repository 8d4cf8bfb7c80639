"""Orchestrator settings."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from accord.settings import ServiceSettings
from accord.topology import repo_root


class OrchestratorSettings(ServiceSettings):
    registry_url: str
    gateway_url: str | None = None
    grpc_port: int = Field(ge=1, le=65535)
    workflows_dir: Path = Field(default_factory=lambda: repo_root() / "deploy" / "workflows")
    step_timeout_s: float = Field(default=30.0, gt=0)
    # A step without `timeout_s` gets `factor` x its agents' observed p95 (`orchestrator.latency`), within
    # [floor, step_timeout_s], once they have `min_samples` calls behind them; step_timeout_s until then.
    deadline_latency_factor: float = Field(default=4.0, ge=1.0, le=100.0)
    deadline_floor_s: float = Field(default=2.0, gt=0)
    deadline_min_samples: int = Field(default=20, ge=1, le=100)
    # What model tokens cost (`orchestrator.prices`): agents report tokens, this file prices them.
    model_prices_file: Path = Field(
        default_factory=lambda: repo_root() / "deploy" / "policies" / "model-prices.yaml"
    )
    run_wait_max_s: float = Field(default=60.0, gt=0)
    # The orchestrator's OAuth client at the gateway: it sends every step through the gateway's A2A relay
    # with its `a2a:delegate` token, and replies must be signed for it (their audience is this client id).
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # How steps reach the relay: its A2A transport, and whether replies stream (task events as they come)
    # to agents whose card says they can. Streaming is measured to cost a fan-out far less: the agent's
    # task is known from the first event and its end arrives as it happens, where a unary step must be
    # polled for (each poll a relayed, signed exchange, and the end seen only at the next poll).
    relay_transport: Literal["JSONRPC", "HTTP+JSON", "GRPC"] = "JSONRPC"
    relay_streaming: bool = True
    # This replica's name in run leases (default: host name and base URL: stable across local restarts,
    # so a restarted process resumes its own runs at once, yet distinct for replicas that share one
    # public URL, as pods behind a Service do), and how long a lease holds unless renewed: another replica
    # takes over a dead one's running runs within about this long.
    instance_id: str | None = None
    run_lease_s: float = Field(default=15.0, gt=0, le=3600)
    # Clock skew tolerated on a signed reply's `iat`/`exp` (bounded: a wide window weakens expiry).
    reply_skew_s: float = Field(default=5.0, ge=0, le=60)
    # Every caller presents an access token: from the gateway's authorization server (ACCORD_GATEWAY_URL)
    # or from another OIDC issuer trusted by its JWKS, JSON {issuer: jwks_url}.
    trusted_issuers: dict[str, str] = Field(default_factory=dict)
    # This API's resource indicator (RFC 8707), the audience its tokens must name. Default: the base URL.
    api_resource: str | None = None
    # Circuit breakers per agent: failures in a row that take an agent out of rotation, and for how long
    # before one step probes it again.
    breaker_failures: int = Field(default=3, ge=1, le=100)
    breaker_open_s: float = Field(default=15.0, gt=0, le=3600)
    # Clock skew tolerated on a caller's token `exp`/`nbf` (bounded, like the gateway's).
    token_leeway_s: int = Field(default=30, ge=0, le=120)

    @model_validator(mode="after")
    def _gateway_credentials_come_whole(self) -> OrchestratorSettings:
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError("ACCORD_CLIENT_ID and ACCORD_CLIENT_SECRET go together")
        if self.client_id is not None and self.gateway_url is None:
            raise ValueError("gateway credentials need ACCORD_GATEWAY_URL")
        return self

    @property
    def resource(self) -> str:
        return (self.api_resource or self.base_url).rstrip("/")

    def token_issuers(self) -> dict[str, str | None]:
        """Issuer -> JWKS URL of every issuer whose tokens callers may present (None: the gateway's own)."""
        issuers: dict[str, str | None] = dict(self.trusted_issuers)
        if self.gateway_url is not None:
            issuers[self.gateway_url.rstrip("/")] = None
        return issuers

    def lease_owner(self) -> str:
        return self.instance_id or f"{socket.gethostname()} {self.base_url}"
