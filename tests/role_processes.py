"""Test services run as `python -c` processes, one role each, from a test module's `run_service()`.

The module that defines the roles is imported afresh in the child (`ROLE` picks what to serve), so a test
can put a real process boundary between two services built from test code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from accord.testing.readiness import wait_until_ready
from accord.topology import repo_root


def start_role(module: str, role: str, state_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`module.run_service()` in a child process as `role`, logging to `<state_dir>/<role>.log`."""
    code = f"from {module} import run_service; run_service()"
    log = (state_dir / f"{role}.log").open("wb")
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", code],
        cwd=repo_root(),
        env={**os.environ, "ROLE": role, "ACCORD_STATE_DIR": str(state_dir), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    wait_until_ready(url, process, timeout_s)
