"""docker-compose.yml rendered from deploy/topology.yaml (`accord compose --write`).

tests/unit/test_compose_topology.py checks the committed file still equals the rendering, so an edit to
one without the other fails the suite.

Networks carry the reachability of `accord.deployment`: containers on one compose network can all reach each
other, so each agent and each tool server gets a network of its own that only its peers join (the gateway
and the registry for an agent, the gateway for a tool server), and the gateway, registry and orchestrator,
which may all call one another, share `control`. Only `public` (the published gateway and orchestrator)
and `traces` (the trace UI) are not internal.
"""

from __future__ import annotations

from typing import Any

import yaml

from accord import deployment, images
from accord.topology import ServiceSpec, Topology

PUBLISHED = tuple(sorted(deployment.PUBLIC_KINDS))
CONTROL = "control"
PUBLIC = "public"
TRACES = "traces"
HARDENED: dict[str, Any] = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
}


def required(variable: str) -> str:
    return f"${{{variable}:?{variable} is required}}"


def leaf_network(spec: ServiceSpec) -> str:
    return f"{spec.name}-net"


def networks(topology: Topology) -> dict[str, list[str]]:
    """Network name -> the containers on it."""
    hubs = [s.name for s in topology.services if s.kind in ("gateway", "registry", "orchestrator")]
    plan: dict[str, list[str]] = {
        PUBLIC: [s.name for s in topology.services if s.kind in deployment.PUBLIC_KINDS],
        CONTROL: [*hubs, deployment.COLLECTOR],
    }
    for spec in topology.services:
        if spec.kind in ("agent", "tools"):
            callers = [s.name for s in topology.services if spec.kind in deployment.CALLS[s.kind]]
            plan[leaf_network(spec)] = [spec.name, *callers, deployment.COLLECTOR]
    plan[f"{deployment.POSTGRES}-net"] = [
        deployment.POSTGRES,
        *(s.name for s in deployment.stateful(topology)),
    ]
    plan[f"{deployment.REDIS}-net"] = [
        deployment.REDIS,
        *(s.name for s in topology.services if s.kind in deployment.SHARED_CACHE_KINDS),
    ]
    plan[TRACES] = [deployment.COLLECTOR, deployment.TRACE_UI]
    return plan


def networks_of(plan: dict[str, list[str]], name: str) -> list[str]:
    return [network for network, members in plan.items() if name in members]


def accord_service(topology: Topology, spec: ServiceSpec, plan: dict[str, list[str]]) -> dict[str, Any]:
    env = {"ACCORD_PORT": str(spec.port)}
    if spec.grpc_port is not None:
        env["ACCORD_GRPC_PORT"] = str(spec.grpc_port)
    env.update(deployment.deployment_env(topology, spec, required))
    service: dict[str, Any] = {
        "build": {"context": ".", "dockerfile": images.dockerfile_path(spec)},
        "image": f"{images.image_name(spec)}:latest",
        "restart": "unless-stopped",
        **HARDENED,
        "user": f"{images.USER_ID}:{images.USER_ID}",
        "tmpfs": [f"{images.TMP_DIR}:size=256m"],
        "environment": env,
        "healthcheck": {
            "test": ["CMD", *images.HEALTHCHECK_COMMAND],
            "interval": "10s",
            "timeout": "3s",
            "retries": 3,
            "start_period": "30s",
        },
        "networks": networks_of(plan, spec.name),
    }
    if spec.kind in deployment.PUBLIC_KINDS:
        service["ports"] = [f"{port}:{port}" for port in deployment.ports(spec)]
    mounts = deployment.key_volumes(spec)
    if mounts:
        service["volumes"] = [f"{volume}:{path}:ro" for volume, path in mounts.items()]
    depends: dict[str, dict[str, str]] = {d: {"condition": "service_healthy"} for d in spec.depends_on}
    if mounts:
        depends[deployment.KEYS_INIT] = {"condition": "service_completed_successfully"}
    if spec.kind in deployment.STATEFUL_KINDS:
        depends[deployment.POSTGRES] = {"condition": "service_healthy"}
    if spec.kind in deployment.SHARED_CACHE_KINDS:
        depends[deployment.REDIS] = {"condition": "service_healthy"}
    if depends:
        service["depends_on"] = depends
    return service


def keys_init(topology: Topology) -> dict[str, Any]:
    # Any Accord image carries the library; the registry's is small.
    registry = topology.of_kind("registry")[0]
    volumes = {"publisher-keys": images.PUBLISHER_DIR, "gateway-keys": images.GATEWAY_KEYS_DIR}
    volumes["publisher-trust"] = images.TRUST_DIR
    return {
        "build": {"context": ".", "dockerfile": images.dockerfile_path(registry)},
        "image": f"{images.image_name(registry)}:latest",
        "command": deployment.KEYS_INIT_COMMAND,
        "restart": "no",
        **HARDENED,
        "user": f"{images.USER_ID}:{images.USER_ID}",
        "network_mode": "none",
        "volumes": [f"{volume}:{path}" for volume, path in volumes.items()],
    }


def backing_services(topology: Topology, plan: dict[str, list[str]]) -> dict[str, Any]:
    postgres_password = required(deployment.POSTGRES_PASSWORD)
    redis_password = required(deployment.REDIS_PASSWORD)
    return {
        deployment.KEYS_INIT: keys_init(topology),
        deployment.POSTGRES: {
            "image": deployment.POSTGRES_IMAGE,
            "restart": "unless-stopped",
            **HARDENED,
            "cap_add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
            "tmpfs": [images.TMP_DIR, "/var/run/postgresql"],
            "environment": {
                "POSTGRES_USER": deployment.POSTGRES_USER,
                "POSTGRES_PASSWORD": postgres_password,
                "POSTGRES_DB": deployment.POSTGRES_USER,
            },
            "volumes": [
                "postgres-data:/var/lib/postgresql/data",
                "./deploy/docker/postgres-init.sql:/docker-entrypoint-initdb.d/10-accord.sql:ro",
            ],
            "healthcheck": {
                "test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", deployment.POSTGRES_USER],
                "interval": "5s",
                "timeout": "3s",
                "retries": 10,
            },
            "networks": networks_of(plan, deployment.POSTGRES),
        },
        deployment.REDIS: {
            "image": deployment.REDIS_IMAGE,
            "restart": "unless-stopped",
            **HARDENED,
            "cap_add": ["CHOWN", "SETGID", "SETUID"],
            "command": ["redis-server", "--requirepass", redis_password, "--save", "", "--appendonly", "no"],
            "environment": {"REDISCLI_AUTH": redis_password},
            "healthcheck": {
                "test": ["CMD-SHELL", "redis-cli ping | grep -q PONG"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 10,
            },
            "networks": networks_of(plan, deployment.REDIS),
        },
        deployment.COLLECTOR: {
            "image": deployment.COLLECTOR_IMAGE,
            "restart": "unless-stopped",
            **HARDENED,
            "command": ["--config=/etc/otelcol/config.yaml"],
            "volumes": ["./deploy/otel/collector.yaml:/etc/otelcol/config.yaml:ro"],
            "depends_on": {deployment.TRACE_UI: {"condition": "service_started"}},
            "networks": networks_of(plan, deployment.COLLECTOR),
        },
        deployment.TRACE_UI: {
            "image": deployment.TRACE_UI_IMAGE,
            "restart": "unless-stopped",
            **HARDENED,
            "tmpfs": [images.TMP_DIR],
            "environment": {"COLLECTOR_OTLP_ENABLED": "true"},
            # The trace UI is for the operator at the host only, never published beyond loopback.
            "ports": [f"127.0.0.1:{deployment.TRACE_UI_PORT}:{deployment.TRACE_UI_PORT}"],
            "networks": networks_of(plan, deployment.TRACE_UI),
        },
    }


def compose_document(topology: Topology) -> dict[str, Any]:
    plan = networks(topology)
    services = {spec.name: accord_service(topology, spec, plan) for spec in topology.services}
    services.update(backing_services(topology, plan))
    return {
        "name": "accord",
        "services": services,
        "networks": {network: {} if network in (PUBLIC, TRACES) else {"internal": True} for network in plan},
        "volumes": {
            name: {} for name in ("postgres-data", "publisher-keys", "gateway-keys", "publisher-trust")
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """No anchors: every service reads in full on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_compose(topology: Topology) -> str:
    header = [
        "# Accord on docker compose. Every service is a container named like its folder.",
        "# Rendered from deploy/topology.yaml by `python -m accord.deploy_files --write`; a test fails when",
        "# they disagree. Secrets come from the environment (or an .env file); each is required.",
    ]
    body = yaml.dump(compose_document(topology), Dumper=_PlainDumper, sort_keys=False, width=10**6)
    return "\n".join(header) + "\n" + body
