"""One name everywhere, only settings that exist, and exactly the reachability of DESIGN.md.

The edges are restated here from DESIGN.md (not imported from the renderer), so a renderer that opens one
path too many, or closes one the design needs, fails this test.
"""

from __future__ import annotations

import ast
import importlib
import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from accord.card_signing import SIGNING_KEY_FILE_ENV
from accord.deployment import SECRET_REFERENCE
from accord.topology import Topology, repo_root

# DESIGN.md §1-§3: who calls whom, by service kind.
DESIGN_CALLS = {
    "agent": {"gateway", "registry"},  # tools and token exchange at the gateway; registration
    "orchestrator": {"gateway", "registry"},  # grants and the A2A relay; discovery
    "gateway": {"tools", "agent", "registry"},  # federation; the relay forwards to agents it resolves
    "registry": {"agent"},  # fetches and re-verifies cards
    "tools": set(),
}
PUBLIC = {"gateway", "orchestrator"}
STATEFUL = {"gateway", "registry", "orchestrator"}  # PostgreSQL (DESIGN.md §3 State)
SHARED_CACHE = {"gateway"}  # Redis: replay cache, rate limits, revocations
Objects = dict[str, list[dict[str, Any]]]


def expected_edges(topology: Topology) -> set[tuple[str, str]]:
    edges = {
        (client.name, server.name)
        for client, server in itertools.permutations(topology.services, 2)
        if server.kind in DESIGN_CALLS[client.kind]
    }
    for spec in topology.services:
        edges.add((spec.name, "otel-collector"))
        if spec.kind in STATEFUL:
            edges.add((spec.name, "postgres"))
        if spec.kind in SHARED_CACHE:
            edges.add((spec.name, "redis"))
    edges.add(("otel-collector", "jaeger"))
    return edges


def undirected(edges: set[tuple[str, str]]) -> set[frozenset[str]]:
    return {frozenset(edge) for edge in edges}


# --- one name everywhere ---------------------------------------------------------------------------------


def test_every_agent_card_has_a_topology_entry_a_compose_service_and_a_deployment_of_its_name(
    topology: Topology, compose_file: dict[str, Any], overlays: Objects
) -> None:
    cards = {path.stem for path in (repo_root() / "agent-cards").glob("*.json")}
    assert cards, "no agent cards"
    deployments = {o["metadata"]["name"] for o in overlays["dev"] if o["kind"] == "Deployment"}
    for name in cards:
        spec = topology.by_name(name)
        assert spec.kind in ("agent", "orchestrator"), name
        assert name in compose_file["services"], name
        assert name in deployments, name
    assert {s.name for s in topology.of_kind("agent")} <= cards, "an agent without a card"


# --- every variable set is one a service reads -----------------------------------------------------------


def settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic settings class of the workspace, found by reading the sources."""
    found: list[type[BaseSettings]] = []
    roots = [repo_root() / "libs/accord/src", repo_root() / "gateway", *(repo_root() / "services").iterdir()]
    for root in roots:
        for path in root.rglob("*.py"):
            if "proto" in path.parts or "Settings(" not in path.read_text():
                continue
            tree = ast.parse(path.read_text())
            names = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Settings")]
            if names:
                module = importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))
                found += [
                    getattr(module, name) for name in names if issubclass(getattr(module, name), BaseSettings)
                ]
    return found


def settings_variables() -> set[str]:
    names: set[str] = set()
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for field_name, info in cls.model_fields.items():
            names.add(f"{prefix}{field_name}".upper())
            alias = info.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
            names |= {str(choice).upper() for choice in choices if isinstance(choice, str)}
    return names


def read_variables() -> set[str]:
    """Settings fields, the card signer's key file, and the client secrets named in the clients file."""
    clients = yaml.safe_load((repo_root() / "deploy" / "policies" / "clients.yaml").read_text())["clients"]
    secret_envs = {entry["secret_env"] for entry in clients if "secret_env" in entry}
    return settings_variables() | {SIGNING_KEY_FILE_ENV} | secret_envs


def test_settings_discovery_finds_every_service_settings_class() -> None:
    found = {cls.__name__ for cls in settings_classes()}
    expected = {"ServiceSettings", "AgentSettings", "ToolsSettings", "GatewaySettings"}
    assert expected | {"OrchestratorSettings", "RegistrySettings"} <= found


def test_every_variable_compose_sets_on_an_accord_container_is_read_by_the_service(
    topology: Topology, compose_file: dict[str, Any]
) -> None:
    known = read_variables()
    for spec in topology.services:
        unknown = set(compose_file["services"][spec.name]["environment"]) - known
        assert unknown == set(), spec.name
    keys_init = compose_file["services"]["keys-init"]
    assert "environment" not in keys_init


def test_every_variable_the_manifests_set_is_read_by_the_service_or_only_feeds_another(
    topology: Topology, overlays: Objects
) -> None:
    known = read_variables()
    for overlay, objects in overlays.items():
        for workload in (o for o in objects if o["kind"] == "Deployment"):
            name = workload["metadata"]["name"]
            if name not in {s.name for s in topology.services}:
                continue
            env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
            for position, variable in enumerate(env):
                if variable["name"] in known:
                    continue
                # A secret input Kubernetes expands into a later value, e.g. $(POSTGRES_PASSWORD) in a URL.
                later = " ".join(str(v.get("value", "")) for v in env[position + 1 :])
                assert variable["name"] in SECRET_REFERENCE.findall(later), (overlay, name, variable["name"])


def test_image_environment_is_read_by_the_services(topology: Topology) -> None:
    known = read_variables() | {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "ACCORD_REPO_ROOT"}
    for spec in topology.services:
        text = (repo_root() / "deploy" / "docker" / f"{spec.name}.Dockerfile").read_text()
        final = text.rsplit("\nFROM ", 1)[1]
        names = {line.split()[1].split("=")[0] for line in final.splitlines() if line.startswith("ENV ")}
        assert names <= known, (spec.name, names - known)


# --- reachability ----------------------------------------------------------------------------------------


def compose_reachability(compose_file: dict[str, Any]) -> set[frozenset[str]]:
    """Containers on one compose network reach each other, in both directions."""
    members: dict[str, set[str]] = {}
    for name, service in compose_file["services"].items():
        for network in service.get("networks", []):
            members.setdefault(network, set()).add(name)
    return {
        frozenset(pair) for group in members.values() for pair in itertools.combinations(sorted(group), 2)
    }


def test_compose_networks_connect_exactly_the_pairs_design_allows(
    topology: Topology, compose_file: dict[str, Any]
) -> None:
    assert compose_reachability(compose_file) == undirected(expected_edges(topology))


def test_agents_and_tool_servers_sit_only_on_internal_networks(
    topology: Topology, compose_file: dict[str, Any]
) -> None:
    networks = compose_file["networks"]
    for spec in topology.services:
        for network in compose_file["services"][spec.name]["networks"]:
            if spec.kind not in PUBLIC:
                assert networks[network].get("internal") is True, (spec.name, network)
    outside = {n for n, options in networks.items() if not options.get("internal")}
    for name, service in compose_file["services"].items():
        if set(service.get("networks", [])) & outside:
            assert name in PUBLIC | {"otel-collector", "jaeger"}, name
    assert compose_file["services"]["keys-init"]["network_mode"] == "none"


def selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are evaluated here"
    return all(pod_labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_allows(peers: list[dict[str, Any]] | None, pod_labels: dict[str, str]) -> bool:
    if peers is None:
        return True  # no `from`/`to`: any peer
    return any(
        "namespaceSelector" not in peer and "ipBlock" not in peer and selects(peer["podSelector"], pod_labels)
        for peer in peers
    )


def port_allows(rule: dict[str, Any], ports: set[int]) -> bool:
    return "ports" not in rule or bool({p["port"] for p in rule["ports"]} & ports)


def policy_edges(objects: list[dict[str, Any]]) -> tuple[set[tuple[str, str]], set[str]]:
    """(pod -> pod calls that both ends' NetworkPolicies allow, pods open to any caller)."""
    pods = {
        o["metadata"]["name"]: (o["spec"]["template"]["metadata"]["labels"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
    }
    policies = [o["spec"] for o in objects if o["kind"] == "NetworkPolicy"]
    assert any(p["podSelector"] == {} and set(p["policyTypes"]) == {"Ingress", "Egress"} for p in policies)

    def ports_of(name: str) -> set[int]:
        return {p["containerPort"] for c in pods[name][1]["containers"] for p in c.get("ports", [])}

    def applying(name: str, kind: str) -> list[dict[str, Any]]:
        return [p for p in policies if kind in p["policyTypes"] and selects(p["podSelector"], pods[name][0])]

    edges = set()
    for client, server in itertools.permutations(pods, 2):
        ports = ports_of(server)
        out = any(
            peer_allows(rule.get("to"), pods[server][0]) and port_allows(rule, ports)
            for p in applying(client, "Egress")
            for rule in p.get("egress", [])
        )
        inbound = any(
            peer_allows(rule.get("from"), pods[client][0]) and port_allows(rule, ports)
            for p in applying(server, "Ingress")
            for rule in p.get("ingress", [])
        )
        if out and inbound:
            edges.add((client, server))
    open_to_all = {
        name
        for name in pods
        for p in applying(name, "Ingress")
        for rule in p.get("ingress", [])
        if "from" not in rule
    }
    return edges, open_to_all


def test_network_policies_allow_exactly_the_calls_design_allows(
    topology: Topology, overlays: Objects
) -> None:
    for overlay, objects in overlays.items():
        edges, open_to_all = policy_edges(objects)
        assert edges == expected_edges(topology), overlay
        assert open_to_all == PUBLIC, overlay


def test_the_only_egress_outside_the_namespace_is_dns(overlays: Objects) -> None:
    for objects in overlays.values():
        for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
            for rule in policy["spec"].get("egress", []):
                for peer in rule.get("to", []):
                    if "namespaceSelector" in peer:
                        assert peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
                        assert {p["port"] for p in rule["ports"]} == {53}


def test_cards_named_in_the_topology_exist_for_every_agent(topology: Topology) -> None:
    for spec in topology.of_kind("agent"):
        assert Path(repo_root(), "agent-cards", f"{spec.name}.json").exists(), spec.name
