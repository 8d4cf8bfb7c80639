"""docker-compose.yml: valid against the Compose Specification, hardened, health-ordered, secrets required."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from accord.images import TMP_DIR
from accord.topology import Topology, repo_root

SCHEMA = repo_root() / "tests" / "deploy" / "schemas" / "compose-spec.schema.json"
BACKING = {"postgres", "redis", "otel-collector", "jaeger", "keys-init"}
REQUIRED_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\?[^}]+\}")
ANY_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_]")


def compose_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_validates_against_the_compose_specification_schema(
    compose_file: dict[str, Any],
) -> None:
    assert compose_errors(compose_file) == []


def test_the_schema_check_rejects_a_misspelled_service_key(compose_file: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose_file))
    broken["services"]["gateway"]["read_onyl"] = True
    assert any("read_onyl" in error for error in compose_errors(broken))


def test_each_service_is_a_container_named_like_its_folder_plus_the_backing_services(
    compose_file: dict[str, Any], topology: Topology
) -> None:
    assert set(compose_file["services"]) == {s.name for s in topology.services} | BACKING
    for spec in topology.services:
        assert compose_file["services"][spec.name]["image"] == f"accord/{spec.name}:latest"


def test_accord_containers_are_read_only_unprivileged_and_keep_state_in_tmpfs(
    compose_file: dict[str, Any], topology: Topology
) -> None:
    for spec in topology.services:
        service = compose_file["services"][spec.name]
        assert service["read_only"] is True, spec.name
        assert any(mount.split(":")[0] == TMP_DIR for mount in service["tmpfs"]), spec.name
        assert not service["user"].startswith("0"), spec.name
        assert service["cap_drop"] == ["ALL"], spec.name
        assert "no-new-privileges:true" in service["security_opt"], spec.name
        assert all(volume.endswith(":ro") for volume in service.get("volumes", [])), spec.name


def test_every_long_running_container_has_a_readiness_healthcheck_and_waits_for_healthy_dependencies(
    compose_file: dict[str, Any], topology: Topology
) -> None:
    for spec in topology.services:
        service = compose_file["services"][spec.name]
        assert "/readyz" in service["healthcheck"]["test"][-1], spec.name
        depends = service.get("depends_on", {})
        assert set(spec.depends_on) <= set(depends), spec.name
        for name, condition in depends.items():
            expected = "service_completed_successfully" if name == "keys-init" else "service_healthy"
            assert condition == {"condition": expected}, (spec.name, name)
    for name in ("postgres", "redis"):
        assert compose_file["services"][name]["healthcheck"]["test"], name


def test_every_secret_is_a_required_variable_and_nothing_has_a_default(compose_file: dict[str, Any]) -> None:
    text = (repo_root() / "docker-compose.yml").read_text()
    variables = ANY_VARIABLE.findall(text)
    assert variables, "the compose file takes its secrets from the environment"
    assert all(REQUIRED_VARIABLE.fullmatch(v) for v in variables), "only ${VAR:?message} may be used"
    required = {m.group(1) for m in REQUIRED_VARIABLE.finditer(text)}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GATEWAY_ADMIN_SECRET"} <= required


def test_only_the_gateway_and_orchestrator_are_published_and_the_trace_ui_only_on_loopback(
    compose_file: dict[str, Any],
) -> None:
    published = {name: s["ports"] for name, s in compose_file["services"].items() if s.get("ports")}
    assert set(published) == {"gateway", "orchestrator", "jaeger"}
    assert all(port.startswith("127.0.0.1:") for port in published["jaeger"])


def test_the_collector_forwards_traces_to_the_trace_ui_over_otlp() -> None:
    import yaml

    config = yaml.safe_load((repo_root() / "deploy" / "otel" / "collector.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
