"""What a compose container runs, read from the committed files: the image's ENV and CMD, compose's
`environment`, `command` and `healthcheck`, with compose's variable interpolation.

Container paths become host paths through the mounts a container has: the image's `/app` is the checkout
(the image mirrors its layout: `.venv`, `deploy`, `agent-cards`, `data`), `/tmp` is the container's tmpfs
and each named volume a directory of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose interpolation: `${VAR}`, `$VAR`, `${VAR:?message}`, `${VAR:-default}`, `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        present = variables.get(name)
        empty = present is None or (present == "" and operator is not None and operator.startswith(":"))
        if operator in ("?", ":?") and empty:
            raise KeyError(f"{name}: {argument}")
        if operator in ("-", ":-") and empty:
            return argument or ""
        return present or ""

    return _VARIABLE.sub(replace, value)


@dataclass(frozen=True)
class Image:
    env: dict[str, str]
    cmd: list[str]


def read_image(dockerfile: Path) -> Image:
    """The final stage's ENV (one `KEY=value` per line, as the renderer writes them) and exec-form CMD."""
    final = dockerfile.read_text().rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    cmd: list[str] = []
    for line in final.splitlines():
        if line.startswith("ENV "):
            key, _, value = line[4:].partition("=")
            env[key] = value
        elif line.startswith("CMD "):
            cmd = json.loads(line[4:])
    return Image(env, cmd)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None


def _translate(value: str, mounts: Mapping[str, Path]) -> str:
    """One pass, longest container path first, so a host path put in is never translated again."""
    if not mounts:
        return value
    alternatives = "|".join(re.escape(path) for path in sorted(mounts, key=len, reverse=True))
    pattern = rf"(?<![\w/.-])({alternatives})(?=/|:|$)"
    return re.sub(pattern, lambda match: str(mounts[match.group(1)]), value)


def launch(
    service: Mapping[str, Any],
    image: Image | None,
    variables: Mapping[str, str],
    mounts: Mapping[str, Path],
    base_env: Mapping[str, str] | None = None,
) -> Launch:
    """The command and environment of one compose service, container paths mapped through `mounts`."""
    env = dict(base_env or {})
    env.update(image.env if image else {})
    env.update({k: interpolate(str(v), variables) for k, v in service.get("environment", {}).items()})
    argv = [interpolate(str(a), variables) for a in service.get("command", image.cmd if image else [])]
    env = {key: _translate(value, mounts) for key, value in env.items()}
    argv = [_translate(arg, mounts) for arg in argv]
    health = service.get("healthcheck", {}).get("test")
    healthcheck = None
    if health:
        kind, *rest = health
        healthcheck = [_translate(a, mounts) for a in rest] if kind == "CMD" else ["sh", "-c", rest[0]]
    return Launch(argv, env, healthcheck)


def named_volume_mounts(service: Mapping[str, Any], volumes_dir: Path) -> dict[str, Path]:
    """Container path -> host directory for every named volume of a service (bind mounts are skipped)."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        if not source.startswith((".", "/")):
            mounts[target] = volumes_dir / source
            mounts[target].mkdir(parents=True, exist_ok=True)
    return mounts


def bind_mounts(service: Mapping[str, Any], project_dir: Path) -> dict[str, Path]:
    """Container path -> host file for every bind mount (relative sources are relative to the project)."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (project_dir / source).resolve()
    return mounts
