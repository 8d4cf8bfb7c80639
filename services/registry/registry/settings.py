"""What the registry reads from its environment (prefix `ACCORD_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from accord.card_signing import trust_dir
from accord.keys import SIGNING_ALGORITHMS, check_algorithms
from accord.settings import ServiceSettings
from accord.topology import repo_root
from registry.catalog import DEFAULT_SELF_OWNER
from registry.inventory import OWNER
from registry.targets import parse_ip_port


class RegistrySettings(ServiceSettings):
    """Registry settings: REST on `port`, gRPC on `grpc_port`, bounded card fetches, card trust.

    `ACCORD_REGISTRY_TRUST_DIR` holds the trusted publishers' JWKS files (`*.jwks.json`; default
    `<state_dir>/trust`), re-read when they change. `ACCORD_REGISTRY_CARD_ALGORITHMS` (a JSON list) narrows
    the accepted signature algorithms; only asymmetric ones can be named. Every registered card is fetched
    and verified again every `ACCORD_REGISTRY_REFRESH_INTERVAL_S` seconds (0 turns the refresher off).

    Writes: `ACCORD_REGISTRY_ADMIN_SECRET` is the operators' bearer credential (no secret: no operator
    writes). `ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS=true` is local mode (`accord up`, compose): cards may
    be fetched from loopback and private networks, and agents may register and remove themselves (see
    `registry.catalog`), owned by `ACCORD_REGISTRY_SELF_OWNER`. Outside local mode only public addresses
    are fetched, plus the exact `ip:port` targets in `ACCORD_REGISTRY_ALLOWED_TARGETS` (a JSON list).
    `ACCORD_REGISTRY_POLICY_FILE` is the gateway's tool policy, read for the inventory's data access.
    """

    port: int = Field(default=8701, ge=1, le=65535)
    grpc_port: int = Field(default=8801, ge=1, le=65535)
    card_fetch_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Real cards are a few KiB; the bound keeps a hostile card URL from exhausting memory.
    card_max_bytes: int = Field(default=256 * 1024, ge=1024)
    registry_trust_dir: Path | None = None
    registry_card_algorithms: list[str] = Field(default_factory=lambda: sorted(SIGNING_ALGORITHMS))
    registry_refresh_interval_s: float = Field(default=60.0, ge=0)
    registry_admin_secret: SecretStr | None = None
    registry_allow_private_targets: bool = False
    registry_allowed_targets: list[str] = Field(default_factory=list)
    registry_self_owner: str = Field(default=DEFAULT_SELF_OWNER, pattern=OWNER.pattern)
    registry_policy_file: Path = Field(
        default_factory=lambda: repo_root() / "deploy" / "policies" / "tools.yaml"
    )

    @field_validator("registry_admin_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the registry admin secret needs at least 16 characters")
        return value

    @field_validator("registry_allowed_targets")
    @classmethod
    def _ip_ports(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_ip_port(entry)
        return value

    @field_validator("registry_card_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        check_algorithms(value)
        return value

    @property
    def trust_dir(self) -> Path:
        return self.registry_trust_dir or trust_dir(self.state_dir)
