"""Container images: one Dockerfile per service, rendered from `deploy/topology.yaml`.

Every image is built from the workspace root in two steps, dependencies first (from `uv.lock` alone, so that
layer is rebuilt only when the lock changes) and code second, and installs only its own package and what it
needs. The image's layout mirrors a checkout (`/app/.venv`, `/app/deploy`, `/app/agent-cards`, `/app/data`),
so a service finds its files the same way in a container and in `accord up`. It runs as an unprivileged
user, writes only under `/tmp` (the root filesystem is mounted read-only), and reports health on `/readyz`.
"""

from __future__ import annotations

import json

from accord.topology import ServiceSpec, Topology

APP_DIR = "/app"
TMP_DIR = "/tmp"  # noqa: S108 - the container's own tmpfs, the only writable path
STATE_DIR = f"{TMP_DIR}/accord"
USER_ID = 10001
PYTHON_IMAGE = "python:3.11-slim-bookworm"
UV_VERSION = "0.13.9"
# Mount points of the key volumes; created in the image so a fresh named volume takes the user's ownership.
KEYS_DIR = "/var/lib/accord"
PUBLISHER_DIR = f"{KEYS_DIR}/publisher"
GATEWAY_KEYS_DIR = f"{KEYS_DIR}/gateway"
TRUST_DIR = f"{KEYS_DIR}/trust"
PUBLISHER_RING = f"{PUBLISHER_DIR}/publisher-keys.json"
GATEWAY_RING = f"{GATEWAY_KEYS_DIR}/gateway-keys.json"
TRUST_FILE = f"{TRUST_DIR}/publishers.jwks.json"
# Read at run time through `repo_root()`: cards, policies, workflows, topology and the synthetic data.
RUNTIME_DIRS = ("deploy", "agent-cards", "data")

READINESS_PROBE = (
    "import os, urllib.request; "
    "urllib.request.urlopen('http://127.0.0.1:' + os.environ['ACCORD_PORT'] + '/readyz', timeout=2)"
)
HEALTHCHECK_COMMAND = ("python", "-c", READINESS_PROBE)


def service_folder(spec: ServiceSpec) -> str:
    return "gateway" if spec.kind == "gateway" else f"services/{spec.name}"


def dockerfile_path(spec: ServiceSpec) -> str:
    return f"deploy/docker/{spec.name}.Dockerfile"


def image_name(spec: ServiceSpec) -> str:
    return f"accord/{spec.name}"


def service_command(spec: ServiceSpec) -> list[str]:
    """What the container runs: the same `python -m <module>` that `accord up` runs."""
    return ["python", "-m", spec.module]


def image_env(spec: ServiceSpec) -> dict[str, str]:
    """The environment every container of this image starts with (deployments add to it)."""
    env = {
        "PATH": f"{APP_DIR}/.venv/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "ACCORD_REPO_ROOT": APP_DIR,
        "ACCORD_STATE_DIR": STATE_DIR,
        "ACCORD_HOST": "0.0.0.0",
        "ACCORD_PORT": str(spec.port),
    }
    if spec.grpc_port is not None:
        env["ACCORD_GRPC_PORT"] = str(spec.grpc_port)
    return env


def _manifest_copies(topology: Topology) -> list[str]:
    folders = ["libs/accord", *dict.fromkeys(service_folder(spec) for spec in topology.services)]
    return [f"COPY {folder}/pyproject.toml {folder}/" for folder in folders]


def render_dockerfile(topology: Topology, spec: ServiceSpec) -> str:
    ports = " ".join(str(p) for p in (spec.port, spec.grpc_port) if p is not None)
    folder = service_folder(spec)
    lines = [
        "# syntax=docker/dockerfile:1",
        f"# {spec.name}: rendered from deploy/topology.yaml by `python -m accord.deploy_files --write`.",
        f"# Build from the workspace root: docker build -f {dockerfile_path(spec)} -t {image_name(spec)} .",
        f"ARG PYTHON_IMAGE={PYTHON_IMAGE}",
        "",
        "FROM ${PYTHON_IMAGE} AS build",
        f"ARG UV_VERSION={UV_VERSION}",
        "RUN pip install --no-cache-dir --disable-pip-version-check uv==${UV_VERSION}",
        f"ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never "
        f"UV_PROJECT_ENVIRONMENT={APP_DIR}/.venv",
        f"WORKDIR {APP_DIR}",
        "# Dependencies first, from the lock alone: this layer is rebuilt only when uv.lock changes.",
        "COPY pyproject.toml uv.lock ./",
        *_manifest_copies(topology),
        f"RUN uv sync --frozen --no-dev --no-install-workspace --package {spec.name}",
        "# Code second: the library and this service, installed as packages (no sources needed later).",
        "COPY libs/accord libs/accord",
        f"COPY {folder} {folder}",
        f"RUN uv sync --frozen --no-dev --no-editable --package {spec.name}",
        "",
        "FROM ${PYTHON_IMAGE}",
        f"RUN useradd --uid {USER_ID} --user-group --no-create-home --shell /usr/sbin/nologin accord \\",
        f"    && install -d -o {USER_ID} -g {USER_ID} {PUBLISHER_DIR} {GATEWAY_KEYS_DIR} {TRUST_DIR}",
        f"WORKDIR {APP_DIR}",
        f"COPY --from=build {APP_DIR}/.venv {APP_DIR}/.venv",
        *(f"COPY {directory} {directory}" for directory in RUNTIME_DIRS),
        *(f"ENV {key}={value}" for key, value in image_env(spec).items()),
        f"USER {USER_ID}:{USER_ID}",
        f"EXPOSE {ports}",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\",
        f"    CMD {json.dumps(list(HEALTHCHECK_COMMAND))}",
        f"CMD {json.dumps(service_command(spec))}",
    ]
    return "\n".join(lines) + "\n"


DOCKERIGNORE = """\
# Build context of every image is the workspace root; only sources, the lock and runtime data go in.
.git
.venv
.tools
.accord
**/__pycache__
**/*.pyc
.mypy_cache
.ruff_cache
.pytest_cache
tests
bench
docs
*.db
*.log
secrets.json
*keys.json
"""
