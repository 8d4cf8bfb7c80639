"""Skeletons (Unicode TR39 style): lookalike names and skill ids share one, distinct ones do not."""

from __future__ import annotations

import pytest

from registry.confusables import confusable, skeleton

CYRILLIC_A, CYRILLIC_E, CYRILLIC_O = "\u0430", "\u0435", "\u043e"
GREEK_OMICRON, GREEK_NU, GREEK_CAPITAL_IOTA = "\u03bf", "\u03bd", "\u0399"
ZERO_WIDTH_JOINER, SOFT_HYPHEN, EN_DASH = "\u200d", "\u00ad", "\u2013"
FULLWIDTH_L = "\uff4c"


@pytest.mark.parametrize(
    ("lookalike", "original"),
    [
        (f"l{CYRILLIC_E}dger-agent", "ledger-agent"),  # Cyrillic e
        (f"credit-file-{CYRILLIC_A}", "credit-file-a"),  # Cyrillic a
        (f"sanctions-screening-{GREEK_OMICRON}", "sanctions-screening-o"),  # Greek omicron
        (f"ser{GREEK_NU}ice", "service"),  # Greek nu
        (f"{GREEK_CAPITAL_IOTA}edger", "ledger"),  # Greek capital iota looks like l
        ("Iedger-agent", "ledger-agent"),  # Latin capital I looks like l
        ("1edger-agent", "ledger-agent"),  # digit one
        ("Ledger-Agent", "ledger-agent"),  # case
        ("tearn-agent", "team-agent"),  # rn looks like m
        ("vvire-agent", "wire-agent"),  # vv looks like w
        (f"b{CYRILLIC_O}0k", "book"),  # Cyrillic o and digit zero
        (f"ledger{ZERO_WIDTH_JOINER}-agent", "ledger-agent"),  # invisible joiner
        (f"ledger{SOFT_HYPHEN}-agent", "ledger-agent"),  # soft hyphen
        (f"ledger{EN_DASH}agent", "ledger-agent"),  # en dash for hyphen
        (f"{FULLWIDTH_L}edger", "ledger"),  # full-width (NFKC)
    ],
)
def test_lookalikes_share_the_skeleton_of_the_name_they_imitate(lookalike: str, original: str) -> None:
    assert skeleton(lookalike) == skeleton(original)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ledger-agent", "bureau-agent"),
        ("credit-file", "credit-files"),
        ("sanctions-agent-1a2b3c4d", "sanctions-agent-1a2b3c4e"),
        ("ledger_agent", "ledger-agent"),  # underscore and hyphen stay distinct, as in TR39
        ("team-agent", "tea-agent"),
    ],
)
def test_names_that_differ_visibly_keep_distinct_skeletons(a: str, b: str) -> None:
    assert skeleton(a) != skeleton(b)
    assert not confusable(a, b)


def test_a_name_is_not_confusable_with_itself_but_is_with_its_lookalike() -> None:
    assert not confusable("ledger-agent", "ledger-agent")
    assert confusable(f"l{CYRILLIC_E}dger-agent", "ledger-agent")


def test_every_shipped_agent_name_and_skill_id_has_its_own_skeleton() -> None:
    import json
    from pathlib import Path

    from accord.topology import repo_root

    names: list[str] = []
    skills: list[str] = []
    for path in sorted(Path(repo_root(), "agent-cards").glob("*.json")):
        card = json.loads(path.read_text())
        names.append(card.get("name", path.stem))
        skills.extend(skill["id"] for skill in card.get("skills", []))
    assert len({skeleton(n) for n in names}) == len(names)
    assert len({skeleton(s) for s in skills}) == len(set(skills))
