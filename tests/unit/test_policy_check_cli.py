"""`accord policy check [FILE]`: exit 0 with a summary for a valid policy, 1 with every error otherwise."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from accord.cli.main import app


def test_the_default_file_is_the_deployed_policy_and_it_is_valid() -> None:
    result = CliRunner().invoke(app, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert "deploy/policies/tools.yaml: valid" in result.output
    assert "bureau-agent: bureau.get_credit_file" in result.output


def test_an_invalid_file_exits_non_zero_listing_each_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(
        "version: 1\nclients:\n  x:\n    tools:\n      - tool: nope\n      - tool: a.b\n        extra: 1\n"
    )
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:5: clients.x.tools[0].tool" in result.output
    assert f"{path}:7: clients.x.tools[1].extra: Extra inputs are not permitted" in result.output
    assert "invalid (2 problem(s))" in result.output


def test_a_missing_file_exits_non_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["policy", "check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 1
    assert "cannot be read" in result.output


def test_a_clients_resources_and_prompts_are_shown_and_their_upstream_names_checked(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text("version: 1\nclients:\n  reader:\n    resources: [docs]\n    prompts: [docs]\n")
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "reader: (no tools); resources of docs, prompts of docs" in result.output

    path.write_text("version: 1\nclients:\n  reader:\n    resources: [Not An Upstream]\n")
    refused = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert refused.exit_code == 1
    assert f"{path}:4: clients.reader.resources[0]" in refused.output
