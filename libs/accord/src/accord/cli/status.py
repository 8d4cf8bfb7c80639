"""Health of every service of the topology."""

from __future__ import annotations

from typing import Any

import httpx

from accord.topology import Topology


def collect_status(topology: Topology, host: str, port_offset: int) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(timeout=2.0) as client:
        for spec in topology.services:
            url = f"http://{host}:{spec.port + port_offset}"
            rows.append(
                {
                    "name": spec.name,
                    "kind": spec.kind,
                    "url": url,
                    "grpc": f"{host}:{spec.grpc_port + port_offset}" if spec.grpc_port else None,
                    "live": _ok(client, url + "/healthz"),
                    "ready": _ok(client, url + "/readyz"),
                }
            )
    return rows


def _ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def render_status(rows: list[dict[str, Any]]) -> str:
    header = f"{'service':<18}{'kind':<14}{'url':<28}{'grpc':<18}status"
    lines = [header, "-" * len(header)]
    for row in rows:
        state = "ready" if row["ready"] else ("live" if row["live"] else "down")
        lines.append(f"{row['name']:<18}{row['kind']:<14}{row['url']:<28}{row['grpc'] or '-':<18}{state}")
    return "\n".join(lines)
