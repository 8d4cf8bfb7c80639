"""YAML with line numbers: every value's path in the document maps to the line it starts on.

Hand-edited files (the gateway's policy, the orchestrator's workflows) are read through here, so an error
that says `tools.yaml:14: clients.ledger-agent.tools[0]...` is found in seconds. Duplicate keys, which PyYAML
would silently resolve to the last one, are errors here: a repeated client name or step field must never
quietly replace the first entry.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

Path = tuple[str | int, ...]


class LocatedYamlError(ValueError):
    """The text is not a usable YAML document; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def load_located(text: str) -> tuple[Any, dict[Path, int]]:
    """The document's value and the 1-based line of every mapping key, sequence item and value in it."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
            raise LocatedYamlError(f"not valid YAML: {exc.problem or exc}", line) from None
        except yaml.YAMLError as exc:
            raise LocatedYamlError(f"not valid YAML: {exc}") from None
        if node is None:
            return None, {}
        lines: dict[Path, int] = {}
        _index(loader, node, (), lines)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


def _index(loader: yaml.SafeLoader, node: Node, path: Path, lines: dict[Path, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        seen: set[Hashable] = set()
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise LocatedYamlError("merge keys (<<) are not supported", line)
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                raise LocatedYamlError("mapping keys must be strings", line)
            if key in seen:
                raise LocatedYamlError(f"duplicate key {key!r}", line)
            seen.add(key)
            lines[(*path, key)] = line
            _index(loader, value_node, (*path, key), lines)
    elif isinstance(node, SequenceNode):
        for position, item in enumerate(node.value):
            _index(loader, item, (*path, position), lines)


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of the deepest known prefix of `path` (validation errors may name a missing child)."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
