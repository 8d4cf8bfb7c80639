"""Hosts in network namespaces, wired like compose networks: one bridge per network, one veth per membership.

Everything lives in namespaces this lab creates (the bridges in a switch namespace of their own), with
addresses in 10.250.0.0/16 that exist only there; nothing is added to the host's own namespace. Names resolve
through `/etc/netns/<namespace>/hosts`, which `ip netns exec` mounts over `/etc/hosts`, so a host finds the
names it shares a network with, as compose's DNS gives a container, and no others.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IP = "/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else "ip"
NETNS_ETC = Path("/etc/netns")
STOP_GRACE_S = 5.0


def unavailable_reason() -> str | None:
    """Why this machine cannot build the lab, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which(IP) is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"accord-probe-{os.getpid()}"
    made = subprocess.run([IP, "netns", "add", probe], capture_output=True, check=False, timeout=10)  # noqa: S603
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.decode(errors='replace').strip()}"
    subprocess.run([IP, "netns", "del", probe], capture_output=True, check=False, timeout=10)  # noqa: S603
    return None


def _ip(*args: str) -> None:
    result = subprocess.run([IP, *args], capture_output=True, text=True, check=False, timeout=10)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class NetnsLab:
    """Hosts (by name) on networks (by name); each host gets one address per network it joins."""

    tag: str
    hosts: dict[str, str] = field(default_factory=dict)  # host -> namespace
    addresses: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> network -> address
    ports: dict[str, list[str]] = field(default_factory=dict)  # host -> bridge ports in the switch
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"acd{self.tag}-sw"

    def build(self, networks: Mapping[str, Sequence[str]], isolated: Sequence[str] = ()) -> None:
        """Create the namespaces, one bridge per network and the links; `isolated` hosts get only loopback."""
        _ip("netns", "add", self.switch)
        members = list(dict.fromkeys([*isolated, *(m for group in networks.values() for m in group)]))
        for index, host in enumerate(members):
            self.hosts[host] = f"acd{self.tag}-{index}"
            _ip("netns", "add", self.hosts[host])
            _ip("-n", self.hosts[host], "link", "set", "lo", "up")
            self.addresses[host] = {}
        for net_index, (network, group) in enumerate(networks.items()):
            bridge = f"br{net_index}"
            _ip("-n", self.switch, "link", "add", bridge, "type", "bridge")
            _ip("-n", self.switch, "link", "set", bridge, "up")
            for host in group:
                self._attach(host, members.index(host), network, net_index, bridge)
        for host in members:
            self._write_hosts_file(host)

    def _attach(self, host: str, host_index: int, network: str, net_index: int, bridge: str) -> None:
        outer, inner = f"a{self.tag}h{host_index}n{net_index}", f"eth{net_index}"
        _ip(
            "-n",
            self.switch,
            "link",
            "add",
            outer,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            self.hosts[host],
        )
        _ip("-n", self.switch, "link", "set", outer, "master", bridge, "up")
        address = f"10.250.{net_index}.{host_index + 2}"
        _ip("-n", self.hosts[host], "addr", "add", f"{address}/24", "dev", inner)
        _ip("-n", self.hosts[host], "link", "set", inner, "up")
        self.addresses[host][network] = address
        self.ports.setdefault(host, []).append(outer)

    def _write_hosts_file(self, host: str) -> None:
        lines = ["127.0.0.1 localhost", f"127.0.1.1 {host}"]
        for other, networks in self.addresses.items():
            shared = [networks[n] for n in self.addresses[host] if n in networks and other != host]
            if shared:
                lines.append(f"{shared[0]} {other}")
        folder = NETNS_ETC / self.hosts[host]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text("\n".join(lines) + "\n")

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        return [IP, "netns", "exec", self.hosts[host], *argv]

    def start(
        self, host: str, argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            process = subprocess.Popen(  # noqa: S603
                self.command(host, argv),
                env=dict(env),
                cwd=cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def run(
        self, host: str, argv: Sequence[str], env: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            self.command(host, argv),
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def cut(self, host: str) -> None:
        """Take the host off every network it is on, as unplugging it would (its processes keep running)."""
        for port in self.ports[host]:
            _ip("-n", self.switch, "link", "set", port, "down")

    def destroy(self) -> None:
        for process in reversed(self.processes):
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait(5)
        for namespace in [*self.hosts.values(), self.switch]:
            subprocess.run([IP, "netns", "del", namespace], capture_output=True, check=False, timeout=10)  # noqa: S603
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
