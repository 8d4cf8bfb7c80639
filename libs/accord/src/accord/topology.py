"""The mesh topology, declared once in `deploy/topology.yaml`.

`accord up`, the test harness and `docker-compose.yml` all derive from this file: services, ports,
commands and environment are never written twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

ServiceKind = Literal["gateway", "registry", "orchestrator", "agent", "tools"]
_PLACEHOLDER = re.compile(r"\$\{(?P<kind>port|grpc_port|url|secret):(?P<name>[a-z0-9-]+)\}")


class ServiceSpec(BaseModel):
    """One service of the mesh."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    kind: ServiceKind
    module: str
    port: int = Field(ge=1024, le=65535)
    grpc_port: int | None = Field(default=None, ge=1024, le=65535)
    env: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)

    @property
    def package(self) -> str:
        return self.module.split(".")[0]


class Topology(BaseModel):
    """All services, in start order."""

    model_config = ConfigDict(extra="forbid")

    services: list[ServiceSpec]

    def by_name(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def of_kind(self, kind: ServiceKind) -> list[ServiceSpec]:
        return [spec for spec in self.services if spec.kind == kind]

    def secret_names(self) -> set[str]:
        return {
            match.group("name")
            for spec in self.services
            for value in spec.env.values()
            for match in _PLACEHOLDER.finditer(value)
            if match.group("kind") == "secret"
        }

    def resolve_env(
        self, spec: ServiceSpec, host: str, port_offset: int, secrets: dict[str, str]
    ) -> dict[str, str]:
        """The concrete environment of one service for a local run."""

        def substitute(match: re.Match[str]) -> str:
            kind, name = match.group("kind"), match.group("name")
            if kind == "secret":
                return secrets[name]
            target = self.by_name(name)
            if kind == "port":
                return str(target.port + port_offset)
            if kind == "grpc_port":
                if target.grpc_port is None:
                    raise ValueError(f"{name} has no grpc_port")
                return str(target.grpc_port + port_offset)
            return f"http://{host}:{target.port + port_offset}"

        env = {key: _PLACEHOLDER.sub(substitute, value) for key, value in spec.env.items()}
        env["ACCORD_HOST"] = host
        env["ACCORD_PORT"] = str(spec.port + port_offset)
        if spec.grpc_port is not None:
            env["ACCORD_GRPC_PORT"] = str(spec.grpc_port + port_offset)
        return env


def repo_root() -> Path:
    """The checkout this library runs from (overridable for installed copies)."""
    configured = os.environ.get("ACCORD_REPO_ROOT")
    if configured:
        return Path(configured)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "deploy" / "topology.yaml").exists():
            return parent
    return Path.cwd()


def load_topology(path: Path | None = None) -> Topology:
    source = path or repo_root() / "deploy" / "topology.yaml"
    return Topology.model_validate(yaml.safe_load(source.read_text()))
