"""Waiting for a service a test started to answer `/readyz` (or to die, which fails at once)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Protocol

import httpx

_POLL_S = 0.05
_LOG_TAIL = 4000


class Process(Protocol):
    returncode: int | None

    def poll(self) -> int | None: ...


def wait_until_ready(url: str, process: Process, timeout_s: float, log: Path | None = None) -> None:
    """Return once `url`/readyz answers 200; RuntimeError when the process exits first, TimeoutError when
    `timeout_s` passes (both with the tail of its log, when given)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready within {timeout_s}s:{_tail(log)}")
        time.sleep(_POLL_S)


def _tail(log: Path | None) -> str:
    return "\n" + log.read_text(errors="replace")[-_LOG_TAIL:] if log is not None and log.exists() else ""
