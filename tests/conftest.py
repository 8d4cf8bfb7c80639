"""Shared fixtures: the mesh as real processes on loopback, started once per session; and, around the
whole run, the check that nothing any service wrote holds a token, a key or a generated secret.

`make test` runs the suite as two shards at once (`scripts/run-tests.sh`), one of them in a network
namespace of its own, so that the fixed ports of one shard's meshes can never meet the other's.
`ACCORD_TEST_SHARD` says which shard this process runs: `host` (the modules with tests that need the
machine's PostgreSQL or Redis, which listen on its loopback, and about half of the rest) or `own-netns`
(the other half; the modules of the session's main mesh stay together, so it starts once). The halves are
balanced by how long each module took (`_own_netns_modules`). Unset, everything runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.mesh import MeshRunner
from accord.testing.secret_scan import scan

# Offsets keep test meshes off the ports a developer's `accord up` uses.
MAIN_MESH_OFFSET = 21000


SHARD_ENV = "ACCORD_TEST_SHARD"
SHARDS = ("host", "own-netns")
WEIGHTS = Path(__file__).parent / "shard_weights.json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = os.environ.get(SHARD_ENV)
    if not shard:
        return
    if shard not in SHARDS:
        raise pytest.UsageError(f"{SHARD_ENV} must be one of {', '.join(SHARDS)}, not {shard!r}")
    own_netns = _own_netns_modules(items)
    keep, drop = [], []
    for item in items:
        in_own_netns = _module(item) in own_netns
        (keep if in_own_netns == (shard == "own-netns") else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _own_netns_modules(items: list[pytest.Item]) -> set[str]:
    """The modules the namespaced shard runs, balanced by the seconds each took (`shard_weights.json`,
    written by `scripts/shard_weights.py`). A module with a test that needs the host's PostgreSQL or Redis
    stays on the host; the main mesh's modules move as one block."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(_module(item), []).append(item)
    weights: dict[str, float] = json.loads(WEIGHTS.read_text()) if WEIGHTS.exists() else {}
    host_load = 0.0
    blocks: list[tuple[float, set[str]]] = []
    main_mesh: set[str] = set()
    for module, tests in sorted(modules.items()):
        weight = weights.get(module, 1.0)
        if any(t.get_closest_marker(name) for t in tests for name in ("postgres", "redis")):
            host_load += weight
        elif any(_uses_main_mesh(t) for t in tests):
            main_mesh.add(module)
        else:
            blocks.append((weight, {module}))
    if main_mesh:
        blocks.append((sum(weights.get(m, 1.0) for m in main_mesh), main_mesh))
    own: set[str] = set()
    own_load = 0.0
    for weight, block in sorted(blocks, key=lambda b: (-b[0], sorted(b[1]))):
        if own_load < host_load:
            own |= block
            own_load += weight
        else:
            host_load += weight
    return own


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


def _uses_main_mesh(test: pytest.Item) -> bool:
    """Whether the test asks for the `mesh` defined here (some modules have a `mesh` of their own)."""
    info = getattr(test, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.get("mesh", ()) if info is not None else ()
    return bool(definitions) and definitions[-1].func.__module__ == __name__


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
