"""Federated names: `<upstream>.<name>` always, and one upstream optionally also under its own names (a
way of addressing only: what is authorized and audited is the full name). Resource URIs belong to the
upstream that lists them or whose template matches them."""

from __future__ import annotations

import time

import pytest

from gateway.federated_names import FederatedNames
from gateway.policy import prompts_scope, resources_scope
from gateway.resource_catalog import template_matches


def test_full_names_stay_and_short_names_go_to_the_unprefixed_upstream() -> None:
    names = FederatedNames(["bureau", "conformance"], unprefixed="conformance")
    assert names.qualified("bureau.get_credit_file") == "bureau.get_credit_file"
    assert names.qualified("conformance.test_simple_text") == "conformance.test_simple_text"
    assert names.qualified("test_simple_text") == "conformance.test_simple_text"
    # A dotted name that names no upstream is the unprefixed upstream's own.
    assert names.qualified("json.schema.tool") == "conformance.json.schema.tool"
    assert names.shown("conformance.test_simple_text") == "test_simple_text"
    assert names.shown("bureau.get_credit_file") == "bureau.get_credit_file"
    # Shown short only when the short name comes back to it.
    assert names.shown("conformance.bureau.get_credit_file") == "conformance.bureau.get_credit_file"


def test_without_an_unprefixed_upstream_every_name_is_taken_as_it_is() -> None:
    names = FederatedNames(["bureau"])
    assert names.qualified("get_credit_file") == "get_credit_file"  # resolves to nothing: unknown
    assert names.shown("bureau.get_credit_file") == "bureau.get_credit_file"


def test_the_unprefixed_upstream_must_be_configured() -> None:
    with pytest.raises(ValueError, match="not a configured upstream"):
        FederatedNames(["bureau"], unprefixed="elsewhere")


@pytest.mark.parametrize(
    ("template", "uri", "matches"),
    [
        ("test://template/{id}/data", "test://template/123/data", True),
        ("test://template/{id}/data", "test://template/1/2/data", False),
        ("test://template/{id}/data", "test://template/123/data/extra", False),
        ("file:///{+path}", "file:///a/b/c.txt", True),
        ("search://q{?query,limit}", "search://q?query=x&limit=2", True),
        ("search://q{?query,limit}", "search://q", True),
        ("a.b://{x}", "aXb://1", False),  # literal parts are not patterns
    ],
)
def test_a_uri_belongs_to_a_template_that_expands_to_it(template: str, uri: str, matches: bool) -> None:
    assert template_matches(template, uri) is matches


def test_scopes_name_the_upstream() -> None:
    assert (resources_scope("conformance"), prompts_scope("conformance")) == (
        "resources:conformance",
        "prompts:conformance",
    )


def test_matching_a_uri_against_a_template_takes_time_linear_in_the_uri() -> None:
    """Templates come from upstreams and URIs from callers: no pair may cost more than one pass (a regular
    expression with one group per variable backtracks for seconds on such input)."""
    started = time.perf_counter()
    hostile = {
        "db://{schema}.{table}.{col}": "db://" + "a." * 1000 + "/",
        "x://{a}{b}{c}/z": "x://" + "a" * 2000,
        "f://{+a}/{+b}/{+c}/end": "f://" + "a/" * 1000 + "x",
    }
    for template, uri in hostile.items():
        assert template_matches(template, uri) is False
    assert time.perf_counter() - started < 0.5
    assert template_matches("db://{schema}.{table}.{col}", "db://s.t.c") is True
    too_many = "x://" + "/".join(f"{{v{i}}}" for i in range(17))
    assert template_matches(too_many, "x://" + "/".join("a" * 17)) is False
