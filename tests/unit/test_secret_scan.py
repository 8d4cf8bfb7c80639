"""The scan that every test run ends with finds each kind of credential in each kind of output, and only
there (a key ring and the secrets file itself are where those belong). The planted leaks live outside the
run's temporary directory, which the run's own final scan reads."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.keys import KeyRing
from accord.testing.secret_scan import scan
from accord.tokens import issue_access_token

SECRET = "s3cr3t-value-0123456789abcdef"


@pytest.fixture
def outside() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="accord-scan-") as directory:
        yield Path(directory)


def mesh_dir(root: Path) -> Path:
    state = root / "mesh"
    (state / "logs").mkdir(parents=True)
    (state / "secrets.json").write_text(json.dumps({"gateway-admin": SECRET}))
    KeyRing.load_or_create(state / "gateway-keys.json")  # private keys, where they belong
    (state / "logs" / "gateway.log").write_text('{"message": "started", "level": "info"}\n')
    return state


def test_clean_output_passes(outside: Path) -> None:
    mesh_dir(outside)
    assert scan(outside) == []


def test_a_token_a_key_or_a_secret_in_any_output_is_found(outside: Path) -> None:
    state = mesh_dir(outside)
    ring = KeyRing.generate()
    token = issue_access_token(ring, "http://gw", "sub", "client", "http://gw/mcp", ["tool:a.b"], 60)
    (state / "logs" / "agent.log").write_text(f'{{"message": "calling with Bearer {token}"}}\n')
    (state / "export.jsonl").write_text(json.dumps({"detail": f"admin {SECRET}"}) + "\n")
    with sqlite3.connect(state / "audit.db") as db:
        db.execute("CREATE TABLE audit (details TEXT)")
        db.execute("INSERT INTO audit VALUES (?)", ("-----BEGIN PRIVATE KEY-----\nMIIE...",))
        db.execute("INSERT INTO audit VALUES (?)", (json.dumps({"kty": "OKP", "d": "A" * 43}),))

    found = {(leak.path.name, leak.kind) for leak in scan(outside)}

    assert found == {
        ("agent.log", "jwt"),
        ("export.jsonl", "secret gateway-admin"),
        ("audit.db", "pem_private_key"),
        ("audit.db", "jwk_private_member"),
    }
