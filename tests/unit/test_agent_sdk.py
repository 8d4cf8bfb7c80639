"""The agent SDK: contracts from type hints, cards with skill schemas, startup checks, least privilege."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from functools import partial

import pytest
from a2a.utils.constants import TransportProtocol
from pydantic import BaseModel, ValidationError

from accord.agent import Agent, AgentSettings, NoGrant, ToolBox, ToolClient
from accord.agent.registration import Registration, register_with_registry
from accord.cards import (
    SkillSchemas,
    build_card,
    card_from_dict,
    card_source_path,
    card_to_dict,
    skill_schemas,
)
from accord.errors import AccordError
from accord.testing.ports import free_port


class Question(BaseModel):
    name: str
    limit: int = 5


class Answer(BaseModel):
    status: str
    score: float


def settings(**overrides: object) -> AgentSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 18710,
        "grpc_port": 18810,
        "gateway_url": "http://127.0.0.1:18700",
        "client_id": "sanctions-agent",
        "client_secret": "sanctions-agent-secret-0123456789",
    }
    values.update(overrides)
    return AgentSettings(**values)  # type: ignore[arg-type]


def sanctions_like_agent(skill_id: str = "sanctions-screening") -> Agent:
    agent = Agent("sanctions-agent")

    @agent.skill(skill_id, tools=["sanctions.search"])
    async def screen(request: Question, tools: ToolBox) -> Answer:
        return Answer(status="clear", score=0.0)

    return agent


def test_a_skill_reads_its_input_and_output_models_from_the_handler_type_hints() -> None:
    agent = sanctions_like_agent()
    skill = agent.skills["sanctions-screening"]
    assert skill.input_model is Question
    assert skill.output_model is Answer
    assert skill.tools == ("sanctions.search",)
    schemas = agent.skill_schemas()["sanctions-screening"]
    assert schemas.input_schema == Question.model_json_schema()
    assert schemas.output_schema == Answer.model_json_schema()
    assert schemas.input_schema["required"] == ["name"]


def test_the_card_carries_the_skill_schemas_extension_and_all_three_interfaces() -> None:
    agent = sanctions_like_agent()
    card = agent.build_card(settings())
    assert card.name == "sanctions-agent"
    assert [s.id for s in card.skills] == ["sanctions-screening"]
    assert skill_schemas(card)["sanctions-screening"].output_schema == Answer.model_json_schema()
    interfaces = {i.protocol_binding: i.url for i in card.supported_interfaces}
    assert interfaces == {
        TransportProtocol.JSONRPC: "http://127.0.0.1:18710/a2a/jsonrpc",
        TransportProtocol.HTTP_JSON: "http://127.0.0.1:18710/a2a/rest",
        TransportProtocol.GRPC: "127.0.0.1:18810",
    }


def test_the_card_advertises_the_public_url_not_the_bind_address() -> None:
    card = sanctions_like_agent().build_card(
        settings(host="0.0.0.0", public_url="http://agent.internal:9000")
    )
    urls = {i.url for i in card.supported_interfaces}
    assert urls == {
        "http://agent.internal:9000/a2a/jsonrpc",
        "http://agent.internal:9000/a2a/rest",
        "agent.internal:18810",
    }


@pytest.mark.parametrize("name", ["sanctions-agent", "bureau-agent", "ledger-agent"])
def test_each_card_source_is_an_a2a_card_without_interfaces(name: str) -> None:
    source = json.loads(card_source_path(name).read_text())
    assert "supportedInterfaces" not in source
    assert source["capabilities"] == {"streaming": True}
    assert source["defaultInputModes"] == source["defaultOutputModes"] == ["application/json"]
    for skill in source["skills"]:
        assert {"id", "name", "description", "tags", "examples"} <= set(skill)


@pytest.mark.parametrize(
    ("module", "skill_id"),
    [
        ("sanctions_agent.agent", "sanctions-screening"),
        ("bureau_agent.agent", "credit-file"),
        ("ledger_agent.agent", "transaction-profile"),
    ],
)
def test_each_specialist_builds_its_card_from_its_source_and_skills(module: str, skill_id: str) -> None:
    agent: Agent = __import__(module, fromlist=["agent"]).agent
    card = agent.build_card(settings())
    assert [s.id for s in card.skills] == [skill_id]
    schemas = skill_schemas(card)[skill_id]
    assert schemas.input_schema["type"] == schemas.output_schema["type"] == "object"
    assert "confidence" in schemas.output_schema["properties"]
    assert len(card_to_dict(card)["supportedInterfaces"]) == 3


def test_startup_fails_when_the_card_names_a_skill_the_agent_does_not_implement() -> None:
    agent = sanctions_like_agent(skill_id="sanctions-rescreening")
    with pytest.raises(ValueError, match="differ"):
        agent.create_app(settings())
    with pytest.raises(ValueError, match="differ"):
        Agent("sanctions-agent").create_app(settings())


def test_a_skill_declaration_with_the_wrong_shape_is_refused_at_import_time() -> None:
    agent = Agent("sanctions-agent")

    with pytest.raises(TypeError, match="async"):

        @agent.skill("sync-skill")  # type: ignore[type-var]
        def sync(request: Question, tools: ToolBox) -> Answer:
            return Answer(status="clear", score=0)

    with pytest.raises(TypeError, match="pydantic model"):

        @agent.skill("untyped-input")
        async def untyped(request: dict, tools: ToolBox) -> Answer:  # type: ignore[type-arg]
            return Answer(status="clear", score=0)

    with pytest.raises(TypeError, match="ToolBox"):

        @agent.skill("no-toolbox")
        async def no_toolbox(request: Question, tools: object) -> Answer:
            return Answer(status="clear", score=0)

    with pytest.raises(TypeError, match="return type"):

        @agent.skill("no-output-model")  # type: ignore[type-var]
        async def no_output(request: Question, tools: ToolBox) -> dict:  # type: ignore[type-arg]
            return {}

    with pytest.raises(ValueError, match=r"<upstream>\.<tool>"):

        @agent.skill("bad-tool", tools=["search"])
        async def bad_tool(request: Question, tools: ToolBox) -> Answer:
            return Answer(status="clear", score=0)

    assert dict(agent.skills) == {}


def test_the_same_skill_cannot_be_declared_twice() -> None:
    agent = sanctions_like_agent()
    with pytest.raises(ValueError, match="twice"):

        @agent.skill("sanctions-screening")
        async def again(request: Question, tools: ToolBox) -> Answer:
            return Answer(status="clear", score=0)


class CountingTokens:
    def __init__(self) -> None:
        self.requests: list[tuple[str, ...]] = []

    async def token(self, tools: Sequence[str]) -> str | None:
        self.requests.append(tuple(tools))
        return "t0ken"


async def test_the_toolbox_refuses_an_undeclared_tool_before_any_network_io() -> None:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    listener = await asyncio.start_server(count, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = ToolClient(f"http://127.0.0.1:{port}/mcp", timeout_s=5)
    tokens = CountingTokens()
    box = ToolBox(client, ["sanctions.search"], tokens)
    try:
        with pytest.raises(AccordError) as refused:
            await box.call("bureau.get_credit_file", {"applicant_id": "APP-0001"})
        assert refused.value.reason == "policy_denied"
        assert connections == 0
        assert tokens.requests == []
        assert not client.connected
        assert client.connections_opened == 0

        # The declared tool does go out (and fails here, since the listener is no MCP server).
        with pytest.raises(AccordError) as failed:
            await box.call("sanctions.search", {"name": "Jane Roe"})
        assert failed.value.reason == "upstream_unavailable"
        assert connections >= 1
        assert tokens.requests == [("sanctions.search",)]
    finally:
        await client.aclose()
        listener.close()
        await listener.wait_closed()


def test_agent_settings_come_from_the_environment_and_name_no_tool_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCORD_PORT", "18711")
    monkeypatch.setenv("ACCORD_GRPC_PORT", "18811")
    monkeypatch.setenv("ACCORD_GATEWAY_URL", "http://127.0.0.1:18700/")
    monkeypatch.setenv("ACCORD_FAULT_DELAY_MS", "250")
    monkeypatch.setenv("ACCORD_CLIENT_ID", "bureau-agent")
    monkeypatch.setenv("ACCORD_CLIENT_SECRET", "bureau-agent-secret-0123456789")
    loaded = AgentSettings()  # type: ignore[call-arg]
    assert loaded.fault_delay_ms == 250
    assert loaded.client_id == "bureau-agent"
    assert loaded.client_secret.get_secret_value() == "bureau-agent-secret-0123456789"
    assert "bureau-agent-secret" not in repr(loaded)
    assert loaded.mcp_url == "http://127.0.0.1:18700/mcp"
    assert loaded.registry_url is None
    assert loaded.card_url == "http://127.0.0.1:18711/.well-known/agent-card.json"
    assert not [f for f in AgentSettings.model_fields if "upstream" in f or "tools" in f]

    monkeypatch.delenv("ACCORD_GATEWAY_URL")
    with pytest.raises(ValidationError, match="gateway_url"):
        AgentSettings()  # type: ignore[call-arg]


async def test_registration_retries_with_backoff_and_gives_up_at_its_deadline() -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    registration = Registration(
        "http://127.0.0.1:1/.well-known/agent-card.json",
        partial(register_with_registry, unreachable),
        timeout_s=0.5,
        first_delay_s=0.05,
    )
    async with asyncio.timeout(5):
        assert await registration.run() is False
    assert registration.attempts >= 3
    assert await registration.ready() is False


@pytest.mark.parametrize(
    ("module", "skill_id", "tools"),
    [
        ("sanctions_agent.agent", "sanctions-screening", ("sanctions.search",)),
        ("bureau_agent.agent", "credit-file", ("bureau.get_credit_file",)),
        (
            "ledger_agent.agent",
            "transaction-profile",
            ("ledger.get_account", "ledger.aggregate_by_period", "ledger.aggregate_by_counterparty"),
        ),
    ],
)
def test_each_card_publishes_the_tools_its_skill_declares(
    module: str, skill_id: str, tools: tuple[str, ...]
) -> None:
    agent: Agent = __import__(module, fromlist=["agent"]).agent
    name = agent.name
    card = agent.build_card(settings(client_id=name))
    assert skill_schemas(card)[skill_id].tools == tools
    # The declaration survives the card's JSON form, as the registry and the orchestrator read it.
    assert skill_schemas(card_from_dict(card_to_dict(card)))[skill_id].tools == tools


def test_a_card_without_tool_declarations_declares_no_tools() -> None:
    source = json.loads(card_source_path("sanctions-agent").read_text())
    legacy = SkillSchemas({"type": "object"}, {"type": "object"})
    card = build_card(source, "http://127.0.0.1:1", None, {"sanctions-screening": legacy})
    assert skill_schemas(card)["sanctions-screening"].tools == ()


def test_an_agent_refuses_to_start_under_another_client_identity() -> None:
    with pytest.raises(ValueError, match="ACCORD_CLIENT_ID"):
        sanctions_like_agent().create_app(settings(client_id="bureau-agent"))


def test_agent_settings_require_the_agents_own_client_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORD_PORT", "18711")
    monkeypatch.setenv("ACCORD_GRPC_PORT", "18811")
    monkeypatch.setenv("ACCORD_GATEWAY_URL", "http://127.0.0.1:18700")
    monkeypatch.delenv("ACCORD_CLIENT_ID", raising=False)
    monkeypatch.delenv("ACCORD_CLIENT_SECRET", raising=False)
    with pytest.raises(ValidationError) as missing:
        AgentSettings()  # type: ignore[call-arg]
    assert {error["loc"][0] for error in missing.value.errors()} == {"client_id", "client_secret"}


async def test_a_task_without_a_grant_calls_no_tool_not_even_a_declared_one() -> None:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    listener = await asyncio.start_server(count, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = ToolClient(f"http://127.0.0.1:{port}/mcp", timeout_s=5)
    box = ToolBox(client, ["sanctions.search"], NoGrant())
    try:
        with pytest.raises(AccordError) as refused:
            await box.call("sanctions.search", {"name": "Jane Roe"})
    finally:
        await client.aclose()
        listener.close()
        await listener.wait_closed()
    assert refused.value.reason == "policy_denied"
    assert "grant" in refused.value.detail
    assert connections == 0
    assert client.connections_opened == 0
