"""`aiops migrate`: apply schema/NNN_*.sql in order, each once, each in a transaction."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import asyncpg
from pydantic import BaseModel

from aiops.errors import AiopsError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
_FILE = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")
DIM_PLACEHOLDER = "{{embedding_dim}}"
# pg_advisory_lock key: two `aiops migrate` at once apply each file once, in order.
_LOCK_KEY = 0x0A1095


class MigrationError(AiopsError):
    """A migration cannot be applied; the message says what to do."""


class Migration(BaseModel):
    version: int
    name: str
    path: Path
    checksum: str


class MigrationReport(BaseModel):
    applied: list[str]
    already_applied: list[str]
    embedding_dim: int


def discover(schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    if not schema_dir.is_dir():
        raise MigrationError(f"schema directory {schema_dir} does not exist")
    migrations: dict[int, Migration] = {}
    for path in sorted(schema_dir.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_snake_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(
                f"{path.name} and {migrations[version].path.name} share version {version:03d}"
            )
        migrations[version] = Migration(
            version=version,
            name=path.name,
            path=path,
            checksum=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    return [migrations[v] for v in sorted(migrations)]


def render(sql: str, embedding_dim: int) -> str:
    return sql.replace(DIM_PLACEHOLDER, str(embedding_dim))


async def current_embedding_dim(conn: asyncpg.Connection) -> int | None:
    """The dimension of knowledge_nodes.embedding, or None before the table exists."""
    # for pgvector's type, atttypmod holds the declared dimension
    dim: int | None = await conn.fetchval(
        """
        SELECT a.atttypmod FROM pg_attribute a
        WHERE a.attrelid = to_regclass('knowledge_nodes') AND a.attname = 'embedding'
          AND NOT a.attisdropped
        """
    )
    return dim


def dimension_mismatch_message(existing: int, wanted: int) -> str:
    return (
        f"knowledge_nodes.embedding is vector({existing}) but the embedding settings give "
        f"{wanted} dimensions: to switch models, run `aiops kg reembed` (it changes the column to "
        f"vector({wanted}) and recomputes every embedding with the configured model); to keep the "
        f"current model, set AIOPS_EMBEDDING_DIM={existing} and its AIOPS_EMBEDDING_MODEL"
    )


async def migrate(
    database_url: str, embedding_dim: int, schema_dir: Path = SCHEMA_DIR
) -> MigrationReport:
    migrations = discover(schema_dir)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                embedding_dim integer NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        existing = await current_embedding_dim(conn)
        if existing is not None and existing != embedding_dim:
            raise MigrationError(dimension_mismatch_message(existing, embedding_dim))
        done = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        applied: list[str] = []
        already: list[str] = []
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{migration.name} changed after it was applied: never edit an applied "
                        f"migration, add schema/{migration.version + 1:03d}_<change>.sql instead"
                    )
                already.append(migration.name)
                continue
            sql = render(migration.path.read_text(), embedding_dim)
            async with conn.transaction():
                try:
                    await conn.execute(sql)
                except asyncpg.PostgresError as error:
                    raise MigrationError(f"{migration.name} failed: {error}") from error
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, embedding_dim)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                    embedding_dim,
                )
            applied.append(migration.name)
        return MigrationReport(
            applied=applied, already_applied=already, embedding_dim=embedding_dim
        )
    finally:
        await conn.close()  # closing the session releases the advisory lock
