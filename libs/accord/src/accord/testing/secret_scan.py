"""Looking for credentials where they must never be: in what a test run's services wrote.

`scan` walks a directory (a test run's temporary files) and reads every service output in it: logs, the
SQLite files of audit trails, span stores, run stores and registries, JSONL exports. It reports every one
that holds an access token or grant (a signed JWT), private key material (a PEM block, a JWK's private
`d`), or one of the secrets the meshes generated (read from their `secrets.json` files, the one place
those belong). Key rings and test fixtures are not outputs and are not read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SECRETS_FILE = "secrets.json"
SCANNED_SUFFIXES = frozenset({".log", ".db", ".db-wal", ".jsonl"})
PATTERNS: dict[str, re.Pattern[bytes]] = {
    "jwt": re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
    "pem_private_key": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "jwk_private_member": re.compile(rb'"d"\s*:\s*"[A-Za-z0-9_-]{20,}"'),
}
_MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Leak:
    path: Path
    kind: str
    count: int

    def __str__(self) -> str:
        return f"{self.path}: {self.count} x {self.kind}"


def generated_secrets(root: Path) -> dict[bytes, str]:
    """Every secret the meshes under `root` generated, and its name."""
    found: dict[bytes, str] = {}
    for path in root.rglob(SECRETS_FILE):
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(values, dict):
            found.update({v.encode(): k for k, v in values.items() if isinstance(v, str) and len(v) >= 16})
    return found


def scanned_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.suffix in SCANNED_SUFFIXES and path.is_file() and not path.is_symlink():
            yield path


def scan(root: Path) -> list[Leak]:
    """Every credential found in the files under `root` (none, when nothing leaked)."""
    secrets = generated_secrets(root)
    leaks: list[Leak] = []
    for path in scanned_files(root):
        try:
            if path.stat().st_size > _MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue  # removed while we looked (a test's cleanup)
        for kind, pattern in PATTERNS.items():
            count = len(pattern.findall(data))
            if count:
                leaks.append(Leak(path, kind, count))
        for value, name in secrets.items():
            count = data.count(value)
            if count:
                leaks.append(Leak(path, f"secret {name}", count))
    return leaks
