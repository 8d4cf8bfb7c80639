"""The compliance-tools MCP server: `get_rules`, `get_facts` and `list_topics`."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from accord.tools_server import ToolsSettings
from compliance_tools.facts import Fact, FactBase
from compliance_tools.rulebook import Rule, RuleBook

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]


class RuleSetView(BaseModel):
    """A rule set's rules; `found=False` (no rules) for an unknown rule set."""

    rule_set: str
    found: bool
    title: str | None = None
    rules: list[Rule] = Field(default_factory=list)


class TopicFacts(BaseModel):
    """A topic's outline and sourced facts; `found=False` (no facts) for an unknown topic."""

    topic: str
    found: bool
    title: str | None = None
    rule_set: str | None = Field(default=None, description="The rule set memos on this topic answer to")
    outline: list[str] = Field(default_factory=list, description="Section headings, in memo order")
    facts: list[Fact] = Field(default_factory=list)


class TopicList(BaseModel):
    topics: list[str]
    rule_sets: list[str]


def build_mcp(settings: ToolsSettings) -> MCPServer:
    """The MCP server over `<data_dir>/compliance/{rules,facts}.json` (loaded once, at build time)."""
    folder = settings.data_dir / "compliance"
    rule_book = RuleBook.load(folder / "rules.json")
    fact_base = FactBase.load(folder / "facts.json")
    mcp = MCPServer(
        "compliance-tools",
        version="0.1.0",
        instructions="Read memo rule books and the sourced facts behind each memo topic.",
    )

    @mcp.tool(
        description=(
            "The rules of a memo rule set: governed section, required elements, forbidden phrases, whether a "
            "source is required, trigger phrases, and severity (critical, major, minor)."
        )
    )
    def get_rules(rule_set: Name) -> RuleSetView:
        found = rule_book.rule_set(rule_set)
        if found is None:
            return RuleSetView(rule_set=rule_set, found=False)
        return RuleSetView(found=True, **found.model_dump())

    @mcp.tool(
        description="A memo topic's outline and its facts, each a sourced sentence assigned to a section."
    )
    def get_facts(topic: Name) -> TopicFacts:
        found = fact_base.topic(topic)
        if found is None:
            return TopicFacts(topic=topic, found=False)
        return TopicFacts(found=True, **found.model_dump())

    @mcp.tool(description="The memo topics and rule sets on file.")
    def list_topics() -> TopicList:
        return TopicList(topics=fact_base.names(), rule_sets=rule_book.names())

    return mcp
