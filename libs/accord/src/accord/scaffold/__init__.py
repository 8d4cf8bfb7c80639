"""`accord new agent <name>`: a working specialist in the places the mesh reads it from.

For `<name>` (say `fraud`) it writes, under the repo root:

- `services/fraud-agent/` (pyproject, package `fraud_agent` with one skill `fraud-summary` whose input and
  output are pydantic models) and `tests/unit/test_fraud_agent.py`;
- `agent-cards/fraud-agent.json` (the card source the SDK serves, signed);
- a `fraud-agent` client in `deploy/policies/clients.yaml` (its secret in `ACCORD_CLIENT_SECRET_FRAUD_AGENT`)
  with no tools yet in `deploy/policies/tools.yaml`, and the orchestrator allowed to delegate its skill in
  `deploy/policies/delegation.yaml` (when that file exists);
- a `fraud-agent` service in `deploy/topology.yaml` (next free agent ports; the gateway gets its client
  secret), and the package in the root `pyproject.toml` workspace dependencies.

Everything is checked before anything is written: an existing agent of that name, or a file that does not
have the expected shape, stops the command with nothing changed.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import yaml

from accord.topology import Topology

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_NAME = 40
FIRST_AGENT_PORT = 8710
GRPC_OFFSET = 100  # agents' gRPC ports sit 100 above their HTTP ports (8710 -> 8810)


class ScaffoldError(ValueError):
    """The agent cannot be scaffolded here; nothing was written."""


@dataclass(frozen=True)
class AgentNames:
    name: str  # fraud

    @property
    def agent(self) -> str:  # fraud-agent: folder, service, client id, card
        return f"{self.name}-agent"

    @property
    def package(self) -> str:  # fraud_agent
        return self.agent.replace("-", "_")

    @property
    def skill(self) -> str:
        return f"{self.name}-summary"

    @property
    def model(self) -> str:  # FraudSummary
        return "".join(part.capitalize() for part in self.name.split("-")) + "Summary"

    @property
    def secret_env(self) -> str:
        return f"ACCORD_CLIENT_SECRET_{self.package.upper()}"


@dataclass(frozen=True)
class Scaffold:
    """What `accord new agent` writes: new files, and edited files with their new text."""

    names: AgentNames
    port: int
    grpc_port: int
    files: dict[Path, str]  # relative path -> full text (new or edited)

    def write(self, root: Path) -> list[Path]:
        for relative, text in self.files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return sorted(self.files)


def plan_agent(root: Path, name: str, description: str) -> Scaffold:
    """Everything `accord new agent` would write, checked; raises `ScaffoldError` otherwise."""
    if not NAME.match(name) or len(name) > MAX_NAME or name.endswith("-agent"):
        raise ScaffoldError(
            f"name must be lower-case kebab-case, at most {MAX_NAME} characters, without '-agent'"
        )
    names = AgentNames(name)
    description = " ".join(description.split()) or f"Summarizes texts about a subject ({name})."
    for taken in (Path("services") / names.agent, Path("agent-cards") / f"{names.agent}.json"):
        if (root / taken).exists():
            raise ScaffoldError(f"{taken} already exists")
    topology_text = _read(root, "deploy/topology.yaml")
    topology = Topology.model_validate(yaml.safe_load(topology_text))
    if any(spec.name == names.agent for spec in topology.services):
        raise ScaffoldError(f"deploy/topology.yaml already has {names.agent}")
    used = {port for spec in topology.services for port in (spec.port, spec.grpc_port) if port}
    port = next(
        p for p in range(FIRST_AGENT_PORT, FIRST_AGENT_PORT + 30) if {p, p + GRPC_OFFSET}.isdisjoint(used)
    )
    files: dict[Path, str] = {**_package_files(names, description), **_card_file(names, description)}
    files[Path("deploy/topology.yaml")] = _with_service(topology_text, names, port)
    files[Path("deploy/policies/tools.yaml")] = _with_tool_policy(
        _read(root, "deploy/policies/tools.yaml"), names
    )
    files[Path("deploy/policies/clients.yaml")] = _with_client(
        _read(root, "deploy/policies/clients.yaml"), names, description
    )
    if (root / "deploy/policies/delegation.yaml").exists():
        files[Path("deploy/policies/delegation.yaml")] = _with_delegation(
            _read(root, "deploy/policies/delegation.yaml"), names
        )
    files[Path("pyproject.toml")] = _with_workspace_member(_read(root, "pyproject.toml"), names)
    return Scaffold(names, port, port + GRPC_OFFSET, files)


def _read(root: Path, relative: str) -> str:
    try:
        return (root / relative).read_text()
    except OSError as exc:
        raise ScaffoldError(f"{relative} is missing under {root}") from exc


def _template(template: str, **values: str) -> str:
    text = resources.files("accord.scaffold").joinpath("templates", template).read_text()
    return Template(text).substitute(values)


def _package_files(names: AgentNames, description: str) -> dict[Path, str]:
    values = {
        "name": names.name,
        "agent": names.agent,
        "package": names.package,
        "skill": names.skill,
        "model": names.model,
        "function": names.skill.replace("-", "_"),
        "description": description,
    }
    folder = Path("services") / names.agent
    return {
        folder / "pyproject.toml": _template("pyproject.toml.tmpl", **values),
        folder / names.package / "__init__.py": _template("package_init.py.tmpl", **values),
        folder / names.package / "__main__.py": _template("package_main.py.tmpl", **values),
        folder / names.package / "agent.py": _template("agent.py.tmpl", **values),
        Path("tests/unit") / f"test_{names.package}.py": _template("test_agent.py.tmpl", **values),
    }


def _card_file(names: AgentNames, description: str) -> dict[Path, str]:
    card = {
        "name": names.agent,
        "description": description,
        "version": "0.1.0",
        "provider": {"organization": "Accord", "url": f"https://accord.example/agents/{names.agent}"},
        "capabilities": {"streaming": True},
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [
            {
                "id": names.skill,
                "name": f"{names.name.replace('-', ' ').capitalize()} summary",
                "description": "Summarizes a text about a subject: its first sentence and its word count, "
                "with a confidence that grows with the text's length.",
                "tags": [names.name, "summary"],
                "examples": [json.dumps({"subject_id": "S-1", "text": "First point. Second point."})],
                "inputModes": ["application/json"],
                "outputModes": ["application/json"],
            }
        ],
    }
    return {
        Path("agent-cards") / f"{names.agent}.json": json.dumps(card, indent=2, ensure_ascii=False) + "\n"
    }


def _with_service(text: str, names: AgentNames, port: int) -> str:
    """Append the agent's service and give the gateway its client secret, keeping comments."""
    lines = text.rstrip("\n").split("\n")
    start = lines.index("  - name: gateway") if "  - name: gateway" in lines else -1
    if start < 0:
        raise ScaffoldError("deploy/topology.yaml has no gateway service")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  - name: ")), len(lines))
    secrets = [i for i in range(start, end) if re.match(r"^\s+ACCORD_CLIENT_SECRET_\w+:", lines[i])]
    if not secrets:
        raise ScaffoldError("the gateway in deploy/topology.yaml lists no client secrets")
    indent = lines[secrets[-1]][: len(lines[secrets[-1]]) - len(lines[secrets[-1]].lstrip())]
    lines.insert(secrets[-1] + 1, f"{indent}{names.secret_env}: ${{secret:{names.agent}-client}}")
    lines += [
        f"  - name: {names.agent}",
        "    kind: agent",
        f"    module: {names.package}",
        f"    port: {port}",
        f"    grpc_port: {port + GRPC_OFFSET}",
        "    depends_on: [gateway, registry]",
        "    env:",
        "      ACCORD_GATEWAY_URL: ${url:gateway}",
        "      ACCORD_REGISTRY_URL: ${url:registry}",
        f"      ACCORD_CLIENT_ID: {names.agent}",
        f"      ACCORD_CLIENT_SECRET: ${{secret:{names.agent}-client}}",
    ]
    result = "\n".join(lines) + "\n"
    topology = Topology.model_validate(yaml.safe_load(result))
    gateway = topology.by_name("gateway")
    if gateway.env.get(names.secret_env) != f"${{secret:{names.agent}-client}}":
        raise ScaffoldError("could not add the agent's secret to the gateway's environment")
    return result


def _with_tool_policy(text: str, names: AgentNames) -> str:
    block = (
        f"\n  {names.agent}:\n"
        "    rate_limit: {per_second: 50, burst: 100}\n"
        "    # The gateway tools this agent's skills call, e.g.\n"
        "    #   - tool: ledger.get_account\n"
        "    #     arguments:\n"
        "    #       account_id: {equals_binding: account_id}\n"
        "    tools: []\n"
    )
    return _appended(text, block, "clients", names.agent, "deploy/policies/tools.yaml")


def _with_client(text: str, names: AgentNames, description: str) -> str:
    block = (
        f"\n  - client_id: {names.agent}\n"
        "    kind: agent\n"
        f"    description: {json.dumps(description)}\n"
        f"    secret_env: {names.secret_env}\n"
    )
    result = text.rstrip("\n") + "\n" + block
    document = yaml.safe_load(result)
    ids = [entry.get("client_id") for entry in (document or {}).get("clients", []) if isinstance(entry, dict)]
    if ids.count(names.agent) != 1:
        raise ScaffoldError(f"deploy/policies/clients.yaml: could not add {names.agent} once")
    return result


def _with_delegation(text: str, names: AgentNames) -> str:
    """Let the orchestrator delegate the new skill (the last mapping of the file is its agents)."""
    document = yaml.safe_load(text) or {}
    agents = ((document.get("callers") or {}).get("orchestrator") or {}).get("agents")
    if not isinstance(agents, dict):
        raise ScaffoldError("deploy/policies/delegation.yaml has no orchestrator agents to extend")
    if names.agent in agents:
        raise ScaffoldError(f"deploy/policies/delegation.yaml already names {names.agent}")
    result = text.rstrip("\n") + f"\n      {names.agent}: [{names.skill}]\n"
    updated = yaml.safe_load(result)["callers"]["orchestrator"]["agents"]
    if updated.get(names.agent) != [names.skill] or len(updated) != len(agents) + 1:
        raise ScaffoldError("deploy/policies/delegation.yaml does not end with the orchestrator's agents")
    return result


def _appended(text: str, block: str, mapping: str, key: str, source: str) -> str:
    """Append `block` to the file's last top-level mapping `mapping` and check it landed there."""
    result = text.rstrip("\n") + "\n" + block
    before = (yaml.safe_load(text) or {}).get(mapping) or {}
    after = (yaml.safe_load(result) or {}).get(mapping) or {}
    if key in before or key not in after or len(after) != len(before) + 1:
        raise ScaffoldError(f"{source}: could not add {key} to its '{mapping}'")
    return result


def _with_workspace_member(text: str, names: AgentNames) -> str:
    """Add the package to the root workspace's dependencies and sources (so `uv sync` installs it)."""
    lines = text.split("\n")
    try:
        deps_start = lines.index("dependencies = [")
        deps_end = lines.index("]", deps_start)
        sources = lines.index("[tool.uv.sources]")
    except ValueError as exc:
        raise ScaffoldError("pyproject.toml has no workspace dependencies and sources to extend") from exc
    sources_end = next((i for i in range(sources + 1, len(lines)) if not lines[i].strip()), len(lines))
    lines.insert(sources_end, f"{names.agent} = {{ workspace = true }}")
    lines.insert(deps_end, f'    "{names.agent}",')
    if "known-first-party = [" in lines:
        # So ruff sorts the new package's imports with the workspace's own.
        lines.insert(lines.index("known-first-party = [") + 1, f'    "{names.package}",')
    result = "\n".join(lines)
    document = tomllib.loads(result)
    if (
        names.agent not in document["project"]["dependencies"]
        or names.agent not in document["tool"]["uv"]["sources"]
    ):
        raise ScaffoldError("pyproject.toml: could not add the workspace member")
    return result
