"""The credit-risk part of docker-compose.yml, run as compose would, one network namespace per container.

Each Accord service runs its image's command with its image's and compose's environment (secrets filled
in like an `.env` file would), on the networks compose puts it on, and starts once its `depends_on`
conditions hold, judged by the healthchecks compose would run, inside the service's namespace. PostgreSQL
and Redis are the machine's own binaries given the compose service's settings (user, password, databases,
command), since their images cannot run here.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.images import TMP_DIR
from accord.topology import repo_root
from tests.deploy.compose_runtime import Launch, bind_mounts, launch, named_volume_mounts, read_image
from tests.deploy.netns_lab import NetnsLab

REQUIRED = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\?")
CLIENT = "docker-host"
HEALTH_TIMEOUT_S = 10.0
HEALTH_INTERVAL_S = 1.0
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def postgres_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


def missing_tools() -> str | None:
    if postgres_bin() is None:
        return "PostgreSQL server binaries are not installed"
    for tool in ("redis-server", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@dataclass
class Postgres:
    """The compose `postgres` service: its user, password and database, then its init scripts."""

    service: dict[str, Any]
    variables: dict[str, str]
    folder: Path
    lab: NetnsLab
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="postgres-setup", daemon=True).start()

    def _run(self) -> None:
        try:
            self._setup()
        except BaseException as error:  # reported by ready()
            self.error = error
        finally:
            self.done.set()

    def _setup(self) -> None:
        env = launch(self.service, None, self.variables, {}).env
        binaries = postgres_bin()
        assert binaries is not None
        # Its own folder outside pytest's (root-only) temp tree, so the postgres user can reach it.
        self.folder.mkdir(mode=0o700)
        shutil.chown(self.folder, "postgres")
        password = self.folder / "password"
        password.write_text(env["POSTGRES_PASSWORD"])
        shutil.chown(password, "postgres")
        data, sockets = self.folder / "data", self.folder / "run"
        sockets.mkdir()
        shutil.chown(sockets, "postgres")
        user = env["POSTGRES_USER"]
        runuser = shutil.which("runuser") or "runuser"
        initdb = subprocess.run(  # noqa: S603
            [runuser, "-u", "postgres", "--", str(binaries / "initdb"), "-D", str(data), "-U", user,
             "--auth=scram-sha-256", f"--pwfile={password}", "-N"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr[-2000:]}")
        # The image accepts password logins from any address of its networks; so does this server.
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all all scram-sha-256\n")
        server = [str(binaries / "postgres"), "-D", str(data), "-c", "listen_addresses=*", "-c",
                  f"unix_socket_directories={sockets}", "-c", "fsync=off"]  # fmt: skip
        self.lab.start("postgres", [runuser, "-u", "postgres", "--", *server], {"PATH": HOST_PATH},
                       self.folder / "postgres.log")  # fmt: skip
        psql = {"PATH": f"{binaries}:{HOST_PATH}", "PGPASSWORD": env["POSTGRES_PASSWORD"]}
        deadline = time.monotonic() + 60
        while self.lab.run("postgres", ["pg_isready", "-h", "127.0.0.1", "-U", user], psql, 10).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError("postgres did not start")
            time.sleep(0.2)
        # As the image's entrypoint does: POSTGRES_DB first, then every mounted init script, in its own psql.
        steps = [["-d", "postgres", "-c", f"CREATE DATABASE {env['POSTGRES_DB']} OWNER {user};"]]
        steps += [
            ["-d", env["POSTGRES_DB"], "-f", str(path)]
            for path in bind_mounts(self.service, repo_root()).values()
        ]
        for step in steps:
            command = ["psql", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", user, *step]
            result = self.lab.run("postgres", command, psql, 30)
            if result.returncode != 0:
                raise RuntimeError(f"postgres init failed: {result.stderr}")


@dataclass
class Started:
    launch: Launch
    process: subprocess.Popen[bytes] | None
    log: Path


@dataclass
class ComposeInNamespaces:
    """Runs `names` from the compose file; the docker host is one more namespace on `public`."""

    compose: dict[str, Any]
    names: list[str]
    folder: Path
    lab: NetnsLab = field(default_factory=lambda: NetnsLab(secrets.token_hex(2)))
    variables: dict[str, str] = field(default_factory=dict)
    started: dict[str, Started] = field(default_factory=dict)
    postgres: Postgres | None = None
    timeline: dict[str, float] = field(default_factory=dict)  # seconds from `up` until healthy or done
    checked: dict[str, float] = field(default_factory=dict)  # when each healthcheck last ran

    def __post_init__(self) -> None:
        text = (repo_root() / "docker-compose.yml").read_text()
        self.variables = {name: secrets.token_urlsafe(24) for name in REQUIRED.findall(text)}

    def service(self, name: str) -> dict[str, Any]:
        return self.compose["services"][name]  # type: ignore[no-any-return]

    def build(self) -> None:
        networks: dict[str, list[str]] = {}
        for name in self.names:
            for network in self.service(name).get("networks", []):
                networks.setdefault(network, []).append(name)
        networks.setdefault("public", []).append(CLIENT)
        isolated = [n for n in self.names if self.service(n).get("network_mode") == "none"]
        self.lab.build(networks, isolated)

    def launch_of(self, name: str) -> Launch:
        service = self.service(name)
        mounts: dict[str, Path] = {"/app": repo_root(), TMP_DIR: self.folder / name / "tmp"}
        mounts[TMP_DIR].mkdir(parents=True, exist_ok=True)
        mounts |= named_volume_mounts(service, self.folder / "volumes")
        build = service.get("build")
        image = read_image(repo_root() / build["dockerfile"]) if build else None
        base = None if image else {"PATH": HOST_PATH}
        return launch(service, image, self.variables, mounts, base_env=base)

    def start(self, name: str) -> None:
        log = self.folder / f"{name}.log"
        if name == "postgres":
            folder = Path(tempfile.mkdtemp(prefix="accord-netns-pg-"))
            shutil.chown(folder, "postgres")
            folder /= "cluster"
            self.postgres = Postgres(self.service(name), self.variables, folder, self.lab)
            self.postgres.start()
            self.started[name] = Started(launch(self.service(name), None, self.variables, {}), None, log)
            return
        spec = self.launch_of(name)
        cwd = self.folder / name / "tmp"
        self.started[name] = Started(spec, self.lab.start(name, spec.argv, spec.env, log, cwd=cwd), log)

    def state(self, name: str) -> str:
        """`healthy`, `completed`, `starting`, or raises when the container died."""
        started = self.started[name]
        if name == "postgres":
            assert self.postgres is not None
            if self.postgres.error is not None:
                raise RuntimeError(f"postgres: {self.postgres.error}")
            return "healthy" if self.postgres.done.is_set() else "starting"
        assert started.process is not None
        code = started.process.poll()
        if code is not None:
            if code == 0 and started.launch.healthcheck is None:
                return "completed"
            raise RuntimeError(
                f"{name} exited with {code}:\n{started.log.read_text(errors='replace')[-3000:]}"
            )
        if started.launch.healthcheck is None:
            return "starting"
        check = self.lab.run(name, started.launch.healthcheck, started.launch.env, HEALTH_TIMEOUT_S)
        return "healthy" if check.returncode == 0 else "starting"

    def _check_due(self, name: str) -> bool:
        now = time.monotonic()
        if now - self.checked.get(name, 0.0) < HEALTH_INTERVAL_S:
            return False
        self.checked[name] = now
        return True

    def up(self, timeout_s: float) -> None:
        """Start every service once its dependencies are in the state compose waits for."""
        wanted = {"service_healthy": {"healthy"}, "service_completed_successfully": {"completed"}}
        states: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        while any(states.get(n) not in ("healthy", "completed") for n in self.names):
            for name in self.names:
                depends = self.service(name).get("depends_on", {})
                ready = all(
                    states.get(dep) in wanted[c["condition"]]
                    for dep, c in depends.items()
                    if dep in self.names
                )
                if name not in self.started and ready:
                    self.start(name)
            for name in self.started:
                # At most one healthcheck a second per container: each one is a process, and on a small
                # machine a tighter loop would slow down the very services it waits for.
                if states.get(name) not in ("healthy", "completed") and self._check_due(name):
                    states[name] = self.state(name)
                    if states[name] != "starting":
                        self.timeline[name] = round(timeout_s - (deadline - time.monotonic()), 1)
            if time.monotonic() > deadline:
                waiting = [n for n in self.names if states.get(n) not in ("healthy", "completed")]
                raise TimeoutError(f"not up in {timeout_s:.0f}s: {waiting}; up after (s): {self.timeline}")
            time.sleep(0.2)

    def call(
        self, argv: Iterable[str], timeout_s: float, extra_env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run a command on the docker host's namespace and parse its JSON output."""
        env = {"PATH": HOST_PATH, "PYTHONDONTWRITEBYTECODE": "1", **(extra_env or {})}
        result = self.lab.run(CLIENT, list(argv), env, timeout_s)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def down(self) -> None:
        self.lab.destroy()
        if self.postgres is not None:
            shutil.rmtree(self.postgres.folder.parent, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{s.log.read_text(errors='replace')[-1500:]}"
            for name, s in self.started.items()
            if s.log.exists()
        )


def interpreter() -> str:
    """The checkout's interpreter, which is the image's `/app/.venv/bin/python`."""
    return str(repo_root() / ".venv" / "bin" / "python") if os.name == "posix" else "python"
