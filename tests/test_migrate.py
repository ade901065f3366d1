"""Migrations and the schema they create, on a real PostgreSQL with pgvector."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from aiops.db.migrate import SCHEMA_DIR, MigrationError, discover, migrate

SEED_NODE_TYPES = ["problem", "solution", "pattern", "insight", "tool"]
SEED_RELATIONSHIPS = [
    "solves",
    "causes",
    "requires",
    "similar_to",
    "evolves_into",
    "implements",
    "validates",
    "conflicts_with",
    "depends_on",
    "triggers",
    "leads_to",
    "mitigates",
    "collaborates",
]


async def _enum(conn: asyncpg.Connection, name: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
        " WHERE t.typname = $1 ORDER BY e.enumsortorder",
        name,
    )
    return [r["enumlabel"] for r in rows]


async def test_migrate_twice_changes_nothing(empty_database_url: str) -> None:
    first = await migrate(empty_database_url, 384)
    assert first.applied == [m.name for m in discover()]
    conn = await asyncpg.connect(empty_database_url)
    try:
        before = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY 1")
        second = await migrate(empty_database_url, 384)
        after = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY 1")
    finally:
        await conn.close()
    assert second.applied == []
    assert second.already_applied == first.applied
    assert before == after


async def test_schema_matches_the_seed(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await _enum(conn, "knowledge_node_type") == SEED_NODE_TYPES
        assert await _enum(conn, "knowledge_relationship") == SEED_RELATIONSHIPS
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
            )
        }
        assert {
            "knowledge_nodes",
            "knowledge_edges",
            "events",
            "audit_log",
            "services",
            "agents",
            "schema_migrations",
        } <= tables
        dim = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid='knowledge_nodes'::regclass AND attname='embedding'"
        )
        assert dim == "vector(384)"
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname='knowledge_nodes_embedding_hnsw'"
        )
        assert "hnsw" in index and "vector_cosine_ops" in index
    finally:
        await conn.close()


async def test_node_and_edge_constraints(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        insert = (
            "INSERT INTO knowledge_nodes (node_type, fingerprint, data, embedding)"
            " VALUES ($1, $2, '{}', $3::vector) RETURNING id"
        )
        vec = "[" + ",".join(["0.1"] * 384) + "]"
        a = await conn.fetchval(insert, "problem", "fp-1", vec)
        b = await conn.fetchval(insert, "solution", "fp-1", vec)  # same fingerprint, other type
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.fetchval(insert, "problem", "fp-1", vec)
        with pytest.raises(asyncpg.DataError):
            await conn.fetchval(insert, "problem", "fp-2", "[0.1,0.2]")  # wrong dimension
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            await conn.fetchval(insert, "runbook", "fp-3", vec)  # not a seed node type

        edge = "INSERT INTO knowledge_edges (from_node, to_node, relationship) VALUES ($1,$2,$3)"
        await conn.execute(edge, b, a, "solves")
        await conn.execute(edge, a, b, "similar_to")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(edge, b, a, "solves")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(edge, b, uuid.uuid4(), "solves")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(edge, a, a, "causes")

        # deleting a node takes its edges with it; no dangling edges
        await conn.execute("DELETE FROM knowledge_nodes WHERE id = $1", a)
        assert await conn.fetchval("SELECT count(*) FROM knowledge_edges") == 0
    finally:
        await conn.close()


async def test_audit_log_is_append_only(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO audit_log (actor, action, target, decision, prev_hash, hash)"
            " VALUES ('healer', 'restart', 'api', 'allowed', '', 'h1')"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE audit_log SET decision = 'denied'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM audit_log")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE audit_log")
        assert await conn.fetchval("SELECT decision FROM audit_log") == "allowed"
    finally:
        await conn.close()


async def test_event_store_is_idempotent_on_id(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        event_id = uuid.uuid4()
        sql = (
            "INSERT INTO events (id, ts, event_type, source, payload) "
            "VALUES ($1, now(), 'ServiceTimeout', 'import', '{}') ON CONFLICT (id) DO NOTHING"
        )
        await conn.execute(sql, event_id)
        await conn.execute(sql, event_id)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
    finally:
        await conn.close()


async def test_dimension_mismatch_is_refused(database_url: str) -> None:
    with pytest.raises(MigrationError) as caught:
        await migrate(database_url, 1536)
    message = str(caught.value)
    assert "vector(384)" in message and "1536" in message
    assert "aiops kg reembed" in message


async def test_failed_migration_rolls_back(empty_database_url: str, tmp_path: Path) -> None:
    for migration in discover():
        (tmp_path / migration.name).write_bytes(migration.path.read_bytes())
    bad = tmp_path / "999_broken.sql"
    bad.write_text("CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(MigrationError, match=r"999_broken\.sql failed"):
        await migrate(empty_database_url, 384, tmp_path)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert 999 not in versions and 1 in versions
    finally:
        await conn.close()
    # an applied migration that was edited afterwards is refused, not silently skipped
    bad.unlink()
    first = tmp_path / discover()[0].name
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match=r"changed after it was applied"):
        await migrate(empty_database_url, 384, tmp_path)


def test_discover_rejects_bad_names(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_snake_name"):
        discover(tmp_path)
    (tmp_path / "1_init.sql").unlink()
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share version 001"):
        discover(tmp_path)
    assert SCHEMA_DIR.is_dir()
