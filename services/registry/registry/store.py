"""The agent catalog's tables: SQLite by default, PostgreSQL when `ACCORD_DATABASE_URL` says so.

Skills and their tags live in their own tables so discovery is an indexed SQL query on every backend.
The conflict rules are checked inside the writing transaction, and backed by unique keys, so two concurrent
registrations cannot both win:

- one name, one card URL (`NameTaken`);
- one name skeleton (`registry.confusables`) in the whole catalog: a name that looks like another agent's
  is `Confusable` when both belong to one owner and `Shadowing` when they do not;
- each skill id skeleton is claimed by one owner (`registry_skill_claims`): that owner's agents may all offer
  the skill, another owner's agent offering it, or a lookalike of it, is `Shadowing`; one owner's lookalike
  skill ids are `Confusable`.

Each agent's AI inventory entry (`registry.inventory`) lives beside it in `registry_inventory`.
"""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    exists,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry.confusables import skeleton
from registry.inventory import Inventory

ACTIVE = "active"
# The card at the registered URL failed verification or drifted: the last good card stays stored, but the
# agent is not discovered until a good card (the same one, or a newer signed version) is back.
QUARANTINED = "quarantined"

_metadata = MetaData()
agents_table = Table(
    "registry_agents",
    _metadata,
    Column("name", String(128), primary_key=True),
    Column("card_url", Text, nullable=False),
    Column("card_json", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("registered_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)
skills_table = Table(
    "registry_skills",
    _metadata,
    Column("agent_name", String(128), primary_key=True),
    Column("skill_id", String(256), primary_key=True, index=True),
    Column("position", Integer, nullable=False),
)
skill_tags_table = Table(
    "registry_skill_tags",
    _metadata,
    Column("agent_name", String(128), primary_key=True),
    Column("skill_id", String(256), primary_key=True),
    Column("tag", String(256), primary_key=True, index=True),
    Column("position", Integer, nullable=False),
)
inventory_table = Table(
    "registry_inventory",
    _metadata,
    Column("agent_name", String(128), primary_key=True),
    Column("owner", String(128), nullable=False, index=True),
    # Unique: no two agents, whoever owns them, may have names that look alike.
    Column("name_skeleton", String(512), nullable=False, unique=True),
    Column("inventory_json", Text, nullable=False),
)
skill_claims_table = Table(
    "registry_skill_claims",
    _metadata,
    Column("skeleton", String(1024), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("skill_id", String(256), nullable=False),
)


@dataclass(frozen=True)
class SkillOffer:
    """One skill of a card, with its tags, as discovery sees it."""

    id: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentDraft:
    """What a registration wants stored."""

    name: str
    card_url: str
    card: dict[str, Any]
    skills: tuple[SkillOffer, ...]
    signer: str | None = None  # kid of the key that verified the card
    # What to record in the inventory; None keeps what is stored (an unowned agent when nothing is).
    inventory: Inventory | None = None


@dataclass(frozen=True)
class AgentRecord:
    """One stored agent."""

    name: str
    card_url: str
    card: dict[str, Any]
    status: str
    skills: tuple[SkillOffer, ...]
    registered_at: datetime
    updated_at: datetime
    inventory: Inventory | None = None

    @property
    def owner(self) -> str:
        return self.inventory.owner if self.inventory else ""

    @property
    def skill_ids(self) -> tuple[str, ...]:
        return tuple(skill.id for skill in self.skills)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(tag for skill in self.skills for tag in skill.tags))


class PutOutcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class NameTaken(Exception):
    """The name is registered from another card URL."""

    def __init__(self, name: str, card_url: str) -> None:
        super().__init__(name)
        self.name = name
        self.card_url = card_url


class NotRegistered(Exception):
    """A refresh found its agent removed meanwhile; it must not bring it back."""


class Lookalike(Exception):
    """A name or skill id collides with an existing one by skeleton; `subject` says which of the two."""

    def __init__(self, subject: str, wanted: str, existing: str, owner: str) -> None:
        super().__init__(wanted)
        self.subject = subject  # "name" or "skill"
        self.wanted = wanted
        self.existing = existing
        self.owner = owner  # the existing one's owner


class Confusable(Lookalike):
    """Looks like another name or skill id of the same owner."""


class Shadowing(Lookalike):
    """Is, or looks like, another owner's agent name or skill id."""


class AgentStore:
    """Agents, their skills and tags."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def initialize(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)
        await self._backfill_inventory()

    async def _backfill_inventory(self) -> None:
        """Agents stored before the inventory existed get an unowned entry, so their names and skills are
        held against lookalikes too."""
        async with self._engine.connect() as conn:
            missing = (
                await conn.execute(
                    select(agents_table.c.name).where(
                        ~exists().where(inventory_table.c.agent_name == agents_table.c.name)
                    )
                )
            ).all()
        for row in missing:
            try:
                async with self._engine.begin() as conn:
                    await _write_inventory(conn, row.name, Inventory(owner="", policy=row.name))
            except IntegrityError:
                continue  # a lookalike already holds the skeleton; the agent stays as it was

    async def ping(self) -> bool:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def put(
        self, draft: AgentDraft, now: datetime, create: bool = True
    ) -> tuple[AgentRecord, PutOutcome]:
        """Create or refresh `draft.name`; raises `NameTaken` when another card URL owns the name, and
        `NotRegistered` when `create` is False and the name is not (or no longer) registered."""
        try:
            return await self._put_once(draft, now, create)
        except IntegrityError:
            # A concurrent registration created the name first: decide again against what it stored.
            return await self._put_once(draft, now, create)

    async def _put_once(
        self, draft: AgentDraft, now: datetime, create: bool
    ) -> tuple[AgentRecord, PutOutcome]:
        card_json = canonical_json(draft.card)
        now_ms = _to_ms(now)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(agents_table).where(agents_table.c.name == draft.name).with_for_update()
                )
            ).first()
            if row is None and not create:
                raise NotRegistered(draft.name)
            stored = await _inventory_of(conn, draft.name) if row is not None else None
            inventory = draft.inventory or stored or Inventory(owner="", policy=draft.name)
            if row is not None and row.card_url != draft.card_url:
                if stored is not None and stored.owner != inventory.owner:
                    raise Shadowing("name", draft.name, draft.name, stored.owner)
                raise NameTaken(draft.name, row.card_url)
            await _check_name(conn, draft.name, inventory.owner)
            if stored is not None and stored.owner != inventory.owner:
                # Changing hands: the old owner's claims on this agent's skills go with it.
                await _delete_skills(conn, draft.name)
                await _release_claims(conn, {stored.owner})
            await _claim_skills(conn, draft.skills, inventory.owner)
            if row is None:
                await conn.execute(
                    agents_table.insert().values(
                        name=draft.name,
                        card_url=draft.card_url,
                        card_json=card_json,
                        status=ACTIVE,
                        registered_at_ms=now_ms,
                        updated_at_ms=now_ms,
                    )
                )
                await _write_skills(conn, draft.name, draft.skills)
                outcome = PutOutcome.CREATED
            elif row.card_json == card_json and row.status == ACTIVE and inventory == stored:
                outcome = PutOutcome.UNCHANGED
            else:
                await conn.execute(
                    agents_table.update()
                    .where(agents_table.c.name == draft.name)
                    .values(card_json=card_json, status=ACTIVE, updated_at_ms=now_ms)
                )
                await _delete_skills(conn, draft.name)
                await _write_skills(conn, draft.name, draft.skills)
                outcome = PutOutcome.UPDATED
            if inventory != stored:
                await _write_inventory(conn, draft.name, inventory)
            await _release_claims(conn, {inventory.owner, stored.owner if stored else inventory.owner})
            records = await _load(conn, [agents_table.c.name == draft.name])
        return records[0], outcome

    async def get(self, name: str) -> AgentRecord | None:
        async with self._engine.connect() as conn:
            records = await _load(conn, [agents_table.c.name == name])
        return records[0] if records else None

    async def get_by_url(self, card_url: str) -> AgentRecord | None:
        async with self._engine.connect() as conn:
            records = await _load(conn, [agents_table.c.card_url == card_url])
        return records[0] if records else None

    async def quarantine(self, name: str, now: datetime) -> AgentRecord | None:
        """Take the agent out of discovery, keeping its last good card; None when it is gone."""
        async with self._engine.begin() as conn:
            await conn.execute(
                agents_table.update()
                .where((agents_table.c.name == name) & (agents_table.c.status != QUARANTINED))
                .values(status=QUARANTINED, updated_at_ms=_to_ms(now))
            )
            records = await _load(conn, [agents_table.c.name == name])
        return records[0] if records else None

    async def all_agents(self) -> list[AgentRecord]:
        async with self._engine.connect() as conn:
            return await _load(conn, [])

    async def discover(self, skill: str | None, tag: str | None) -> list[AgentRecord]:
        """Active agents with a skill of id `skill` and/or tagged `tag` (both: one skill matches both)."""
        conditions: list[Any] = [agents_table.c.status == ACTIVE]
        owner = agents_table.c.name
        if tag is not None:
            match = skill_tags_table.c.agent_name == owner
            match &= skill_tags_table.c.tag == tag
            if skill is not None:
                match &= skill_tags_table.c.skill_id == skill
            conditions.append(exists().where(match))
        elif skill is not None:
            conditions.append(
                exists().where((skills_table.c.agent_name == owner) & (skills_table.c.skill_id == skill))
            )
        async with self._engine.connect() as conn:
            return await _load(conn, conditions)

    async def remove(self, name: str) -> bool:
        async with self._engine.begin() as conn:
            stored = await _inventory_of(conn, name)
            await _delete_skills(conn, name)
            await conn.execute(delete(inventory_table).where(inventory_table.c.agent_name == name))
            result = await conn.execute(delete(agents_table).where(agents_table.c.name == name))
            if stored is not None:
                await _release_claims(conn, {stored.owner})
        return bool(result.rowcount)


def canonical_json(value: dict[str, Any]) -> str:
    """One spelling per card, so an unchanged card compares equal to what is stored."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def _inventory_of(conn: AsyncConnection, name: str) -> Inventory | None:
    row = (await conn.execute(select(inventory_table).where(inventory_table.c.agent_name == name))).first()
    return Inventory.from_json(json.loads(row.inventory_json)) if row is not None else None


async def _write_inventory(conn: AsyncConnection, name: str, inventory: Inventory) -> None:
    await conn.execute(delete(inventory_table).where(inventory_table.c.agent_name == name))
    await conn.execute(
        inventory_table.insert().values(
            agent_name=name,
            owner=inventory.owner,
            name_skeleton=skeleton(name),
            inventory_json=canonical_json(inventory.to_json()),
        )
    )


async def _check_name(conn: AsyncConnection, name: str, owner: str) -> None:
    """No other agent's name may share this name's skeleton (the unique key backs this up)."""
    row = (
        await conn.execute(
            select(inventory_table.c.agent_name, inventory_table.c.owner).where(
                (inventory_table.c.name_skeleton == skeleton(name)) & (inventory_table.c.agent_name != name)
            )
        )
    ).first()
    if row is None:
        return
    if row.owner == owner:
        raise Confusable("name", name, row.agent_name, row.owner)
    raise Shadowing("name", name, row.agent_name, row.owner)


async def _claim_skills(conn: AsyncConnection, skills: Sequence[SkillOffer], owner: str) -> None:
    """Each skill id's skeleton belongs to one owner, under one spelling; claim the new ones."""
    wanted: dict[str, str] = {}
    for skill in skills:
        key = skeleton(skill.id)
        if key in wanted and wanted[key] != skill.id:
            raise Confusable("skill", skill.id, wanted[key], owner)
        wanted[key] = skill.id
    if not wanted:
        return
    claims = (
        await conn.execute(select(skill_claims_table).where(skill_claims_table.c.skeleton.in_(list(wanted))))
    ).all()
    for claim in claims:
        skill_id = wanted.pop(claim.skeleton)
        if claim.owner != owner:
            raise Shadowing("skill", skill_id, claim.skill_id, claim.owner)
        if claim.skill_id != skill_id:
            raise Confusable("skill", skill_id, claim.skill_id, claim.owner)
    if wanted:
        rows = [{"skeleton": key, "owner": owner, "skill_id": sid} for key, sid in wanted.items()]
        await conn.execute(skill_claims_table.insert(), rows)


async def _release_claims(conn: AsyncConnection, owners: set[str]) -> None:
    """Drop these owners' claims that none of their agents' skills hold any more."""
    for owner in owners:
        offered = (
            await conn.execute(
                select(skills_table.c.skill_id)
                .join(inventory_table, inventory_table.c.agent_name == skills_table.c.agent_name)
                .where(inventory_table.c.owner == owner)
            )
        ).all()
        held = {skeleton(row.skill_id) for row in offered}
        claims = (
            await conn.execute(
                select(skill_claims_table.c.skeleton).where(skill_claims_table.c.owner == owner)
            )
        ).all()
        stale = [row.skeleton for row in claims if row.skeleton not in held]
        if stale:
            await conn.execute(delete(skill_claims_table).where(skill_claims_table.c.skeleton.in_(stale)))


async def _write_skills(conn: AsyncConnection, name: str, skills: Sequence[SkillOffer]) -> None:
    skill_rows = [{"agent_name": name, "skill_id": skill.id, "position": i} for i, skill in enumerate(skills)]
    tag_rows = [
        {"agent_name": name, "skill_id": skill.id, "tag": tag, "position": j}
        for skill in skills
        for j, tag in enumerate(dict.fromkeys(skill.tags))
    ]
    if skill_rows:
        await conn.execute(skills_table.insert(), skill_rows)
    if tag_rows:
        await conn.execute(skill_tags_table.insert(), tag_rows)


async def _delete_skills(conn: AsyncConnection, name: str) -> None:
    await conn.execute(delete(skill_tags_table).where(skill_tags_table.c.agent_name == name))
    await conn.execute(delete(skills_table).where(skills_table.c.agent_name == name))


async def _load(conn: AsyncConnection, conditions: Iterable[Any]) -> list[AgentRecord]:
    rows = (await conn.execute(select(agents_table).where(*conditions).order_by(agents_table.c.name))).all()
    if not rows:
        return []
    names = [row.name for row in rows]
    skills = (
        await conn.execute(
            select(skills_table.c.agent_name, skills_table.c.skill_id)
            .where(skills_table.c.agent_name.in_(names))
            .order_by(skills_table.c.agent_name, skills_table.c.position)
        )
    ).all()
    tags = (
        await conn.execute(
            select(skill_tags_table.c.agent_name, skill_tags_table.c.skill_id, skill_tags_table.c.tag)
            .where(skill_tags_table.c.agent_name.in_(names))
            .order_by(skill_tags_table.c.agent_name, skill_tags_table.c.skill_id, skill_tags_table.c.position)
        )
    ).all()
    inventories = (
        await conn.execute(
            select(inventory_table.c.agent_name, inventory_table.c.inventory_json).where(
                inventory_table.c.agent_name.in_(names)
            )
        )
    ).all()
    inventory_of = {
        row.agent_name: Inventory.from_json(json.loads(row.inventory_json)) for row in inventories
    }
    tags_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tag_row in tags:
        tags_of[(tag_row.agent_name, tag_row.skill_id)].append(tag_row.tag)
    skills_of: dict[str, list[SkillOffer]] = defaultdict(list)
    for skill_row in skills:
        key = (skill_row.agent_name, skill_row.skill_id)
        skills_of[skill_row.agent_name].append(SkillOffer(skill_row.skill_id, tuple(tags_of[key])))
    return [
        AgentRecord(
            name=row.name,
            card_url=row.card_url,
            card=json.loads(row.card_json),
            status=row.status,
            skills=tuple(skills_of[row.name]),
            registered_at=_from_ms(row.registered_at_ms),
            updated_at=_from_ms(row.updated_at_ms),
            inventory=inventory_of.get(row.name),
        )
        for row in rows
    ]


def _to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)
