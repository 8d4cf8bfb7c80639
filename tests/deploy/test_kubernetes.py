"""deploy/k8s: both overlays render with kubectl kustomize and validate strictly against the schemas."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from accord.topology import Topology, repo_root

KUBERNETES_VERSION = "1.37.0"  # the newest schema set kubernetes-validate ships; a current release
Objects = dict[str, list[dict[str, Any]]]


@pytest.fixture(autouse=True, scope="module")
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads its 1 MB definitions file for every object; read each schema file once."""
    original = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.cache(original)
    try:
        yield
    finally:
        kubernetes_validate.utils.schema_contents = original


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_rendered_object_validates_strictly_against_the_kubernetes_schemas(
    overlays: Objects, overlay: str
) -> None:
    problems = []
    for document in overlays[overlay]:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{document['kind']}/{document['metadata']['name']}: {error.message}")
    assert problems == []


def test_strict_validation_refuses_a_field_the_schema_does_not_know(overlays: Objects) -> None:
    deployment = json.loads(json.dumps(next(iter(of_kind(overlays["dev"], "Deployment").values()))))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_service_has_a_deployment_service_and_disruption_budget(
    overlays: Objects, overlay: str, topology: Topology
) -> None:
    objects = overlays[overlay]
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert {s.name for s in topology.services} <= set(of_kind(objects, kind)), kind
    assert set(of_kind(objects, "HorizontalPodAutoscaler")) == {"gateway", "orchestrator"}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_pods_run_restricted_with_probes_and_resources(
    overlays: Objects, overlay: str, topology: Topology
) -> None:
    workloads = of_kind(overlays[overlay], "Deployment") | of_kind(overlays[overlay], "StatefulSet")
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert "readinessProbe" in container, name
    for spec in topology.services:
        container = workloads[spec.name]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", spec.name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", spec.name
        assert container["command"] == ["python", "-m", spec.module], spec.name


def test_prod_scales_the_public_services_further_than_dev_and_pins_image_tags(overlays: Objects) -> None:
    dev, prod = (of_kind(overlays[o], "HorizontalPodAutoscaler") for o in ("dev", "prod"))
    for name in ("gateway", "orchestrator"):
        assert prod[name]["spec"]["minReplicas"] >= 2
        assert prod[name]["spec"]["maxReplicas"] > dev[name]["spec"]["maxReplicas"]
    for deployment in of_kind(overlays["prod"], "Deployment").values():
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert not image.endswith(":latest"), image


def test_cards_policies_and_workflows_ship_as_config_maps_equal_to_their_files(overlays: Objects) -> None:
    maps = of_kind(overlays["dev"], "ConfigMap")
    for name, folder, pattern in (
        ("accord-cards", "agent-cards", "*.json"),
        ("accord-policies", "deploy/policies", "*"),
        ("accord-workflows", "deploy/workflows", "*"),
    ):
        files = {p.name: p.read_text() for p in sorted((repo_root() / folder).glob(pattern)) if p.is_file()}
        assert maps[name]["data"] == files, name


def test_secrets_are_placeholders_in_dev_and_left_to_the_cluster_in_prod(overlays: Objects) -> None:
    secrets = of_kind(overlays["dev"], "Secret")
    assert set(secrets) == {"accord-secrets", "accord-publisher-keys", "accord-gateway-keys"}
    assert set(secrets["accord-secrets"]["stringData"].values()) == {"REPLACE_ME"}
    for name in ("accord-publisher-keys", "accord-gateway-keys"):
        for ring in secrets[name]["stringData"].values():
            assert json.loads(ring)["keys"] == [], "a placeholder ring holds no key"
    assert of_kind(overlays["prod"], "Secret") == {}
