"""Task grants keep their skill and bindings, also in a database created before those columns existed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from accord.audit import AuditLog
from accord.errors import AccordError
from accord.keys import KeyRing
from accord.storage import create_engine
from gateway.oauth import ClientRegistry, GrantAuthority, MemoryRevocationList, new_client

OLD_GRANTS_TABLE = """CREATE TABLE oauth_grants (
    grant_id VARCHAR(64) PRIMARY KEY, agent VARCHAR(128) NOT NULL, subject VARCHAR(256) NOT NULL,
    delegated_by VARCHAR(128) NOT NULL, scopes JSON NOT NULL, wf VARCHAR(128) NOT NULL,
    task VARCHAR(128) NOT NULL, audience VARCHAR(512) NOT NULL, issued_at FLOAT NOT NULL,
    expires_at FLOAT NOT NULL, revoked BOOLEAN NOT NULL)"""


async def test_bindings_survive_a_database_from_before_they_existed(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text(OLD_GRANTS_TABLE))
        audit = AuditLog(engine, "gateway")
        await audit.initialize()
        clients = ClientRegistry(engine)
        await clients.initialize()
        await clients.register(new_client("orchestrator", "orchestrator", secret="o" * 20))
        await clients.register(
            new_client("ledger-agent", "agent", secret="l" * 20, grant_scopes=["tool:l.get"])
        )
        grants = GrantAuthority(
            KeyRing.generate(), "http://gw", engine, clients, MemoryRevocationList(), audit
        )
        await grants.initialize()
        issued = await grants.issue_grant(
            agent="ledger-agent",
            scopes=["tool:l.get"],
            wf="run-1",
            task="ledger",
            deadline=time.time() + 60,
            audience="http://gw/mcp",
            delegated_by="orchestrator",
            skill="transaction-profile",
            bindings={"account_id": "ACC-1"},
        )
        stored = await grants.verify_grant(issued.token)
        assert (stored.skill, stored.bindings) == ("transaction-profile", {"account_id": "ACC-1"})
        with pytest.raises(AccordError) as refused:
            await grants.issue_grant(
                agent="ledger-agent",
                scopes=["tool:l.get"],
                wf="run-1",
                task="ledger",
                deadline=time.time() + 60,
                audience="http://gw/mcp",
                delegated_by="orchestrator",
                bindings={"account_id": {"nested": "no"}},
            )
        assert refused.value.reason == "invalid_input"
    finally:
        await engine.dispose()
