"""The Dockerfiles, checked statically (no container engine here): layering, user, health, command."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field

import pytest

from accord.images import HEALTHCHECK_COMMAND, TMP_DIR, service_folder
from accord.topology import ServiceSpec, Topology, repo_root


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for word, argument in self.instructions if word == keyword]

    def index(self, keyword: str, contains: str) -> int:
        for position, (word, argument) in enumerate(self.instructions):
            if word == keyword and contains in argument:
                return position
        raise AssertionError(f"no {keyword} containing {contains!r}")


def stages(text: str) -> list[Stage]:
    """The build stages of a Dockerfile: instructions with continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    parsed: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, argument = line.strip().partition(" ")
        if word.upper() == "FROM":
            parsed.append(Stage(argument))
        elif parsed:
            parsed[-1].instructions.append((word.upper(), argument))
    return parsed


def dockerfile(spec: ServiceSpec) -> list[Stage]:
    return stages((repo_root() / "deploy" / "docker" / f"{spec.name}.Dockerfile").read_text())


def services(topology: Topology) -> list[ServiceSpec]:
    return topology.services


@pytest.fixture(scope="module")
def workspace_members() -> dict[str, str]:
    """Distribution name -> folder, for every workspace member."""
    members = {}
    for path in [
        repo_root() / "libs/accord",
        repo_root() / "gateway",
        *sorted((repo_root() / "services").iterdir()),
    ]:
        manifest = path / "pyproject.toml"
        if manifest.exists():
            members[tomllib.loads(manifest.read_text())["project"]["name"]] = str(
                path.relative_to(repo_root())
            )
    return members


def test_dependencies_are_installed_from_the_lock_before_any_code_is_copied(topology: Topology) -> None:
    for spec in topology.services:
        build = dockerfile(spec)[0]
        locked = build.index("RUN", "--no-install-workspace")
        assert "--frozen" in build.instructions[locked][1], spec.name
        copies_before = [arg for word, arg in build.instructions[:locked] if word == "COPY"]
        assert all(
            arg.split()[0].endswith(("pyproject.toml", "uv.lock")) or "uv.lock" in arg
            for arg in copies_before
        )
        code = build.index("COPY", f"{service_folder(spec)} ")
        assert code > locked, spec.name
        assert build.index("RUN", "--no-editable") > code, spec.name


def test_each_image_installs_only_its_own_workspace_package(
    topology: Topology, workspace_members: dict[str, str]
) -> None:
    for spec in topology.services:
        build = dockerfile(spec)[0]
        packages = {m.group(1) for arg in build.all("RUN") for m in re.finditer(r"--package (\S+)", arg)}
        assert packages == {spec.name}, spec.name
        assert workspace_members[spec.name] == service_folder(spec)
        copied = {
            arg.split()[0].removesuffix("/pyproject.toml")
            for arg in build.all("COPY")
            if "pyproject.toml" in arg
        }
        # uv resolves the whole workspace from the lock, so every member's manifest must be there.
        assert set(workspace_members.values()) <= copied | {"."}, spec.name


def test_images_run_as_an_unprivileged_user_with_state_only_under_tmp(topology: Topology) -> None:
    for spec in topology.services:
        final = dockerfile(spec)[-1]
        (user,) = final.all("USER")
        uid, _, gid = user.partition(":")
        assert int(uid) >= 10000, spec.name
        assert int(gid) >= 10000, spec.name
        env = dict(item.split("=", 1) for item in final.all("ENV"))
        assert env["ACCORD_STATE_DIR"].startswith(TMP_DIR + "/"), spec.name
        assert env["PYTHONDONTWRITEBYTECODE"] == "1", "a read-only root filesystem takes no .pyc files"


def test_images_report_health_on_readyz_and_run_the_topology_module(topology: Topology) -> None:
    for spec in topology.services:
        final = dockerfile(spec)[-1]
        (healthcheck,) = final.all("HEALTHCHECK")
        command = json.loads(healthcheck.split(" CMD ", 1)[1])
        assert command == list(HEALTHCHECK_COMMAND)
        assert "/readyz" in command[-1]
        (cmd,) = final.all("CMD")
        assert json.loads(cmd) == ["python", "-m", spec.module], spec.name
        env = dict(item.split("=", 1) for item in final.all("ENV"))
        assert env["ACCORD_PORT"] == str(spec.port), spec.name
        (exposed,) = final.all("EXPOSE")
        assert {int(p) for p in exposed.split()} == {p for p in (spec.port, spec.grpc_port) if p}, spec.name


def test_the_final_image_carries_the_virtualenv_and_runtime_data_but_no_sources_or_tools(
    topology: Topology,
) -> None:
    for spec in topology.services:
        final = dockerfile(spec)[-1]
        copied = [arg.split()[-1] for arg in final.all("COPY")]
        assert copied == ["/app/.venv", "deploy", "agent-cards", "data"], spec.name
        assert not any("uv" in arg for arg in final.all("RUN")), spec.name


def test_images_pin_the_same_uv_as_the_makefile(topology: Topology) -> None:
    makefile = (repo_root() / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert pinned is not None
    for spec in topology.services:
        assert (
            f"ARG UV_VERSION={pinned.group(1)}"
            in (repo_root() / f"deploy/docker/{spec.name}.Dockerfile").read_text()
        )


def test_the_build_context_leaves_out_environments_state_and_secrets() -> None:
    ignored = set((repo_root() / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tools", ".accord"} <= ignored
