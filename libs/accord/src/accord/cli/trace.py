"""`accord trace <run-id|trace-id>`: a run as a waterfall in the terminal, from the local span store.

One line per span, nested by parent, its bar placed on a shared time axis; the slowest path (the chain of
spans that decided when the run finished) is marked `*` (and drawn in bold colour on a terminal). Below the
waterfall: latency, tokens and cost per agent and per tool, and the run's totals. `--json` gives the same
for machines.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer

from accord.cli.runs import (
    AsJson,
    DatabaseUrl,
    OrchestratorUrl,
    PortOffset,
    RunSource,
    StateDir,
    locate_stores,
    resolve_traces,
)
from accord.span_store import SpanReader, StoredSpan
from accord.trace_analysis import SpanTree, summarize

LABEL_WIDTH = 46
SERVICE_WIDTH = 16
_BOLD_RED = "\033[1;31m"
_DIM = "\033[2m"
_RESET = "\033[0m"


def span_label(span: StoredSpan) -> str:
    """The span's name, with the path where the name alone says little (`POST`, `POST /{path}`)."""
    path = span.attributes.get("url.path")
    route = span.attributes.get("http.route")
    if isinstance(path, str) and (
        span.name.isalpha() or (isinstance(route, str) and route.endswith("{path}"))
    ):
        method = span.name.split(" ", 1)[0]
        return f"{method} {path}"
    return span.name


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _bar(span: StoredSpan, start_ns: int, total_ns: int, width: int, glyph: str) -> str:
    if total_ns <= 0:
        return glyph.ljust(width)
    left = int((span.start_ns - start_ns) / total_ns * width)
    left = min(max(left, 0), width - 1)
    length = max(1, round((span.end_ns - span.start_ns) / total_ns * width))
    length = min(length, width - left)
    return (" " * left + glyph * length).ljust(width)


def _axis(total_ms: float, width: int) -> str:
    """Tick labels at 0, 1/4, 1/2, 3/4 and the end of the bar area; a label that would touch the one
    before it is left out (the end label is always shown)."""
    inner = width + 2  # the bars sit between two `|`
    labels = [(round((inner - 1) * i / 4), f"{total_ms * i / 4:.0f}ms") for i in range(5)]
    end_at, end_label = labels[-1][0] + 1 - len(labels[-1][1]), labels[-1][1]
    axis = [" "] * inner
    free_from = 0
    for at, label in [*labels[:-1], (end_at, end_label)]:
        if at < free_from or (label is not end_label and at + len(label) >= end_at):
            continue
        axis[at : at + len(label)] = label
        free_from = at + len(label) + 1
    return "".join(axis).rstrip()


def render_waterfall(spans: list[StoredSpan], width: int = 50, color: bool = False) -> str:
    tree = SpanTree(spans)
    if not spans:
        return "(no spans)"
    start, total_ns = tree.start_ns, tree.end_ns - tree.start_ns
    prefix = f"  {'offset':>9} {'duration':>10}  {'service':<{SERVICE_WIDTH}} {'span':<{LABEL_WIDTH}} "
    lines = [prefix + _axis(total_ns / 1e6, width)]
    for row in tree.rows():
        span = row.span
        glyph = "█" if row.critical else "▒"
        bar = _bar(span, start, total_ns, width, glyph)
        marker = "*" if row.critical else " "
        status = " !" if span.status == "error" else ""
        label = _fit("  " * row.depth + span_label(span), LABEL_WIDTH)
        line = (
            f"{marker} {(span.start_ns - start) / 1e6:>7.1f}ms {span.duration_ms:>8.1f}ms  "
            f"{_fit(span.service, SERVICE_WIDTH):<{SERVICE_WIDTH}} {label:<{LABEL_WIDTH}} |{bar}|{status}"
        )
        if color:
            line = f"{_BOLD_RED}{line}{_RESET}" if row.critical else f"{_DIM}{line}{_RESET}"
        lines.append(line)
    return "\n".join(lines)


def render_summary(summary: dict[str, Any]) -> str:
    totals = summary["totals"]
    lines = [
        f"total {totals['duration_ms']:.1f} ms, {totals['spans']} spans in {len(totals['services'])} "
        f"services, {totals['agent_calls']} agent calls, {totals['tool_calls']} tool calls, "
        f"{totals['retries']} retries, {totals['errors']} errors",
        f"tokens in {totals['input_tokens']} / out {totals['output_tokens']}, cost ${totals['cost_usd']:.4f}"
        + (f", queued {totals['queue_wait_ms']:.1f} ms" if totals["queue_wait_ms"] else ""),
    ]
    if "budget" in totals:
        budget = totals["budget"]
        lines.append(f"budget used {budget['used']} of {budget['allowed']} {budget['unit'] or ''}".rstrip())
    for title, accounts in (("agent", summary["agents"]), ("tool", summary["tools"])):
        if not accounts:
            continue
        lines.append("")
        lines.append(
            f"{title:<28}{'calls':>6}{'total ms':>11}{'inside ms':>11}{'around ms':>11}"
            f"{'tokens in/out':>16}{'cost':>10}{'retries':>9}"
        )
        for name, a in sorted(accounts.items(), key=lambda item: -item[1]["total_ms"]):
            tokens = f"{a['input_tokens']}/{a['output_tokens']}"
            cost = f"${a['cost_usd']:.4f}"
            lines.append(
                f"{_fit(name, 27):<28}{a['calls']:>6}{a['total_ms']:>11.1f}{a['work_ms']:>11.1f}"
                f"{a['around_ms']:>11.1f}{tokens:>16}{cost:>10}{a['retries']:>9}"
            )
    return "\n".join(lines)


def trace_document(trace_id: str, run_id: str | None, spans: list[StoredSpan]) -> dict[str, Any]:
    """The machine-readable form: every span with its depth, offset and place on the slowest path."""
    tree = SpanTree(spans)
    start = tree.start_ns
    return {
        "trace_id": trace_id,
        "run_id": run_id,
        "start_ns": start,
        "duration_ms": round(tree.duration_ms, 3),
        "critical_path": [span.span_id for span in tree.critical_path()],
        "spans": [
            {
                **row.span.to_dict(),
                "depth": row.depth,
                "offset_ms": round((row.span.start_ns - start) / 1e6, 3),
                "duration_ms": round(row.span.duration_ms, 3),
                "critical": row.critical,
            }
            for row in tree.rows()
        ],
        "summary": summarize(tree),
    }


def render_trace(trace_id: str, run_id: str | None, spans: list[StoredSpan], color: bool = False) -> str:
    tree = SpanTree(spans)
    title = f"trace {trace_id}" + (f"  run {run_id}" if run_id else "")
    parts = [title, "", render_waterfall(spans, color=color), "", render_summary(summarize(tree))]
    parts.append("\n* slowest path (the spans that decided when the run finished);  ! error")
    return "\n".join(parts)


async def load_trace(
    identifier: str, source: RunSource, reader: SpanReader
) -> tuple[str | None, str | None, list[StoredSpan], list[str]]:
    """(run id, trace id, spans, other trace ids of the run)."""
    run_id, trace_ids = await resolve_traces(identifier, source, reader)
    for position, trace_id in enumerate(trace_ids):
        spans = await reader.trace(trace_id)
        if spans:
            return run_id, trace_id, spans, trace_ids[:position] + trace_ids[position + 1 :]
    return run_id, trace_ids[0] if trace_ids else None, [], trace_ids[1:]


Identifier = typer.Argument(..., help="A run id, or a trace id (32 hex digits).")


def trace(
    identifier: str = Identifier,
    as_json: bool = AsJson,
    state_dir: Path | None = StateDir,
    orchestrator_url: str | None = OrchestratorUrl,
    database_url: str | None = DatabaseUrl,
    port_offset: int = PortOffset,
) -> None:
    """Show a run (or any trace) as a waterfall of its spans across every service."""
    directory, source, reader = locate_stores(state_dir, orchestrator_url, database_url, port_offset)
    run_id, trace_id, spans, others = asyncio.run(load_trace(identifier, source, reader))
    if trace_id is None:
        typer.echo(
            f"no trace found for {identifier!r} (no run record, audit record or span names it)", err=True
        )
        raise typer.Exit(1)
    if not spans:
        typer.echo(f"trace {trace_id} has no stored spans in {directory}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(trace_document(trace_id, run_id, spans), indent=2, default=str))
        return
    typer.echo(render_trace(trace_id, run_id, spans, color=sys.stdout.isatty()))
    if others:
        typer.echo(f"\nthe run has other traces too: {', '.join(others)}")
