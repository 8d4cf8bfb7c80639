"""Kubernetes manifests under deploy/k8s, rendered from deploy/topology.yaml (one source of truth).

`render_k8s(topology, root)` returns every file of the tree (kustomize base plus `dev` and `prod`
overlays); `python -m accord.deploy_files --write` writes them and a test checks the committed tree equals
the rendering. The environment, secrets and reachability are those of `accord.deployment`, the same ones
docker-compose.yml gets: NetworkPolicies deny everything, then allow exactly `deployment.edges`.

Secrets are placeholders that keep a service from starting (too short, or not a key ring); replace them
from a secret manager (`deploy/k8s/README.md`). The prod overlay deletes them, so applying it can never
overwrite the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from accord import deployment, images
from accord.topology import ServiceSpec, Topology

NAME_LABEL = "app.kubernetes.io/name"
PART_OF = {"app.kubernetes.io/part-of": "accord"}
SECRETS = "accord-secrets"
PUBLISHER_KEYS = "accord-publisher-keys"
GATEWAY_KEYS = "accord-gateway-keys"
TRUST = "accord-trust"
CARDS = "accord-cards"
POLICIES = "accord-policies"
WORKFLOWS = "accord-workflows"
COLLECTOR_CONFIG = "accord-otel-collector"
POSTGRES_INIT = "accord-postgres-init"
PLACEHOLDER = "REPLACE_ME"
# ConfigMaps are mounted where the image keeps the same files, so every default path still holds.
POLICIES_DIR = f"{images.APP_DIR}/deploy/policies"
WORKFLOWS_DIR = f"{images.APP_DIR}/deploy/workflows"
PUBLIC_REPLICAS = {"dev": (1, 2), "prod": (3, 12)}
PROD_TAG = "0.1.0"
POSTGRES_UID = 70  # the postgres user of the alpine image
REDIS_UID = 999  # the redis user of the alpine image
PLACEHOLDER_OBJECTS = (
    ("Secret", SECRETS),
    ("Secret", PUBLISHER_KEYS),
    ("Secret", GATEWAY_KEYS),
    ("ConfigMap", TRUST),
)


# As long as the gateway keeps an idle MCP session (`ACCORD_GATEWAY_SESSION_IDLE_SECONDS`).
GATEWAY_SESSION_AFFINITY_S = 1800


def labels(name: str, component: str) -> dict[str, str]:
    return {NAME_LABEL: name, "app.kubernetes.io/component": component, **PART_OF}


def meta(name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": labels(name, component)}


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def secret_ref(key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": SECRETS, "key": key}}


def kube_env(topology: Topology, spec: ServiceSpec) -> list[dict[str, Any]]:
    """Secrets come from the Secret; a value that embeds one (a JSON map, a URL) expands `$(VAR)` from a
    variable defined just before it, which Kubernetes resolves when it starts the container."""
    env = {"ACCORD_PORT": str(spec.port)}
    if spec.grpc_port is not None:
        env["ACCORD_GRPC_PORT"] = str(spec.grpc_port)
    env.update(deployment.deployment_env(topology, spec, lambda variable: f"$({variable})"))
    inputs: dict[str, dict[str, Any]] = {}
    entries: list[dict[str, Any]] = []
    for key, value in env.items():
        variables = deployment.SECRET_REFERENCE.findall(value)
        if variables and value == f"$({variables[0]})":
            entries.append({"name": key, "valueFrom": secret_ref(variables[0])})
            continue
        for variable in variables:
            inputs.setdefault(variable, {"name": variable, "valueFrom": secret_ref(variable)})
        entries.append({"name": key, "value": value})
    return [*inputs.values(), *entries]


def volumes_of(spec: ServiceSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): a tmpfs for state, then what the service reads, read-only."""
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": images.TMP_DIR}]

    def add(name: str, source: dict[str, Any], path: str) -> None:
        volumes.append({"name": name, **source})
        mounts.append({"name": name, "mountPath": path, "readOnly": True})

    if spec.kind in deployment.CARD_KINDS:
        add(
            "publisher-keys",
            {"secret": {"secretName": PUBLISHER_KEYS, "defaultMode": 0o440}},
            images.PUBLISHER_DIR,
        )
    if spec.kind in ("agent", "orchestrator"):
        add("cards", {"configMap": {"name": CARDS}}, f"{images.APP_DIR}/agent-cards")
    if spec.kind == "gateway":
        add(
            "gateway-keys",
            {"secret": {"secretName": GATEWAY_KEYS, "defaultMode": 0o440}},
            images.GATEWAY_KEYS_DIR,
        )
    if spec.kind in ("gateway", "registry", "orchestrator"):
        add("policies", {"configMap": {"name": POLICIES}}, POLICIES_DIR)
    if spec.kind == "registry":
        add("trust", {"configMap": {"name": TRUST}}, images.TRUST_DIR)
    if spec.kind == "orchestrator":
        add("workflows", {"configMap": {"name": WORKFLOWS}}, WORKFLOWS_DIR)
    return volumes, mounts


def http_probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures}


def container_ports(spec: ServiceSpec) -> list[dict[str, Any]]:
    named = [("http", spec.port), ("grpc", spec.grpc_port)]
    return [{"name": name, "containerPort": port} for name, port in named if port is not None]


def resources(spec: ServiceSpec) -> dict[str, Any]:
    if spec.kind in deployment.PUBLIC_KINDS:
        return {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    return {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


def workload(topology: Topology, spec: ServiceSpec) -> list[dict[str, Any]]:
    volumes, mounts = volumes_of(spec)
    container = {
        "name": spec.name,
        "image": f"{images.image_name(spec)}:latest",
        "imagePullPolicy": "IfNotPresent",
        "command": images.service_command(spec),
        "ports": container_ports(spec),
        "env": kube_env(topology, spec),
        "startupProbe": http_probe("/healthz", 2, 30),
        "livenessProbe": http_probe("/healthz", 10, 3),
        "readinessProbe": http_probe("/readyz", 5, 3),
        "resources": resources(spec),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    scaled = spec.kind in deployment.PUBLIC_KINDS
    deployment_spec: dict[str, Any] = {} if scaled else {"replicas": 1}
    deployment_spec |= {
        "selector": {"matchLabels": {NAME_LABEL: spec.name}},
        "template": {
            "metadata": {"labels": labels(spec.name, spec.kind)},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": pod_security(images.USER_ID),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    docs = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(spec.name, spec.kind),
            "spec": deployment_spec,
        },
        service(
            spec.name,
            spec.kind,
            container_ports(spec),
            headless=spec.kind == "agent",
            sticky_s=GATEWAY_SESSION_AFFINITY_S if spec.kind == "gateway" else None,
        ),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(spec.name, spec.kind),
            "spec": {
                **({"minAvailable": 1} if scaled else {"maxUnavailable": 1}),
                "selector": {"matchLabels": {NAME_LABEL: spec.name}},
            },
        },
    ]
    if scaled:
        docs.append(autoscaler(spec, *PUBLIC_REPLICAS["dev"]))
    return docs


def service(
    name: str,
    component: str,
    ports: list[dict[str, Any]],
    headless: bool = False,
    sticky_s: int | None = None,
) -> dict[str, Any]:
    """`headless`: the name resolves to the pods themselves, so an agent registering itself is found at the
    address its card URL leads to (the registry checks that), and the relay spreads over the pods.
    `sticky_s`: a client keeps reaching the same pod while it is active (the gateway's MCP sessions of
    handshake-version clients live on the replica that opened them)."""
    affinity: dict[str, Any] = {}
    if sticky_s is not None:
        affinity = {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": sticky_s}},
        }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, component),
        "spec": {
            **({"clusterIP": "None"} if headless else {}),
            **affinity,
            "selector": {NAME_LABEL: name},
            "ports": [
                {"name": p["name"], "port": p["containerPort"], "targetPort": p["name"]} for p in ports
            ],
        },
    }


def autoscaler(spec: ServiceSpec, low: int, high: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(spec.name, spec.kind),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, "config"), "data": data}


def folder_files(folder: Path, pattern: str) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.glob(pattern)) if path.is_file()}


def configuration(topology: Topology, root: Path) -> list[dict[str, Any]]:
    return [
        config_map(CARDS, folder_files(root / "agent-cards", "*.json")),
        config_map(POLICIES, folder_files(root / "deploy" / "policies", "*")),
        config_map(WORKFLOWS, folder_files(root / "deploy" / "workflows", "*")),
        config_map(
            COLLECTOR_CONFIG, {"config.yaml": (root / "deploy" / "otel" / "collector.yaml").read_text()}
        ),
        config_map(POSTGRES_INIT, {"10-accord.sql": deployment.postgres_init_sql(topology)}),
    ]


def secret_keys(topology: Topology) -> list[str]:
    names = [deployment.secret_variable(name) for name in sorted(topology.secret_names())]
    return [*names, *deployment.DEPLOYMENT_SECRETS]


def placeholders(topology: Topology) -> list[dict[str, Any]]:
    broken_ring = json.dumps({"version": 1, "active": PLACEHOLDER, "keys": []})

    def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta(name, "secret"),
            "type": "Opaque",
            "stringData": data,
        }

    return [
        secret(SECRETS, dict.fromkeys(secret_keys(topology), PLACEHOLDER)),
        secret(PUBLISHER_KEYS, {Path(images.PUBLISHER_RING).name: broken_ring}),
        secret(GATEWAY_KEYS, {Path(images.GATEWAY_RING).name: broken_ring}),
        config_map(TRUST, {Path(images.TRUST_FILE).name: json.dumps({"keys": []})}),
    ]


def backing_container(name: str, image: str, ports: list[tuple[str, int]], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": port_name, "containerPort": port} for port_name, port in ports],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": CONTAINER_SECURITY,
        **extra,
    }


def pod_template(
    name: str, uid: int, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels(name, "backing")},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": pod_security(uid),
            "containers": [container],
            "volumes": volumes,
        },
    }


def exec_probe(*command: str) -> dict[str, Any]:
    return {"exec": {"command": list(command)}, "periodSeconds": 5}


def empty_dir(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {}}


def selector(name: str) -> dict[str, Any]:
    return {"matchLabels": {NAME_LABEL: name}}


def backing_deployment(
    name: str, uid: int, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, "backing"),
        "spec": {
            "replicas": 1,
            "selector": selector(name),
            "template": pod_template(name, uid, container, volumes),
        },
    }


def postgres() -> list[dict[str, Any]]:
    """One PostgreSQL with a database per stateful service (the init script), data on a claim."""
    container = backing_container(
        deployment.POSTGRES,
        deployment.POSTGRES_IMAGE,
        [("postgres", 5432)],
        env=[
            {"name": "POSTGRES_USER", "value": deployment.POSTGRES_USER},
            {"name": "POSTGRES_PASSWORD", "valueFrom": secret_ref(deployment.POSTGRES_PASSWORD)},
            {"name": "POSTGRES_DB", "value": deployment.POSTGRES_USER},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        readinessProbe=exec_probe("pg_isready", "-h", "127.0.0.1", "-U", deployment.POSTGRES_USER),
        volumeMounts=[
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": images.TMP_DIR},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
        ],
    )
    volumes = [empty_dir("run"), empty_dir("tmp"), {"name": "init", "configMap": {"name": POSTGRES_INIT}}]
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(deployment.POSTGRES, "backing"),
        "spec": {
            "serviceName": deployment.POSTGRES,
            "replicas": 1,
            "selector": selector(deployment.POSTGRES),
            "template": pod_template(deployment.POSTGRES, POSTGRES_UID, container, volumes),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
        },
    }
    return [stateful_set, service(deployment.POSTGRES, "backing", container["ports"])]


def redis() -> list[dict[str, Any]]:
    password = f"$({deployment.REDIS_PASSWORD})"
    container = backing_container(
        deployment.REDIS,
        deployment.REDIS_IMAGE,
        [("redis", 6379)],
        args=["--requirepass", password, "--save", "", "--appendonly", "no"],
        env=[
            {"name": deployment.REDIS_PASSWORD, "valueFrom": secret_ref(deployment.REDIS_PASSWORD)},
            {"name": "REDISCLI_AUTH", "value": password},
        ],
        readinessProbe=exec_probe("sh", "-c", "redis-cli ping | grep -q PONG"),
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
    )
    return [
        backing_deployment(deployment.REDIS, REDIS_UID, container, [empty_dir("data")]),
        service(deployment.REDIS, "backing", container["ports"]),
    ]


def tracing() -> list[dict[str, Any]]:
    """The OpenTelemetry collector (deploy/otel/collector.yaml) and Jaeger behind it."""
    collector = backing_container(
        deployment.COLLECTOR,
        deployment.COLLECTOR_IMAGE,
        [("otlp-grpc", 4317), ("otlp-http", 4318), ("health", 13133)],
        args=["--config=/etc/otelcol/config.yaml"],
        readinessProbe={"httpGet": {"path": "/", "port": "health"}, "periodSeconds": 5},
        volumeMounts=[{"name": "config", "mountPath": "/etc/otelcol", "readOnly": True}],
    )
    jaeger = backing_container(
        deployment.TRACE_UI,
        deployment.TRACE_UI_IMAGE,
        [("otlp-grpc", 4317), ("ui", deployment.TRACE_UI_PORT), ("admin", 14269)],
        env=[{"name": "COLLECTOR_OTLP_ENABLED", "value": "true"}],
        readinessProbe={"httpGet": {"path": "/", "port": "admin"}, "periodSeconds": 5},
        volumeMounts=[{"name": "tmp", "mountPath": images.TMP_DIR}],
    )
    config = [{"name": "config", "configMap": {"name": COLLECTOR_CONFIG}}]
    return [
        backing_deployment(deployment.COLLECTOR, images.USER_ID, collector, config),
        service(deployment.COLLECTOR, "backing", collector["ports"][:2]),
        backing_deployment(deployment.TRACE_UI, images.USER_ID, jaeger, [empty_dir("tmp")]),
        service(deployment.TRACE_UI, "backing", jaeger["ports"][:2]),
    ]


def backing() -> list[dict[str, Any]]:
    return [*postgres(), *redis(), *tracing()]


def peer(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {NAME_LABEL: name}}}


def tcp(ports: tuple[int, ...]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policies(topology: Topology) -> list[dict[str, Any]]:
    """Deny all, allow DNS, then exactly the calls of `deployment.edges`, on both ends."""
    allowed = deployment.edges(topology)
    workloads = [*(s.name for s in topology.services), *deployment.BACKING_PORTS]
    policies: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("default-deny", "network"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-dns", "network"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        },
    ]
    public = {s.name: deployment.ports(s) for s in topology.services if s.kind in deployment.PUBLIC_KINDS}
    for name in workloads:
        ingress = [
            {"from": [peer(client)], "ports": tcp(p)}
            for (client, server), p in allowed.items()
            if server == name
        ]
        if name in public:
            ingress.append({"ports": tcp(public[name])})  # from anywhere: the published endpoints
        egress = [
            {"to": [peer(server)], "ports": tcp(p)}
            for (client, server), p in allowed.items()
            if client == name
        ]
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta(f"{name}-traffic", "network"),
                "spec": {
                    "podSelector": {"matchLabels": {NAME_LABEL: name}},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": ingress,
                    "egress": egress,
                },
            }
        )
    return policies


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (files in ConfigMaps, inline patches) as literal blocks, readable in review."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_text)


def dump(docs: list[dict[str, Any]], note: str) -> str:
    header = f"# {note}\n# Rendered from deploy/topology.yaml by `python -m accord.deploy_files --write`.\n"
    return header + yaml.dump_all(docs, Dumper=_BlockDumper, sort_keys=False, width=10**6)


def kustomization(resources: list[str], **extra: Any) -> str:
    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        **extra,
        "resources": resources,
    }
    return dump([document], "kustomize entry point")


def namespace(name: str) -> dict[str, Any]:
    enforce = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**enforce, **PART_OF}},
    }


def overlay(topology: Topology, stage: str, namespace_name: str) -> dict[str, str]:
    low, high = PUBLIC_REPLICAS[stage]
    scaled = [s for s in topology.services if s.kind in deployment.PUBLIC_KINDS]
    patches = [autoscaler(spec, low, high) for spec in scaled]
    extra: dict[str, Any] = {"namespace": namespace_name}
    files = {f"overlays/{stage}/namespace.yaml": dump([namespace(namespace_name)], f"{stage}: the namespace")}
    files[f"overlays/{stage}/replicas.yaml"] = dump(patches, f"{stage}: how far the public services scale")
    extra["patches"] = [{"path": "replicas.yaml"}]
    if stage == "prod":
        # Real secrets live in the cluster (a secret manager); applying prod never overwrites them.
        extra["patches"] += [
            {
                "patch": yaml.safe_dump(
                    {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "$patch": "delete"}
                )
            }
            for kind, name in PLACEHOLDER_OBJECTS
        ]
        extra["images"] = [
            {"name": images.image_name(spec), "newTag": PROD_TAG} for spec in topology.services
        ]
    files[f"overlays/{stage}/kustomization.yaml"] = kustomization(["../../base", "namespace.yaml"], **extra)
    return files


def render_k8s(topology: Topology, root: Path) -> dict[str, str]:
    """Relative path under deploy/k8s -> file text."""
    files = {
        f"base/services/{spec.name}.yaml": dump(workload(topology, spec), f"{spec.name} ({spec.kind})")
        for spec in topology.services
    }
    files["base/configuration.yaml"] = dump(
        configuration(topology, root), "cards, policies, workflows, collector"
    )
    files["base/secrets.yaml"] = dump(placeholders(topology), "placeholders only: see deploy/k8s/README.md")
    files["base/backing.yaml"] = dump(backing(), "PostgreSQL, Redis, OpenTelemetry collector, Jaeger")
    files["base/network-policies.yaml"] = dump(network_policies(topology), "who may call whom (DESIGN.md)")
    resources = sorted(name.removeprefix("base/") for name in files)
    files["base/kustomization.yaml"] = kustomization(resources)
    files |= overlay(topology, "dev", "accord-dev")
    files |= overlay(topology, "prod", "accord")
    return files
