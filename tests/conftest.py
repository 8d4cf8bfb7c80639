"""Shared fixtures: the mesh as real processes on loopback, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.mesh import MeshRunner

# Offsets keep test meshes off the ports a developer's `accord up` uses.
MAIN_MESH_OFFSET = 21000


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshRunner]:
    runner = MeshRunner(Path(tmp_path_factory.mktemp("mesh")), port_offset=MAIN_MESH_OFFSET)
    runner.start(timeout_s=240)
    try:
        yield runner
    finally:
        runner.stop()
