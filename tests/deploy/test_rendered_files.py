"""Every deployment file is the rendering of deploy/topology.yaml: edit the topology, re-render, commit."""

from __future__ import annotations

from accord.deploy_files import rendered_files, stale_files
from accord.topology import Topology, repo_root


def test_committed_deployment_files_equal_their_rendering_from_the_topology(topology: Topology) -> None:
    assert stale_files(topology, repo_root()) == [], "run `python -m accord.deploy_files --write`"


def test_every_service_has_its_own_dockerfile_compose_service_and_kubernetes_manifest(
    topology: Topology,
) -> None:
    files = rendered_files(topology, repo_root())
    for spec in topology.services:
        assert f"deploy/docker/{spec.name}.Dockerfile" in files, spec.name
        assert f"deploy/k8s/base/services/{spec.name}.yaml" in files, spec.name
        assert f"  {spec.name}:\n" in files["docker-compose.yml"], spec.name
