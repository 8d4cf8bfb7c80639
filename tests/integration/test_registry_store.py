"""The registry's store on SQLite and on real PostgreSQL (one throwaway schema per test)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.testing.scratch_databases import postgres_schema_engine, sqlite_file_engine
from registry.store import (
    AgentDraft,
    AgentRecord,
    AgentStore,
    NameTaken,
    NotRegistered,
    PutOutcome,
    SkillOffer,
    agents_table,
)

POSTGRES_URL = os.environ.get(
    "ACCORD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def require_postgres() -> None:
    """Skip when PostgreSQL is not running here, but never in CI, where it must be."""
    try:
        conn = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable at {POSTGRES_URL} under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}")
    await conn.close()


async def postgres_engine() -> AsyncGenerator[AsyncEngine, None]:
    await require_postgres()
    async for engine in postgres_schema_engine(POSTGRES_URL, "registry_test"):
        yield engine


def sqlite_engine(path: Path) -> AsyncGenerator[AsyncEngine, None]:
    return sqlite_file_engine(path / "registry.db")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AgentStore]:
    engines = postgres_engine() if request.param == "postgres" else sqlite_engine(tmp_path)
    engine = await anext(engines)
    store = AgentStore(engine)
    await store.initialize()
    await store.initialize()  # startup runs it on every boot: it must be repeatable
    yield store
    await engines.aclose()


def draft(name: str, url: str, skills: dict[str, tuple[str, ...]], version: str = "1") -> AgentDraft:
    card = {
        "name": name,
        "version": version,
        "skills": [{"id": sid, "tags": list(t)} for sid, t in skills.items()],
    }
    offers = tuple(SkillOffer(sid, tags) for sid, tags in skills.items())
    return AgentDraft(name=name, card_url=url, card=card, skills=offers)


async def test_a_new_agent_is_created_with_its_skills_tags_and_card(store: AgentStore) -> None:
    record, outcome = await store.put(draft("a", "http://a/card", {"s1": ("t1", "t2"), "s2": ()}), T0)

    assert outcome is PutOutcome.CREATED
    assert record.skills == (SkillOffer("s1", ("t1", "t2")), SkillOffer("s2", ()))
    assert record.tags == ("t1", "t2")
    assert (record.status, record.registered_at, record.updated_at) == ("active", T0, T0)
    assert await store.get("a") == record
    assert await store.get("b") is None


async def test_putting_a_changed_card_from_the_same_url_replaces_skills_and_keeps_registration_time(
    store: AgentStore,
) -> None:
    await store.put(draft("a", "http://a/card", {"old": ("t1",)}), T0)
    later = T0 + timedelta(minutes=5)

    record, outcome = await store.put(draft("a", "http://a/card", {"new": ("t2",)}, version="2"), later)

    assert outcome is PutOutcome.UPDATED
    assert record.card["version"] == "2"
    assert record.skills == (SkillOffer("new", ("t2",)),)
    assert (record.registered_at, record.updated_at) == (T0, later)
    assert await store.discover("old", None) == []
    assert await store.discover(None, "t1") == []


async def test_putting_an_identical_card_changes_nothing(store: AgentStore) -> None:
    first, _ = await store.put(draft("a", "http://a/card", {"s": ("t",)}), T0)

    again, outcome = await store.put(draft("a", "http://a/card", {"s": ("t",)}), T0 + timedelta(hours=1))

    assert outcome is PutOutcome.UNCHANGED
    assert again == first


async def test_a_name_owned_by_another_card_url_is_refused_and_the_row_is_untouched(
    store: AgentStore,
) -> None:
    original, _ = await store.put(draft("a", "http://a/card", {"s": ("t",)}), T0)

    with pytest.raises(NameTaken) as taken:
        await store.put(draft("a", "http://evil/card", {"x": ("t",)}), T0 + timedelta(hours=1))

    assert taken.value.card_url == "http://a/card"
    assert await store.get("a") == original
    assert await store.discover("x", None) == []


async def test_concurrent_first_registrations_of_one_name_let_exactly_one_card_url_win(
    store: AgentStore,
) -> None:
    results = await asyncio.gather(
        *(store.put(draft("race", f"http://r{i}/card", {f"s{i}": ()}), T0) for i in range(4)),
        return_exceptions=True,
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, NameTaken) for r in results if r not in winners)
    stored = await store.get("race")
    assert stored is not None
    assert stored.card_url == winners[0][0].card_url
    assert [s.id for s in stored.skills] == [s.id for s in winners[0][0].skills]


async def test_discovery_matches_skill_tag_or_both_on_one_skill_and_only_active_agents(
    store: AgentStore,
) -> None:
    await store.put(draft("a", "http://a/card", {"screen": ("kyc",), "credit": ("slow",)}), T0)
    await store.put(draft("b", "http://b/card", {"credit": ("kyc",)}), T0)
    await store.put(draft("c", "http://c/card", {"credit": ("kyc",)}), T0)
    async with store._engine.begin() as conn:
        await conn.execute(agents_table.update().where(agents_table.c.name == "c").values(status="disabled"))

    def names(records: list[AgentRecord]) -> list[str]:
        return [r.name for r in records]

    assert names(await store.discover("credit", None)) == ["a", "b"]
    assert names(await store.discover(None, "kyc")) == ["a", "b"]
    assert names(await store.discover("credit", "kyc")) == ["b"]
    assert names(await store.discover(None, None)) == ["a", "b"]
    assert names(await store.all_agents()) == ["a", "b", "c"]


async def test_removing_deletes_the_agent_and_its_skills_once(store: AgentStore) -> None:
    await store.put(draft("a", "http://a/card", {"s": ("t",)}), T0)

    assert await store.remove("a") is True
    assert await store.remove("a") is False
    assert await store.get("a") is None
    assert await store.discover("s", None) == []
    # The name is free again, from any URL.
    _, outcome = await store.put(draft("a", "http://other/card", {"s": ()}), T0)
    assert outcome is PutOutcome.CREATED


async def test_the_store_answers_its_readiness_ping(store: AgentStore) -> None:
    assert await store.ping() is True


async def test_quarantine_keeps_the_card_hides_the_agent_and_a_good_put_restores_it(
    store: AgentStore,
) -> None:
    good, _ = await store.put(draft("a", "http://a/card", {"s": ("t",)}), T0)

    quarantined = await store.quarantine("a", T0 + timedelta(minutes=1))

    assert quarantined is not None
    assert (quarantined.status, quarantined.card, quarantined.skills) == (
        "quarantined",
        good.card,
        good.skills,
    )
    assert await store.discover("s", None) == []
    assert await store.get_by_url("http://a/card") == quarantined
    restored, outcome = await store.put(draft("a", "http://a/card", {"s": ("t",)}), T0, create=False)
    assert (outcome, restored.status) == (PutOutcome.UPDATED, "active")
    assert [r.name for r in await store.discover("s", None)] == ["a"]


async def test_a_refresh_put_never_brings_back_a_removed_agent(store: AgentStore) -> None:
    await store.put(draft("a", "http://a/card", {"s": ()}), T0)
    await store.remove("a")

    with pytest.raises(NotRegistered):
        await store.put(draft("a", "http://a/card", {"s": ()}), T0, create=False)

    assert await store.get("a") is None
    assert await store.quarantine("a", T0) is None
