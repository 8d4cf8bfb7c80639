"""Running the mesh as local processes: one per service, started in dependency waves, stopped as a group.

Used by `accord up`, `accord demo` and the integration tests, so all three run the same thing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from accord.forkserver import ForkedProcess, ForkServer
from accord.gateway_client import GatewayBearer
from accord.operator_credentials import OPERATOR_CLIENT_ID, OPERATOR_SECRET_NAME
from accord.topology import ServiceSpec, Topology, load_topology

READY_TIMEOUT_S = 240.0  # 17 Python services cold-starting on 2 cores


@dataclass
class RunningService:
    spec: ServiceSpec
    url: str
    grpc_address: str | None
    process: subprocess.Popen[bytes] | ForkedProcess
    log_path: Path


@dataclass
class MeshRunner:
    """Starts and stops every service of a topology on one host."""

    state_dir: Path
    host: str = "127.0.0.1"
    port_offset: int = 0
    topology: Topology = field(default_factory=load_topology)
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    only: set[str] | None = None
    services: dict[str, RunningService] = field(default_factory=dict)
    # Fork services from one interpreter that has imported the shared stack (`accord.forkserver`): each
    # is still its own process, started in a fraction of the CPU time. Off: one `python -m` each.
    use_forkserver: bool = field(default_factory=lambda: os.environ.get("ACCORD_MESH_FORKSERVER", "1") != "0")
    _forkserver: ForkServer | None = field(default=None, init=False, repr=False)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.topology.by_name(name).port + self.port_offset}"

    def operator_auth(self, *replicas: str) -> GatewayBearer:
        """httpx auth as the mesh's operator (scopes `runs:*`) towards its orchestrator's API, served by
        the mesh's orchestrator and by any `replicas` (URLs of other processes serving the same API)."""
        secret = self._secrets()[OPERATOR_SECRET_NAME]
        return GatewayBearer(
            self.url("gateway"), OPERATOR_CLIENT_ID, secret, self.url("orchestrator"), also_at=replicas
        )

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start every service once its dependencies are ready; raise with log tails if one fails."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        secret_values = self._secrets()
        wanted = [s for s in self.topology.services if self.only is None or s.name in self.only]
        ready: set[str] = set()
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            try:
                while len(ready) < len(wanted):
                    for spec in wanted:
                        if spec.name not in self.services and self._deps_met(spec, ready):
                            self._launch(spec, secret_values)
                    ready |= {name for name in self.services if self._is_ready(client, name)}
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"not ready in {timeout_s:.0f}s: {self._not_ready(ready)}")
                    time.sleep(0.1)
            except BaseException:
                self.stop()
                raise
        self._write_state()

    def _deps_met(self, spec: ServiceSpec, ready: set[str]) -> bool:
        return all(
            dep in ready or (self.only is not None and dep not in self.only) for dep in spec.depends_on
        )

    def _launch(self, spec: ServiceSpec, secret_values: dict[str, str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ACCORD_STATE_DIR": str(self.state_dir)}
        env.update(self.topology.resolve_env(spec, self.host, self.port_offset, secret_values))
        env.update(self.extra_env.get(spec.name, {}))
        log_path = self.state_dir / "logs" / f"{spec.name}.log"
        # A new session per service either way: stop() can signal the whole process group, leaving no
        # orphans.
        process: subprocess.Popen[bytes] | ForkedProcess
        if self.use_forkserver:
            if self._forkserver is None:
                self._forkserver = ForkServer(self.state_dir / "logs" / "forkserver.log")
            process = self._forkserver.spawn(spec.module, env, log_path, Path.cwd())
        else:
            with log_path.open("ab") as log:
                process = subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", spec.module],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        grpc_address = (
            f"{self.host}:{spec.grpc_port + self.port_offset}" if spec.grpc_port is not None else None
        )
        self.services[spec.name] = RunningService(spec, self.url(spec.name), grpc_address, process, log_path)

    def _is_ready(self, client: httpx.Client, name: str) -> bool:
        service = self.services[name]
        if service.process.poll() is not None:
            tail = service.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{tail}")
        try:
            return client.get(service.url + "/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _not_ready(self, ready: set[str]) -> list[str]:
        return [
            s.name
            for s in self.topology.services
            if s.name not in ready and (not self.only or s.name in self.only)
        ]

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every process group in reverse start order, then SIGKILL what is left."""
        for service in reversed(list(self.services.values())):
            _signal_group(service.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for service in self.services.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                service.process.wait(remaining)
            except subprocess.TimeoutExpired:
                _signal_group(service.process, signal.SIGKILL)
                service.process.wait(5)
        self.services.clear()
        if self._forkserver is not None:
            self._forkserver.close()
            self._forkserver = None
        (self.state_dir / "mesh.json").unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """Kill one service abruptly (SIGKILL), as a crash would."""
        service = self.services.pop(name)
        _signal_group(service.process, signal.SIGKILL)
        service.process.wait(5)

    def _secrets(self) -> dict[str, str]:
        path = self.state_dir / "secrets.json"
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = self.topology.secret_names() - set(known)
        if missing:
            known.update({name: secrets.token_urlsafe(32) for name in missing})
            path.touch(mode=0o600)
            path.write_text(json.dumps(known))
        return known

    def _write_state(self) -> None:
        state = {
            name: {"url": s.url, "grpc": s.grpc_address, "pid": s.process.pid, "kind": s.spec.kind}
            for name, s in self.services.items()
        }
        (self.state_dir / "mesh.json").write_text(json.dumps(state, indent=2))


def _signal_group(process: subprocess.Popen[bytes] | ForkedProcess, sig: signal.Signals) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
