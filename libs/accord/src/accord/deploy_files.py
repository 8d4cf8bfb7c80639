"""Every deployment file rendered from deploy/topology.yaml: `python -m accord.deploy_files --write`.

docker-compose.yml, one Dockerfile per service, the PostgreSQL init script, the root .dockerignore and the
Kubernetes tree under deploy/k8s. Tests compare the committed files with `rendered_files()`, so the
topology stays the one place a service is declared. `--check` exits 1 and names the stale files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from accord import deployment, images
from accord.compose import render_compose
from accord.kube import render_k8s
from accord.topology import Topology, load_topology, repo_root

GENERATED_DIRS = ("deploy/k8s/base", "deploy/k8s/overlays")


def rendered_files(topology: Topology, root: Path) -> dict[str, str]:
    """Path relative to the repository root -> content."""
    files = {"docker-compose.yml": render_compose(topology), ".dockerignore": images.DOCKERIGNORE}
    files |= {
        images.dockerfile_path(spec): images.render_dockerfile(topology, spec) for spec in topology.services
    }
    files["deploy/docker/postgres-init.sql"] = deployment.postgres_init_sql(topology)
    files |= {f"deploy/k8s/{path}": text for path, text in render_k8s(topology, root).items()}
    return files


def stale_files(topology: Topology, root: Path) -> list[str]:
    """Rendered files that differ on disk, plus generated-looking files no rendering produces."""
    files = rendered_files(topology, root)
    stale = [path for path, text in files.items() if _read(root / path) != text]
    leftovers = [
        str(path.relative_to(root))
        for directory in (*GENERATED_DIRS, "deploy/docker")
        for path in sorted((root / directory).rglob("*"))
        if path.is_file() and str(path.relative_to(root)) not in files and path.name != "README.md"
    ]
    return stale + leftovers


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def write_files(topology: Topology, root: Path) -> list[str]:
    written = []
    for path, text in rendered_files(topology, root).items():
        target = root / path
        if _read(target) != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accord.deploy_files", description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the files that changed")
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file is stale")
    args = parser.parse_args(argv)
    root = repo_root()
    topology = load_topology()
    if args.write:
        for path in write_files(topology, root):
            print(f"wrote {path}")
    stale = stale_files(topology, root)
    for path in stale:
        print(f"stale: {path}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
