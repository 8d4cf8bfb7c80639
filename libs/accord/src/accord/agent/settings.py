"""What an agent reads from its environment, on top of every service's settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from accord.settings import ServiceSettings


class AgentSettings(ServiceSettings):
    """A specialist knows exactly one tool endpoint: the gateway's `/mcp`. There is no upstream URL here."""

    gateway_url: str
    # The agent's own OAuth client at the gateway (client_id = the agent's name); it exchanges task grants.
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    registry_url: str | None = None
    grpc_port: int = Field(ge=1, le=65535)
    # Injected delay per skill execution (ms); tests use it to prove that steps run in parallel.
    fault_delay_ms: int = Field(default=0, ge=0)
    # How long to keep trying to register with the registry before giving up.
    registration_timeout_s: float = Field(default=30.0, gt=0)
    # Deadline for one tool call at the gateway.
    tool_timeout_s: float = Field(default=30.0, gt=0)
    # Clock skew tolerated on a signed message's `iat`/`exp` (bounded: a wide window weakens expiry).
    message_skew_s: float = Field(default=5.0, ge=0, le=60)

    @property
    def gateway_issuer(self) -> str:
        """The gateway as the issuer of the messages its relay signs: its base URL."""
        return self.gateway_url.rstrip("/")

    @property
    def mcp_url(self) -> str:
        return self.gateway_url.rstrip("/") + "/mcp"

    @property
    def card_url(self) -> str:
        return self.base_url + "/.well-known/agent-card.json"
