"""docker-compose.yml and deploy/topology.yaml (what `accord up` runs) describe the same mesh."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from accord.compose import render_compose
from accord.topology import load_topology, repo_root

PUBLISHED = {"gateway", "orchestrator"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((repo_root() / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


def test_the_committed_compose_file_is_the_rendering_of_the_topology() -> None:
    rendered = render_compose(load_topology())
    assert (repo_root() / "docker-compose.yml").read_text() == rendered, (
        "run `python -m accord.deploy_files --write`"
    )


def test_compose_has_every_topology_service_plus_the_backing_services(compose: dict[str, Any]) -> None:
    backing = {"keys-init", "postgres", "redis", "otel-collector", "jaeger"}
    assert set(compose) == {spec.name for spec in load_topology().services} | backing


def test_each_compose_service_runs_the_topology_module_with_its_environment(compose: dict[str, Any]) -> None:
    for spec in load_topology().services:
        service = compose[spec.name]
        assert service["build"]["dockerfile"] == f"deploy/docker/{spec.name}.Dockerfile", spec.name
        assert service["image"] == f"accord/{spec.name}:latest"
        assert set(service["environment"]) >= set(spec.env), spec.name
        assert service["environment"]["ACCORD_PORT"] == str(spec.port)


def test_secrets_in_compose_are_required_variables_never_defaults(compose: dict[str, Any]) -> None:
    for spec in load_topology().services:
        for key, template in spec.env.items():
            if "${secret:" in template:
                assert ":?" in compose[spec.name]["environment"][key], (spec.name, key)


def test_compose_dependencies_wait_for_health_as_accord_up_waits_for_readiness(
    compose: dict[str, Any],
) -> None:
    for spec in load_topology().services:
        depends = compose[spec.name].get("depends_on", {})
        assert set(depends) >= set(spec.depends_on), spec.name
        assert all(d["condition"] == "service_healthy" for n, d in depends.items() if n != "keys-init")


def test_only_the_gateway_and_orchestrator_are_published(compose: dict[str, Any]) -> None:
    services = {spec.name for spec in load_topology().services}
    assert {name for name in services if compose[name].get("ports")} == PUBLISHED


def test_every_topology_module_is_a_workspace_package() -> None:
    for spec in load_topology().services:
        folder = repo_root() / ("gateway" if spec.kind == "gateway" else f"services/{spec.name}")
        assert (folder / spec.package / "__main__.py").exists(), spec.name
