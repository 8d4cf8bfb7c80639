"""Fixtures for the deployment checks: the committed compose file and the rendered Kubernetes overlays."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from accord.topology import Topology, load_topology, repo_root

OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="session")
def topology() -> Topology:
    return load_topology()


@pytest.fixture(scope="session")
def compose_file() -> dict[str, Any]:
    return yaml.safe_load((repo_root() / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def kubectl() -> str:
    """kubectl is installed on every machine of this project's kind; without it the k8s checks cannot run."""
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("kubectl is not installed (CI=true: the Kubernetes checks must run)")
        pytest.skip("kubectl is not installed")
    return found


@pytest.fixture(scope="session")
def overlays() -> dict[str, list[dict[str, Any]]]:
    """Every object of each overlay, as `kubectl kustomize` renders it."""
    binary = kubectl()
    rendered = {}
    for overlay in OVERLAYS:
        path = Path(repo_root(), "deploy", "k8s", "overlays", overlay)
        result = subprocess.run(  # noqa: S603
            [binary, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr[-2000:]}"
        rendered[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return rendered
