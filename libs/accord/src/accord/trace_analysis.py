"""What a trace says about a run: its span tree, its critical path, and the per-agent and per-tool
accounting (latency inside each agent or tool versus around it, tokens, cost, retries, budget)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from accord.span_store import StoredSpan
from accord.telemetry import (
    AGENT_NAME,
    BUDGET_ALLOWED,
    BUDGET_UNIT,
    BUDGET_USED,
    COST_USD,
    INPUT_TOKENS,
    OPERATION,
    OUTPUT_TOKENS,
    QUEUE_WAIT_MS,
    RUN_ID,
    TOOL_NAME,
)


@dataclass(frozen=True)
class Row:
    """A span in display order: depth-first, children by start time."""

    span: StoredSpan
    depth: int
    critical: bool


@dataclass
class SpanTree:
    spans: list[StoredSpan]
    children: dict[str | None, list[StoredSpan]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = {span.span_id for span in self.spans}
        groups: dict[str | None, list[StoredSpan]] = defaultdict(list)
        for span in self.spans:
            # A span whose parent was not stored (another trace's store, or lost) is shown as a root.
            parent = span.parent_span_id if span.parent_span_id in ids else None
            groups[parent].append(span)
        for group in groups.values():
            group.sort(key=lambda s: (s.start_ns, -s.end_ns, s.span_id))
        self.children = dict(groups)

    @property
    def roots(self) -> list[StoredSpan]:
        return self.children.get(None, [])

    @property
    def start_ns(self) -> int:
        return min((s.start_ns for s in self.spans), default=0)

    @property
    def end_ns(self) -> int:
        return max((s.end_ns for s in self.spans), default=0)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def descendants(self, span: StoredSpan) -> list[StoredSpan]:
        found: list[StoredSpan] = []
        stack = list(self.children.get(span.span_id, []))
        while stack:
            child = stack.pop()
            found.append(child)
            stack.extend(self.children.get(child.span_id, []))
        return found

    def effective_end_ns(self, span: StoredSpan) -> int:
        """When the span's work was over: its end, or a later end of a descendant (work it started in
        the background, as a run started by a request that is answered at once)."""
        return max([span.end_ns, *(s.end_ns for s in self.descendants(span))])

    def critical_path(self) -> list[StoredSpan]:
        """The spans that decided when the trace finished (the slowest path): from the root that ends
        last, walking back from its end, the child that ends last, then the child that ends before that
        child started, and so on, each child in turn walked the same way."""
        if not self.roots:
            return []
        ends = {s.span_id: self.effective_end_ns(s) for s in self.spans}
        path: list[StoredSpan] = []

        def walk(span: StoredSpan) -> None:
            path.append(span)
            cursor = ends[span.span_id]
            for child in sorted(self.children.get(span.span_id, []), key=lambda s: -ends[s.span_id]):
                if ends[child.span_id] <= cursor:
                    walk(child)
                    cursor = child.start_ns

        walk(max(self.roots, key=lambda s: (ends[s.span_id], -s.start_ns)))
        return path

    def rows(self) -> list[Row]:
        critical = {span.span_id for span in self.critical_path()}
        rows: list[Row] = []
        stack = [(root, 0) for root in reversed(self.roots)]
        while stack:
            span, depth = stack.pop()
            rows.append(Row(span, depth, span.span_id in critical))
            stack.extend((child, depth + 1) for child in reversed(self.children.get(span.span_id, [])))
        return rows

    def outermost(self, operation: str, key: str, same_name_only: bool) -> list[StoredSpan]:
        """Spans of a GenAI operation not nested in another one (of the same name, if `same_name_only`):
        each call once, as its caller saw it. A tool call is an `execute_tool` span at the agent, the
        gateway and the tool server (under another name there); an agent may invoke other agents."""
        parents = {s.span_id: s.parent_span_id for s in self.spans}
        by_id = {s.span_id: s for s in self.spans}
        found = []
        for span in self.spans:
            if span.attributes.get(OPERATION) != operation:
                continue
            name = span.attributes.get(key)
            ancestor = parents.get(span.span_id)
            nested = False
            while ancestor is not None and ancestor in by_id and not nested:
                other = by_id[ancestor]
                nested = other.attributes.get(OPERATION) == operation and (
                    not same_name_only or other.attributes.get(key) == name
                )
                ancestor = parents.get(ancestor)
            if not nested:
                found.append(span)
        return found


def summarize(tree: SpanTree) -> dict[str, Any]:
    """Per agent and per tool: calls, total latency, the part spent inside the agent or tool server
    (work) and around it (transport, relay, authorization, queueing); tokens, cost, retries, budget."""
    agents = _accounts(tree.outermost("invoke_agent", AGENT_NAME, True), tree, AGENT_NAME, _agent_work)
    tools = _accounts(tree.outermost("execute_tool", TOOL_NAME, False), tree, TOOL_NAME, _tool_work)
    totals = {
        "duration_ms": round(tree.duration_ms, 3),
        "spans": len(tree.spans),
        "services": sorted({s.service for s in tree.spans}),
        "errors": sum(1 for s in tree.spans if s.status == "error"),
        "input_tokens": sum(_int(s.attributes.get(INPUT_TOKENS)) for s in tree.spans),
        "output_tokens": sum(_int(s.attributes.get(OUTPUT_TOKENS)) for s in tree.spans),
        "cost_usd": round(sum(_float(s.attributes.get(COST_USD)) for s in tree.spans), 6),
        "retries": _retries(tree.spans),
        "queue_wait_ms": round(sum(_float(s.attributes.get(QUEUE_WAIT_MS)) for s in tree.spans), 3),
        "agent_calls": sum(a["calls"] for a in agents.values()),
        "tool_calls": sum(t["calls"] for t in tools.values()),
    }
    budget = [s for s in tree.spans if BUDGET_USED in s.attributes]
    if budget:
        last = max(budget, key=lambda s: s.end_ns)
        totals["budget"] = {
            "used": last.attributes[BUDGET_USED],
            "allowed": last.attributes.get(BUDGET_ALLOWED),
            "unit": last.attributes.get(BUDGET_UNIT),
        }
    run_ids = sorted({str(s.attributes[RUN_ID]) for s in tree.spans if RUN_ID in s.attributes})
    return {"run_ids": run_ids, "totals": totals, "agents": agents, "tools": tools}


def _accounts(calls: list[StoredSpan], tree: SpanTree, key: str, work: Any) -> dict[str, dict[str, Any]]:
    accounts: dict[str, dict[str, Any]] = {}
    for span in calls:
        name = str(span.attributes.get(key, "?"))
        account = accounts.setdefault(
            name,
            {
                "calls": 0,
                "total_ms": 0.0,
                "work_ms": 0.0,
                "around_ms": 0.0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": 0.0,
                "errors": 0,
                "retries": 0,
            },
        )
        inside = [span, *tree.descendants(span)]
        work_ms = work(tree, span, name)
        account["calls"] += 1
        account["total_ms"] += span.duration_ms
        account["work_ms"] += work_ms
        account["around_ms"] += max(0.0, span.duration_ms - work_ms)
        account["input_tokens"] += sum(_int(s.attributes.get(INPUT_TOKENS)) for s in inside)
        account["output_tokens"] += sum(_int(s.attributes.get(OUTPUT_TOKENS)) for s in inside)
        account["cost_usd"] += sum(_float(s.attributes.get(COST_USD)) for s in inside)
        account["errors"] += 1 if span.status == "error" else 0
        account["retries"] += _retries(inside)
    for account in accounts.values():
        for key_ in ("total_ms", "work_ms", "around_ms"):
            account[key_] = round(account[key_], 3)
        account["cost_usd"] = round(account["cost_usd"], 6)
    return accounts


def _agent_work(tree: SpanTree, span: StoredSpan, agent: str) -> float:
    """Time inside the agent: its longest span (its server span for the A2A request), else all of it."""
    inside = [s.duration_ms for s in tree.descendants(span) if s.service == agent]
    return max(inside, default=span.duration_ms if span.service == agent else 0.0)


def _tool_work(tree: SpanTree, span: StoredSpan, tool: str) -> float:
    """Time inside the tool server: the innermost `execute_tool` server span below the call."""
    servers = [
        s
        for s in tree.descendants(span)
        if s.kind == "server" and s.attributes.get(OPERATION) == "execute_tool"
    ]
    if not servers:
        return span.duration_ms if span.kind == "server" else 0.0
    depth = {s.span_id: len(_ancestors(tree, s)) for s in servers}
    return max(servers, key=lambda s: depth[s.span_id]).duration_ms


def _ancestors(tree: SpanTree, span: StoredSpan) -> list[str]:
    parents = {s.span_id: s.parent_span_id for s in tree.spans}
    found: list[str] = []
    current = parents.get(span.span_id)
    while current is not None and current in parents:
        found.append(current)
        current = parents.get(current)
    return found


def _retries(spans: list[StoredSpan]) -> int:
    """Retries as `telemetry.record_retry` records them: one `retry` event each."""
    return sum(1 for span in spans for event in span.events if event.get("name") == "retry")


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
