"""Settings shared by every service: one env prefix (`ACCORD_`), no module-level instances."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every Accord service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    public_url: str | None = None
    state_dir: Path = Path(".accord")
    database_url: str | None = None
    redis_url: str | None = None
    log_level: str = "INFO"

    @property
    def base_url(self) -> str:
        """The URL other services use to reach this one."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def grpc_address(self, grpc_port: int) -> str:
        """The gRPC address advertised in cards: the public host, never a wildcard bind address."""
        host = urlparse(self.base_url).hostname or self.host
        return f"{host}:{grpc_port}"

    def sqlite_url(self, service: str) -> str:
        """The embedded default store: one SQLite file per service under the state dir."""
        return self.database_url or f"sqlite+aiosqlite:///{self.state_dir / f'{service}.db'}"

    @model_validator(mode="after")
    def _production_needs_shared_state(self) -> ServiceSettings:
        if self.environment == "production" and self.database_url is None:
            raise ValueError("ACCORD_DATABASE_URL is required when ACCORD_ENVIRONMENT=production")
        return self
