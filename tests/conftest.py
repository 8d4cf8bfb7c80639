"""Shared fixtures: the mesh as real processes on loopback, started once per session; and, around the
whole run, the check that nothing any service wrote holds a token, a key or a generated secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.mesh import MeshRunner
from accord.testing.secret_scan import scan

# Offsets keep test meshes off the ports a developer's `accord up` uses.
MAIN_MESH_OFFSET = 21000


@pytest.fixture(scope="session", autouse=True)
def no_credentials_in_any_output(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Set up first, so torn down last: once every mesh of the run has stopped, read every log, audit
    trail, span and run store the run's services wrote (`accord.testing.secret_scan`); any token, key or
    generated secret found fails the run."""
    yield
    leaks = scan(tmp_path_factory.getbasetemp())
    assert not leaks, "credentials in service output:\n" + "\n".join(map(str, leaks[:50]))


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshRunner]:
    runner = MeshRunner(Path(tmp_path_factory.mktemp("mesh")), port_offset=MAIN_MESH_OFFSET)
    runner.start(timeout_s=240)
    try:
        yield runner
    finally:
        runner.stop()
