"""Cutting live TCP connections on loopback, as a failing network or a crashing proxy would.

`ss -K` (iproute2) asks the kernel to destroy matching sockets (`SOCK_DESTROY`): the local end fails with
`ECONNABORTED` and its peer gets a reset, mid-stream, whatever either process is doing. Nothing in the
processes under test is changed or told.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest


def require_link_cutting() -> None:
    """Skip where sockets cannot be destroyed, unless under CI (`CI=true`), where that is a failure."""
    problem = None
    if shutil.which("ss") is None:
        problem = "ss (iproute2) is not installed"
    elif os.geteuid() != 0:
        problem = "destroying sockets needs root (CAP_NET_ADMIN)"
    elif not _cuts_a_connection():
        problem = "this kernel does not destroy sockets (CONFIG_INET_DIAG_DESTROY)"
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem + " (CI=true: tests that need it must run)")
    pytest.skip(problem)


def cut_connections_to(port: int, host: str = "127.0.0.1") -> int:
    """Reset every established TCP connection to `host:port` (the client ends); how many were cut."""
    result = subprocess.run(  # noqa: S603
        ["ss", "-K", "-t", "-n", "state", "established", "dst", host, "dport", "=", f":{port}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ss -K failed ({result.returncode}): {result.stderr.strip()[:200]}")
    # ss lists what it destroyed: a header line, then one line per socket.
    return sum(1 for line in result.stdout.splitlines()[1:] if line.strip())


def _cuts_a_connection() -> bool:
    """Whether `ss -K` really cuts a loopback connection made for the purpose."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            accepted, _ = server.accept()
            with accepted:
                try:
                    return cut_connections_to(port) == 1
                except (RuntimeError, OSError, subprocess.SubprocessError):
                    return False
