"""`accord up` runs the mesh, `accord status` reports it, and SIGTERM leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from accord.topology import load_topology

OFFSET = 23000


def accord(*args: str) -> list[str]:
    return [sys.executable, "-m", "accord.cli.main", *args]


def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes only once reaped; `accord up` must reap its children.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def status_json() -> list[dict[str, object]]:
    result = subprocess.run(  # noqa: S603
        accord("status", "--json", "--port-offset", str(OFFSET)), capture_output=True, text=True, timeout=30
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_accord_up_starts_every_service_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    up = subprocess.Popen(  # noqa: S603
        accord("up", "--state-dir", str(tmp_path), "--port-offset", str(OFFSET)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (tmp_path / "mesh.json").exists(), 240, "the mesh to be ready")
        children = json.loads((tmp_path / "mesh.json").read_text())
        assert set(children) == {spec.name for spec in load_topology().services}
        rows = status_json()
        assert all(row["ready"] for row in rows), rows
        assert {row["url"] for row in rows} == {child["url"] for child in children.values()}
        pids = [child["pid"] for child in children.values()]
        assert all(alive(pid) for pid in pids)

        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=60)
        assert up.returncode == 0, output
        assert "mesh stopped" in output
        for name in children:
            assert name in output, "the table lists every service"
        wait_for(lambda: not any(alive(pid) for pid in pids), 10, "every service process to exit")
        assert not any(row["live"] for row in status_json())
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
