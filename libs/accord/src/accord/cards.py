"""Agent Cards: built from `agent-cards/<name>.json` plus deployment URLs and the skills' JSON Schemas.

Skill schemas travel in an A2A extension declared in `capabilities.extensions`, because A2A 1.0's
`AgentSkill` has no schema fields. The extension's params map skill id to `{input_schema, output_schema,
tools}`, where `tools` names the gateway tools (`<upstream>.<tool>`) the skill uses: the gateway relay
issues a task grant of exactly those tools' scopes when it relays a message for the skill.

Every card also declares, as required, the signed-message extension (`accord.message_signing`): the agent
accepts only messages its gateway's relay signed for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a2a.client.card_resolver import parse_agent_card
from a2a.types import AgentCard, AgentExtension, AgentInterface
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from google.protobuf import json_format

from accord.message_signing import SIGNATURE_TYP, SIGNED_MESSAGE_EXTENSION
from accord.payloads import from_struct, to_struct
from accord.topology import repo_root

SKILL_SCHEMAS_EXTENSION = "urn:accord:a2a:skill-schemas:v1"
JSONRPC_PATH = "/a2a/jsonrpc"
REST_PATH = "/a2a/rest"
WELL_KNOWN_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json")


@dataclass(frozen=True)
class SkillSchemas:
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    tools: tuple[str, ...] = ()


def card_source_path(name: str) -> Path:
    return repo_root() / "agent-cards" / f"{name}.json"


def load_card_source(name: str) -> dict[str, Any]:
    source: dict[str, Any] = json.loads(card_source_path(name).read_text())
    if source.get("name") != name:
        raise ValueError(f"agent-cards/{name}.json names itself {source.get('name')!r}")
    return source


def build_card(
    source: dict[str, Any],
    base_url: str,
    grpc_address: str | None,
    schemas: dict[str, SkillSchemas],
) -> AgentCard:
    """The card a service serves: its source, its interfaces, and its skills' contracts."""
    card = AgentCard()
    json_format.ParseDict(source, card, ignore_unknown_fields=False)
    skill_ids = {skill.id for skill in card.skills}
    if skill_ids != set(schemas):
        raise ValueError(f"card skills {sorted(skill_ids)} differ from implemented {sorted(schemas)}")
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(interfaces(base_url, grpc_address))
    extension = AgentExtension(
        uri=SKILL_SCHEMAS_EXTENSION,
        description="JSON Schemas of each skill's input and output (data parts)",
        required=False,
        params=to_struct(
            {
                "skills": {
                    skill_id: {
                        "input_schema": s.input_schema,
                        "output_schema": s.output_schema,
                        "tools": list(s.tools),
                    }
                    for skill_id, s in schemas.items()
                }
            }
        ),
    )
    card.capabilities.extensions.append(extension)
    card.capabilities.extensions.append(signed_message_extension())
    return card


def signed_message_extension() -> AgentExtension:
    """The declaration that messages to this agent must carry a gateway signature (JWS in their metadata)."""
    return AgentExtension(
        uri=SIGNED_MESSAGE_EXTENSION,
        description=(
            "Messages must be signed by the gateway relay: a JWS (typ accord-msg+jwt) over the RFC 8785 "
            "canonical message, in metadata under this extension's URI, addressed to this agent"
        ),
        required=True,
        params=to_struct(
            {
                "metadata_key": SIGNED_MESSAGE_EXTENSION,
                "typ": SIGNATURE_TYP,
                "claims": ["iss", "sub", "aud", "wf", "task", "trace", "iat", "exp", "jti", "digest"],
            }
        ),
    )


def without_extension(card: AgentCard, uri: str) -> None:
    """Remove an extension declaration from a card (in place), e.g. one a service does not enforce."""
    kept = [extension for extension in card.capabilities.extensions if extension.uri != uri]
    del card.capabilities.extensions[:]
    card.capabilities.extensions.extend(kept)


def interfaces(base_url: str, grpc_address: str | None) -> list[AgentInterface]:
    result = [
        AgentInterface(
            url=base_url + JSONRPC_PATH,
            protocol_binding=TransportProtocol.JSONRPC,
            protocol_version=PROTOCOL_VERSION_1_0,
        ),
        AgentInterface(
            url=base_url + REST_PATH,
            protocol_binding=TransportProtocol.HTTP_JSON,
            protocol_version=PROTOCOL_VERSION_1_0,
        ),
    ]
    if grpc_address:
        result.append(
            AgentInterface(
                url=grpc_address,
                protocol_binding=TransportProtocol.GRPC,
                protocol_version=PROTOCOL_VERSION_1_0,
            )
        )
    return result


def skill_schemas(card: AgentCard) -> dict[str, SkillSchemas]:
    """The skill contracts a card declares (empty when it declares none)."""
    for extension in card.capabilities.extensions:
        if extension.uri == SKILL_SCHEMAS_EXTENSION:
            skills = from_struct(extension.params).get("skills", {})
            return {
                skill_id: SkillSchemas(
                    entry["input_schema"], entry["output_schema"], _tool_names(entry.get("tools"))
                )
                for skill_id, entry in skills.items()
            }
    return {}


def _tool_names(value: object) -> tuple[str, ...]:
    """Declared tools; anything but a list of strings declares none (so no grant will be asked for)."""
    if not isinstance(value, list) or not all(isinstance(tool, str) for tool in value):
        return ()
    return tuple(dict.fromkeys(value))


def card_to_dict(card: AgentCard) -> dict[str, Any]:
    return json_format.MessageToDict(card)  # type: ignore[no-any-return]


def card_from_dict(data: dict[str, Any]) -> AgentCard:
    return parse_agent_card(data)
