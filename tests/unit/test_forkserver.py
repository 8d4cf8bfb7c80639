"""The fork server starts each service as a process of its own: its own session, environment, working
directory and log, `python -m` semantics, and an exit status reported as `subprocess` would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.forkserver import ForkServer

PROBE = """
import json, os, sys
print(json.dumps({
    "name": __name__,
    "pid": os.getpid(),
    "sid": os.getsid(0),
    "cwd": os.getcwd(),
    "marker": os.environ.get("PROBE_MARKER"),
    "leaked": os.environ.get("PROBE_PARENT_ONLY"),
    "argv0": sys.argv[0],
}), flush=True)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""

BROKEN_PIPE = """
import os, sys
read_end, write_end = os.pipe()
os.close(read_end)
try:
    os.write(write_end, b"nobody reads this")
except BrokenPipeError:
    sys.exit(7)
"""

SLEEPER = """
import time
print("sleeping", flush=True)
time.sleep(60)
"""


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("modules")
    (root / "probe_service.py").write_text(PROBE)
    (root / "sleeper_service.py").write_text(SLEEPER)
    (root / "broken_pipe_service.py").write_text(BROKEN_PIPE)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, modules: Path) -> Iterator[ForkServer]:
    # One server for the module: it is stateless between requests, and its preload costs seconds. It starts
    # (with its first service) in an environment holding a variable that no service may inherit.
    state = tmp_path_factory.mktemp("forkserver")
    forks = ForkServer(state / "forkserver.log")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PROBE_PARENT_ONLY", "must not reach the service")
            assert forks.spawn("probe_service", env_for(modules), state / "first.log", state).wait(60) == 0
        yield forks
    finally:
        forks.close()


def env_for(modules: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(modules), **extra}


def test_a_service_runs_as_main_in_its_own_session_with_only_its_environment(
    server: ForkServer, modules: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    log = tmp_path / "probe.log"

    child = server.spawn("probe_service", env_for(modules, PROBE_MARKER="m1", PROBE_EXIT="3"), log, workdir)

    assert child.wait(30) == 3
    seen = json.loads(log.read_text().splitlines()[-1])
    assert seen["name"] == "__main__"
    assert seen["argv0"].endswith("probe_service.py")
    assert seen["pid"] == child.pid
    assert seen["sid"] == child.pid, "each service leads its own session, so its group can be signalled"
    assert seen["cwd"] == str(workdir)
    assert (seen["marker"], seen["leaked"]) == ("m1", None)


def test_services_are_separate_processes_and_a_signal_exit_reads_as_popen_reports_it(
    server: ForkServer, modules: Path, tmp_path: Path
) -> None:
    first = server.spawn("sleeper_service", env_for(modules), tmp_path / "a.log", tmp_path)
    second = server.spawn("sleeper_service", env_for(modules), tmp_path / "b.log", tmp_path)
    assert first.pid != second.pid
    deadline = time.monotonic() + 30
    while "sleeping" not in (tmp_path / "a.log").read_text(errors="replace"):
        assert time.monotonic() < deadline, "the sleeper never started"
        time.sleep(0.05)
    assert first.poll() is None

    os.killpg(first.pid, signal.SIGTERM)

    assert first.wait(30) == -signal.SIGTERM
    assert second.poll() is None, "signalling one service's group leaves the others alone"
    os.killpg(second.pid, signal.SIGKILL)
    assert second.wait(30) == -signal.SIGKILL


def test_a_missing_module_fails_that_service_with_its_traceback_in_its_log(
    server: ForkServer, modules: Path, tmp_path: Path
) -> None:
    log = tmp_path / "missing.log"
    child = server.spawn("no_such_service", env_for(modules), log, tmp_path)
    assert child.wait(30) == 1
    assert "No module named no_such_service" in log.read_text()


def test_waiting_longer_than_a_service_runs_times_out_like_popen(
    server: ForkServer, modules: Path, tmp_path: Path
) -> None:
    child = server.spawn("sleeper_service", env_for(modules), tmp_path / "s.log", tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL


def test_a_write_to_a_closed_pipe_raises_in_the_service_as_in_any_python_process(
    server: ForkServer, modules: Path, tmp_path: Path
) -> None:
    # Python ignores SIGPIPE at startup; a service that died of it (-13) would drop its clients.
    child = server.spawn("broken_pipe_service", env_for(modules), tmp_path / "pipe.log", tmp_path)
    assert child.wait(30) == 7
