"""What a deployed mesh adds to the topology: backing services, shared state, keys and who may call whom.

`docker-compose.yml` (`accord.compose`) and the Kubernetes manifests (`accord.kube`) are both rendered from
`deploy/topology.yaml` through this module, so the two deployments wire the same environment, the same
secrets and the same reachability.

Reachability follows DESIGN.md by service kind: agents call the gateway (tools, token exchange) and the
registry (registration); the orchestrator calls the registry (discovery) and the gateway (grants and the A2A
relay); the gateway calls the tool servers, the agents (relay) and the registry (resolving relay targets);
the registry calls agents to fetch and re-verify their cards. Nothing else crosses between services.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from accord import images
from accord.topology import ServiceKind, ServiceSpec, Topology

CALLS: dict[ServiceKind, tuple[ServiceKind, ...]] = {
    "agent": ("gateway", "registry"),
    "orchestrator": ("gateway", "registry"),
    "gateway": ("tools", "agent", "registry"),
    "registry": ("agent",),
    "tools": (),
}
# Reached from outside the deployment (published ports, load balancers).
PUBLIC_KINDS: frozenset[ServiceKind] = frozenset({"gateway", "orchestrator"})
# Serve a signed Agent Card and register it: they sign with the publisher's ring.
CARD_KINDS: frozenset[ServiceKind] = frozenset({"agent", "orchestrator"})
# Keep their stores in PostgreSQL when deployed (one database each), so replicas share them.
STATEFUL_KINDS: frozenset[ServiceKind] = frozenset({"gateway", "registry", "orchestrator"})
# Share the replay cache, rate limits and revocations of their replicas through Redis.
SHARED_CACHE_KINDS: frozenset[ServiceKind] = frozenset({"gateway"})

POSTGRES = "postgres"
REDIS = "redis"
COLLECTOR = "otel-collector"
TRACE_UI = "jaeger"
KEYS_INIT = "keys-init"
BACKING_PORTS: dict[str, tuple[int, ...]] = {
    POSTGRES: (5432,),
    REDIS: (6379,),
    COLLECTOR: (4317, 4318),
    TRACE_UI: (4317, 16686),
}
TRACE_UI_PORT = 16686
POSTGRES_USER = "accord"
# Names of variables, not secrets.
POSTGRES_PASSWORD = "POSTGRES_PASSWORD"  # noqa: S105
REDIS_PASSWORD = "REDIS_PASSWORD"  # noqa: S105
REGISTRY_ADMIN_SECRET = "REGISTRY_ADMIN_SECRET"  # noqa: S105
# Secrets of the deployment itself, on top of the topology's.
DEPLOYMENT_SECRETS = (POSTGRES_PASSWORD, REDIS_PASSWORD, REGISTRY_ADMIN_SECRET)

POSTGRES_IMAGE = "postgres:17-alpine"
REDIS_IMAGE = "redis:7.4-alpine"
COLLECTOR_IMAGE = "otel/opentelemetry-collector:0.115.1"
TRACE_UI_IMAGE = "jaegertracing/all-in-one:1.62.0"

_PLACEHOLDER = re.compile(r"\$\{(port|grpc_port|url|secret):([a-z0-9-]+)\}")
# A Kubernetes dependent variable, `$(NAME)`: expanded from a variable defined earlier in the container.
SECRET_REFERENCE = re.compile(r"\$\(([A-Z][A-Z0-9_]*)\)")

SecretRef = Callable[[str], str]
"""How a deployment writes a reference to a secret variable (`${VAR:?...}` in compose, `$(VAR)` in k8s)."""


def secret_variable(secret: str) -> str:
    """The variable (compose) and Secret key (Kubernetes) holding one topology secret."""
    return secret.upper().replace("-", "_") + "_SECRET"


def service_url(spec: ServiceSpec) -> str:
    """The address other services use: the service name resolves in both compose and Kubernetes."""
    return f"http://{spec.name}:{spec.port}"


def ports(spec: ServiceSpec) -> tuple[int, ...]:
    return tuple(p for p in (spec.port, spec.grpc_port) if p is not None)


def database_name(spec: ServiceSpec) -> str:
    return spec.name.replace("-", "_")


def stateful(topology: Topology) -> list[ServiceSpec]:
    return [spec for spec in topology.services if spec.kind in STATEFUL_KINDS]


def substitute(topology: Topology, value: str, secret: SecretRef) -> str:
    """A topology value with its placeholders resolved for a deployment."""

    def replace(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if kind == "secret":
            return secret(secret_variable(name))
        target = topology.by_name(name)
        if kind == "url":
            return service_url(target)
        if kind == "grpc_port":
            if target.grpc_port is None:
                raise ValueError(f"{name} has no grpc_port")
            return str(target.grpc_port)
        return str(target.port)

    return _PLACEHOLDER.sub(replace, value)


def single_secret(value: str) -> str | None:
    """The secret name when a topology value is exactly one secret placeholder."""
    match = _PLACEHOLDER.fullmatch(value)
    return match.group(2) if match and match.group(1) == "secret" else None


def deployment_env(topology: Topology, spec: ServiceSpec, secret: SecretRef) -> dict[str, str]:
    """The environment a deployment sets on top of the image's: addresses, topology env, state, keys."""
    env = {"ACCORD_PUBLIC_URL": service_url(spec)}
    env.update({key: substitute(topology, value, secret) for key, value in spec.env.items()})
    if spec.kind in STATEFUL_KINDS:
        password = secret(POSTGRES_PASSWORD)
        env["ACCORD_DATABASE_URL"] = (
            f"postgresql://{POSTGRES_USER}:{password}@{POSTGRES}:5432/{database_name(spec)}"
        )
    if spec.kind in SHARED_CACHE_KINDS:
        env["ACCORD_REDIS_URL"] = f"redis://:{secret(REDIS_PASSWORD)}@{REDIS}:6379/0"
    if spec.kind in CARD_KINDS:
        env["ACCORD_CARD_SIGNING_KEY_FILE"] = images.PUBLISHER_RING
    if spec.kind == "gateway":
        env["ACCORD_GATEWAY_KEY_FILE"] = images.GATEWAY_RING
    if spec.kind == "registry":
        env["ACCORD_REGISTRY_TRUST_DIR"] = images.TRUST_DIR
        env.setdefault("ACCORD_REGISTRY_ADMIN_SECRET", secret(REGISTRY_ADMIN_SECRET))
        # Agents live on private networks in both deployments; the networks (compose networks, Network-
        # Policies) bound what the registry can reach to the agents, and agents register themselves.
        env.setdefault("ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS", "true")
    return env


def key_volumes(spec: ServiceSpec) -> dict[str, str]:
    """Key material a service reads (volume or Secret name -> mount path), always read-only."""
    if spec.kind in CARD_KINDS:
        return {"publisher-keys": images.PUBLISHER_DIR}
    if spec.kind == "gateway":
        return {"gateway-keys": images.GATEWAY_KEYS_DIR}
    if spec.kind == "registry":
        return {"publisher-trust": images.TRUST_DIR}
    return {}


KEYS_INIT_COMMAND = [
    "python",
    "-m",
    "accord.key_setup",
    "--publisher-ring",
    images.PUBLISHER_RING,
    "--trust-file",
    images.TRUST_FILE,
    "--gateway-ring",
    images.GATEWAY_RING,
]


def postgres_init_sql(topology: Topology) -> str:
    """One database per stateful service (their tables share names, e.g. the audit log)."""
    lines = [
        "-- Rendered from deploy/topology.yaml by `python -m accord.deploy_files --write`.",
        "-- One database per stateful service, owned by the accord role the official image creates.",
    ]
    lines += [f"CREATE DATABASE {database_name(spec)} OWNER {POSTGRES_USER};" for spec in stateful(topology)]
    return "\n".join(lines) + "\n"


def callees(topology: Topology, spec: ServiceSpec) -> list[ServiceSpec]:
    return [s for s in topology.services if s.kind in CALLS[spec.kind] and s.name != spec.name]


def edges(topology: Topology) -> dict[tuple[str, str], tuple[int, ...]]:
    """Every allowed call (client, server) with the server ports it may use, backing services included."""
    allowed: dict[tuple[str, str], tuple[int, ...]] = {}
    for spec in topology.services:
        for server in callees(topology, spec):
            allowed[(spec.name, server.name)] = ports(server)
        allowed[(spec.name, COLLECTOR)] = BACKING_PORTS[COLLECTOR]
        if spec.kind in STATEFUL_KINDS:
            allowed[(spec.name, POSTGRES)] = BACKING_PORTS[POSTGRES]
        if spec.kind in SHARED_CACHE_KINDS:
            allowed[(spec.name, REDIS)] = BACKING_PORTS[REDIS]
    allowed[(COLLECTOR, TRACE_UI)] = (4317,)
    return allowed
