"""The operator: the OAuth client the CLI, the demo and the test harness call the orchestrator as.

A local mesh registers it at the gateway (`deploy/policies/clients.yaml`: client `operator`, scopes
`runs:start runs:read runs:review`) with a secret generated among the mesh's others
(`<state dir>/secrets.json`, `operator-client`). Against any other deployment,
`ACCORD_OPERATOR_CLIENT_ID` and `ACCORD_OPERATOR_CLIENT_SECRET` name the client to use (one added with
`accord clients add`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from accord.gateway_client import GatewayBearer
from accord.topology import repo_root

OPERATOR_CLIENT_ID = "operator"
OPERATOR_SECRET_NAME = "operator-client"  # noqa: S105 (a name, not a secret)
CLIENT_ID_ENV = "ACCORD_OPERATOR_CLIENT_ID"
CLIENT_SECRET_ENV = "ACCORD_OPERATOR_CLIENT_SECRET"  # noqa: S105 (a name, not a secret)
SECRETS_FILE = "secrets.json"


def default_state_dir() -> Path:
    return repo_root() / ".accord"


def read_local_secret(state_dir: Path | None, name: str) -> str | None:
    """One secret of the local mesh (`<state dir>/secrets.json`), or None when there is none."""
    path = (state_dir or default_state_dir()) / SECRETS_FILE
    try:
        secrets: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = secrets.get(name)
    return value if isinstance(value, str) else None


def operator_bearer(gateway_url: str, resource: str, state_dir: Path | None = None) -> GatewayBearer | None:
    """httpx auth as the operator towards `resource` (the orchestrator's URL); None without a secret."""
    client_id = os.environ.get(CLIENT_ID_ENV) or OPERATOR_CLIENT_ID
    secret = os.environ.get(CLIENT_SECRET_ENV) or read_local_secret(state_dir, OPERATOR_SECRET_NAME)
    return GatewayBearer(gateway_url, client_id, secret, resource) if secret else None
