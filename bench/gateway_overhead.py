"""What the gateway costs a tool call: the same call direct to an upstream vs through the gateway with
full authorization (token verification, scope, policy with an argument constraint bound to the task grant,
grant revocation check, rate limit) and audit (one hash-chained record per call, committed before the
answer).

Real processes on loopback, started from `deploy/topology.yaml`: the three tool servers and the gateway.
The load generator sends what the agent SDK's MCP client sends (protocol 2026-07-28, one self-contained
POST per call) over keep-alive HTTP, so its own overhead stays small and equal for both paths:

* latency at a fixed moderate rate (open loop: a call starts every 1/rate s whatever the previous did);
* saturation throughput: several concurrent clients, each calling back to back, for a bounded count/time.

The gateway runs the deployed policy, except that rate limits are raised so the load is never limited
(the limiter still runs on every call). At the end every through-gateway call is checked to have exactly
one audit record.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from accord.audit import AuditLog
from accord.mesh import MeshRunner
from accord.storage import create_engine
from accord.topology import load_topology, repo_root
from bench._process_cpu import CpuMeter

PORT_OFFSET = int(os.environ.get("ACCORD_BENCH_PORT_OFFSET", "12000"))
RATE = float(os.environ.get("ACCORD_BENCH_RATE", "100"))  # calls per second
FIXED_SECONDS = float(os.environ.get("ACCORD_BENCH_SECONDS", "10"))
SATURATION_CLIENTS = int(os.environ.get("ACCORD_BENCH_CLIENTS", "8"))
SATURATION_CALLS = int(os.environ.get("ACCORD_BENCH_CALLS", "5000"))
SATURATION_SECONDS = float(os.environ.get("ACCORD_BENCH_SATURATION_SECONDS", "10"))
WARMUP_CALLS = 200
ACCOUNT = "ACC-100007"
PROTOCOL = "2026-07-28"
CLIENT_META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL,
    "io.modelcontextprotocol/clientInfo": {"name": "accord-bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass(frozen=True)
class Target:
    label: str
    url: str
    bearer: str
    tool: str

    def request(self, request_id: int) -> tuple[bytes, dict[str, str]]:
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": self.tool, "arguments": {"account_id": ACCOUNT}, "_meta": CLIENT_META},
        }
        headers = {
            "authorization": f"Bearer {self.bearer}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": PROTOCOL,
            "mcp-method": "tools/call",
            "mcp-name": self.tool,
        }
        return json.dumps(body, separators=(",", ":")).encode(), headers


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls: int
    achieved_rate: float


@dataclass(frozen=True)
class Throughput:
    calls_per_s: float
    calls: int
    seconds: float
    errors: int
    cpu_ms_per_call: dict[str, float]  # process -> CPU time it spent per call (all its threads)


class CallFailed(Exception):
    pass


async def call_once(http: httpx.AsyncClient, target: Target, request_id: int) -> float:
    body, headers = target.request(request_id)
    started = time.perf_counter()
    response = await http.post(target.url, content=body, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise CallFailed(f"{target.label}: HTTP {response.status_code} {response.text[:200]}")
    answer = response.json()
    if "result" not in answer or answer["result"].get("isError"):
        raise CallFailed(f"{target.label}: {response.text[:200]}")
    return elapsed * 1000


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def fixed_rate(target: Target, rate: float, seconds: float) -> Latency:
    """Open loop: a call is started every 1/rate seconds; each one's latency is recorded."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=64)) as http:
        for i in range(WARMUP_CALLS):
            await call_once(http, target, i)
        count = int(rate * seconds)
        tasks: list[asyncio.Task[float]] = []
        started = time.perf_counter()
        for i in range(count):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(call_once(http, target, i)))
        samples = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return Latency(
        p50_ms=percentile(samples, 0.50),
        p99_ms=percentile(samples, 0.99),
        mean_ms=statistics.fmean(samples),
        calls=len(samples),
        achieved_rate=len(samples) / elapsed,
    )


async def saturation(
    target: Target, clients: int, max_calls: int, max_seconds: float, processes: dict[str, int]
) -> Throughput:
    """`clients` concurrent callers back to back, until `max_calls` are done or `max_seconds` pass."""
    done = 0
    errors = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as http:
        for i in range(WARMUP_CALLS):
            await call_once(http, target, i)
        meter = CpuMeter(processes)
        meter.start()
        deadline = time.perf_counter() + max_seconds

        async def caller() -> None:
            nonlocal done, errors
            while done + errors < max_calls and time.perf_counter() < deadline:
                try:
                    await call_once(http, target, done)
                    done += 1
                except (CallFailed, httpx.HTTPError):
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    cpu = meter.per(done)
    return Throughput(
        calls_per_s=done / elapsed, calls=done, seconds=elapsed, errors=errors, cpu_ms_per_call=cpu
    )


def bench_policy() -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load((repo_root() / "deploy/policies/tools.yaml").read_text())
    unlimited = {"per_second": 1_000_000, "burst": 1_000_000}
    policy["defaults"] = {"rate_limit": unlimited}
    for entry in policy["clients"].values():
        entry["rate_limit"] = unlimited
    return policy


async def agent_token(gateway: str, secrets: dict[str, str]) -> str:
    """The ledger agent's token for one task, obtained exactly as the agent SDK does (grant, exchange)."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        response = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "grants:issue"},
            auth=("orchestrator", secrets["orchestrator-client"]),
        )
        response.raise_for_status()
        orchestrator = response.json()["access_token"]
        response = await http.post(
            "/v1/grants",
            headers={"Authorization": f"Bearer {orchestrator}"},
            json={
                "agent": "ledger-agent",
                "skill": "transaction-profile",
                "wf": "bench-run",
                "task": "ledger",
                "scopes": ["tool:ledger.get_account"],
                "deadline": time.time() + 900,
                "bindings": {"account_id": ACCOUNT},
            },
        )
        response.raise_for_status()
        response = await http.post(
            "/oauth/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": response.json()["grant"],
                "subject_token_type": "urn:accord:params:oauth:token-type:grant",
                "resource": gateway + "/mcp",
            },
            auth=("ledger-agent", secrets["ledger-agent-client"]),
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


async def audited_calls(state_dir: Path) -> int:
    engine = create_engine(f"sqlite+aiosqlite:///{state_dir / 'gateway.db'}")
    try:
        records = await AuditLog(engine, "gateway").records(run_id="bench-run")
    finally:
        await engine.dispose()
    return sum(1 for r in records if r["action"] == "tools/call" and r["outcome"] == "ok")


async def measure(runner: MeshRunner, echo: Callable[[str], None], load_before: str) -> None:
    secrets: dict[str, str] = json.loads((runner.state_dir / "secrets.json").read_text())
    gateway = runner.url("gateway")
    direct = Target("direct", runner.url("ledger-tools") + "/mcp", secrets["ledger-tools"], "get_account")
    via = Target("gateway", gateway + "/mcp", await agent_token(gateway, secrets), "ledger.get_account")

    echo(
        f"fixed rate: {RATE:.0f} calls/s for {FIXED_SECONDS:.0f} s per path "
        f"(after {WARMUP_CALLS} warm-up calls)"
    )
    fixed = {t.label: await fixed_rate(t, RATE, FIXED_SECONDS) for t in (direct, via)}
    echo(
        f"saturation: {SATURATION_CLIENTS} concurrent clients, up to {SATURATION_CALLS} calls or "
        f"{SATURATION_SECONDS:.0f} s per path"
    )
    processes = {name: runner.services[name].process.pid for name in ("gateway", "ledger-tools")}
    saturated = {
        t.label: await saturation(t, SATURATION_CLIENTS, SATURATION_CALLS, SATURATION_SECONDS, processes)
        for t in (direct, via)
    }
    made_through_gateway = 2 * WARMUP_CALLS + fixed["gateway"].calls + saturated["gateway"].calls
    audited = await audited_calls(runner.state_dir)

    echo("")
    echo(
        f"{'path':<10}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'rate/s':>9}   {'saturation calls/s':>19}"
        f"{'errors':>8}{'gw CPU ms/call':>16}{'upstream CPU ms/call':>22}"
    )
    for label in ("direct", "gateway"):
        lat, sat = fixed[label], saturated[label]
        echo(
            f"{label:<10}{lat.p50_ms:>9.2f}{lat.p99_ms:>9.2f}{lat.mean_ms:>9.2f}{lat.achieved_rate:>9.1f}   "
            f"{sat.calls_per_s:>19.0f}{sat.errors:>8}{sat.cpu_ms_per_call['gateway']:>16.2f}"
            f"{sat.cpu_ms_per_call['ledger-tools']:>22.2f}"
        )
    added_p50 = fixed["gateway"].p50_ms - fixed["direct"].p50_ms
    added_p99 = fixed["gateway"].p99_ms - fixed["direct"].p99_ms
    echo(f"{'added':<10}{added_p50:>9.2f}{added_p99:>9.2f}")
    echo("")
    echo(
        f"targets: added p50 <= 2 ms ({'met' if added_p50 <= 2 else 'MISSED'}), "
        f"added p99 <= 6 ms ({'met' if added_p99 <= 6 else 'MISSED'}), "
        f">= 1000 authorized calls/s ({'met' if saturated['gateway'].calls_per_s >= 1000 else 'MISSED'})"
    )
    gateway_cpu = saturated["gateway"].cpu_ms_per_call["gateway"]
    if gateway_cpu > 0:
        echo(
            f"gateway CPU per authorized call {gateway_cpu:.2f} ms: about {1000 / gateway_cpu:.0f} calls/s "
            "per core for the gateway alone"
        )
    echo(
        f"cpus: {os.cpu_count()}; load average before the run: {load_before} "
        "(other work on the machine skews the figures)"
    )
    echo(
        f"audit: {audited} tools/call records for {made_through_gateway} calls through the gateway "
        f"({'none lost' if audited == made_through_gateway else 'MISMATCH'})"
    )


def run(echo: Callable[[str], None]) -> None:
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as directory:
        state_dir = Path(directory)
        policy_file = state_dir / "bench-tools.yaml"
        policy_file.write_text(yaml.safe_dump(bench_policy()))
        quiet = {"ACCORD_LOG_LEVEL": "WARNING"}
        # Every tool server the gateway federates: it is ready only once each has connected.
        tools = {spec.name for spec in load_topology().of_kind("tools")}
        runner = MeshRunner(
            state_dir,
            port_offset=PORT_OFFSET,
            only={*tools, "gateway"},
            extra_env={
                "gateway": {**quiet, "ACCORD_GATEWAY_POLICY_FILE": str(policy_file)},
                **{name: quiet for name in tools},
            },
        )
        runner.start(timeout_s=90)
        try:
            asyncio.run(measure(runner, echo, load_before))
        finally:
            runner.stop()


__all__ = ["run"]
