"""The tools table: drafts, approvals, retirements (each audited) and the action requests
diagnosis recorded for fixes that need an action nothing offers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from aiops.audit import AuditEntry, AuditLog
from aiops.errors import AiopsError
from aiops.tools.models import (
    ToolDraft,
    ToolRecord,
    ToolRequest,
    ToolSpec,
    ToolStatus,
    ValidationReport,
)
from aiops.tools.spec import dump_spec

_COLUMNS = (
    "name, version, status, origin, spec, spec_yaml, problem_id::text AS problem_id, service,"
    " solution_id::text AS solution_id, signature, validation, created_by, decided_by,"
    " decided_at, created_at, updated_at"
)


class ToolError(AiopsError):
    exit_code = 2


def _same_version(name: str, current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise ToolError(
            f"tool {name} is at version {current}, not {expected}: it changed since it was "
            f"read; read v{current} (aiops tools show {name}), then give --version {current}"
        )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _record(row: asyncpg.Record) -> ToolRecord:
    data = dict(row)
    data["spec"] = ToolSpec.model_validate(_json(data["spec"]))
    data["validation"] = ValidationReport.model_validate(_json(data["validation"]) or {})
    return ToolRecord.model_validate(data)


class ToolStore:
    """Needs a pool from aiops.db.pool.create_pool (its JSON codecs)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._audit = AuditLog(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def audit(self) -> AuditLog:
        return self._audit

    @staticmethod
    def same_version(record: ToolRecord, version: int | None) -> None:
        """Refuse a decision on another version than the one the admin read."""
        _same_version(record.name, record.version, version)

    async def outcomes(self, name: str) -> tuple[int, int]:
        """(attempts, successes) of the knowledge-graph solutions that plan with the tool:
        learned like any solution's, by the learning workflow."""
        row = await self._pool.fetchrow(
            "SELECT coalesce(sum((data->>'attempt_count')::int), 0) AS attempts,"
            " coalesce(sum((data->>'success_count')::int), 0) AS successes"
            " FROM knowledge_nodes WHERE node_type = 'solution' AND data->'actions' @> $1",
            [{"action_type": name}],
        )
        assert row is not None
        return int(row["attempts"]), int(row["successes"])

    async def solution_for(self, name: str, problem_id: str) -> str | None:
        """A solution of the problem that already plans with the tool (a requested one)."""
        found: str | None = await self._pool.fetchval(
            "SELECT s.id::text FROM knowledge_edges e JOIN knowledge_nodes s ON s.id = e.from_node"
            " WHERE e.to_node = $1::uuid AND e.relationship = 'solves'"
            " AND s.data->'actions' @> $2 LIMIT 1",
            problem_id,
            [{"action_type": name}],
        )
        return found

    async def get(self, name: str) -> ToolRecord | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM tools WHERE name = $1", name)
        return _record(row) if row else None

    async def require(self, name: str) -> ToolRecord:
        record = await self.get(name)
        if record is None:
            raise ToolError(f"no tool named {name!r} (aiops tools list)")
        return record

    async def find(self, status: ToolStatus | None = None) -> list[ToolRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM tools WHERE $1::text IS NULL OR status = $1 ORDER BY name",
            status,
        )
        return [_record(r) for r in rows]

    async def by_names(self, names: Iterable[str]) -> dict[str, ToolRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM tools WHERE name = ANY($1::text[])", list(set(names))
        )
        return {r["name"]: _record(r) for r in rows}

    async def signature_known(self, signature: str) -> bool:
        found = await self._pool.fetchval("SELECT 1 FROM tools WHERE signature = $1", signature)
        return found is not None

    async def save(self, draft: ToolDraft, report: ValidationReport, actor: str) -> ToolRecord:
        """Store a validated draft: proposed when every check passed, refused otherwise. A
        changed specification under an existing name is a new version, proposed again: what
        an admin approved is never changed under them."""
        status: ToolStatus = "proposed" if report.ok else "refused"
        spec_json = draft.spec.model_dump(mode="json")
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                "SELECT version, status, spec, validation FROM tools WHERE name = $1 FOR UPDATE",
                draft.spec.name,
            )
            # the same specification again keeps its version: a decided one, and one whose
            # trial waits for an admin who may be reading that version now
            if (
                current is not None
                and _json(current["spec"]) == spec_json
                and (
                    current["status"] in ("approved", "proposed")
                    or ValidationReport.model_validate(
                        _json(current["validation"]) or {}
                    ).needs_a_person
                )
            ):
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM tools WHERE name = $1", draft.spec.name
                )
                assert row is not None
                return _record(row)
            row = await conn.fetchrow(
                f"""
                INSERT INTO tools (name, status, origin, spec, spec_yaml, problem_id, service,
                    signature, validation, created_by)
                VALUES ($1, $2, $3, $4, $5, $6::uuid, $7, $8, $9, $10)
                ON CONFLICT (name) DO UPDATE SET
                    version = tools.version + 1, status = EXCLUDED.status,
                    origin = EXCLUDED.origin, spec = EXCLUDED.spec,
                    spec_yaml = EXCLUDED.spec_yaml,
                    problem_id = coalesce(EXCLUDED.problem_id, tools.problem_id),
                    service = coalesce(EXCLUDED.service, tools.service),
                    signature = coalesce(EXCLUDED.signature, tools.signature),
                    validation = EXCLUDED.validation, created_by = EXCLUDED.created_by,
                    decided_by = NULL, decided_at = NULL, updated_at = now()
                RETURNING {_COLUMNS}
                """,
                draft.spec.name,
                status,
                draft.origin,
                spec_json,
                dump_spec(draft.spec),
                draft.problem_id,
                draft.service,
                draft.signature,
                report.model_dump(mode="json"),
                actor,
            )
        assert row is not None
        record = _record(row)
        await self._audit.append(
            AuditEntry(
                actor=actor,
                action="tool-draft",
                target=record.name,
                decision=status,
                details={
                    "version": record.version,
                    "origin": record.origin,
                    "why": draft.why,
                    "refused": report.refusal(),
                },
            )
        )
        return record

    async def decide(
        self,
        name: str,
        status: ToolStatus,
        actor: str,
        *,
        allowed_from: tuple[ToolStatus, ...],
        reason: str = "",
        solution_id: str | None = None,
        expected_version: int | None = None,
    ) -> ToolRecord:
        """Move a tool from one of `allowed_from` to `status`, audited with who and why.
        expected_version: the version the admin read; another one is refused."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                "SELECT status, version, validation FROM tools WHERE name = $1 FOR UPDATE", name
            )
            if current is None:
                raise ToolError(f"no tool named {name!r} (aiops tools list)")
            _same_version(name, current["version"], expected_version)
            if current["status"] not in allowed_from:
                why = ""
                if current["status"] == "refused":
                    report = ValidationReport.model_validate(_json(current["validation"]) or {})
                    why = f": validation refused it ({report.refusal()})"
                raise ToolError(f"tool {name} is {current['status']}{why}; cannot make it {status}")
            row = await conn.fetchrow(
                f"""
                UPDATE tools SET status = $2, decided_by = $3, decided_at = now(),
                    updated_at = now(), solution_id = coalesce($4::uuid, solution_id)
                WHERE name = $1 RETURNING {_COLUMNS}
                """,
                name,
                status,
                actor,
                solution_id,
            )
        assert row is not None
        record = _record(row)
        await self._audit.append(
            AuditEntry(
                actor=actor,
                action="tool",
                target=name,
                decision=status,
                details={"version": record.version, "reason": reason, "via": "cli"},
            )
        )
        return record

    async def record_trial(
        self, name: str, version: int, report: ValidationReport, actor: str
    ) -> ToolRecord:
        """The validation of an admin's trial of this version: proposed when it passed,
        refused otherwise; refused when the tool changed or was decided meanwhile."""
        status: ToolStatus = "proposed" if report.ok else "refused"
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                "SELECT version, status FROM tools WHERE name = $1 FOR UPDATE", name
            )
            if current is None:
                raise ToolError(f"no tool named {name!r} (aiops tools list)")
            _same_version(name, current["version"], version)
            if current["status"] not in ("proposed", "refused"):
                raise ToolError(f"tool {name} became {current['status']} during its trial")
            row = await conn.fetchrow(
                f"""
                UPDATE tools SET status = $2, validation = $3, updated_at = now()
                WHERE name = $1 RETURNING {_COLUMNS}
                """,
                name,
                status,
                report.model_dump(mode="json"),
            )
        assert row is not None
        record = _record(row)
        await self._audit.append(
            AuditEntry(
                actor=actor,
                action="tool-trial",
                target=name,
                decision=status,
                details={"version": version, "refused": report.refusal(), "via": "cli"},
            )
        )
        return record

    async def record_request(self, request: ToolRequest) -> None:
        await self._pool.execute(
            """
            INSERT INTO tool_requests (action_type, request) VALUES ($1, $2)
            ON CONFLICT (action_type) DO UPDATE SET seen_count = tool_requests.seen_count + 1,
                last_seen = now(), request = EXCLUDED.request
            """,
            request.action_type,
            request.model_dump(mode="json", exclude={"seen_count"}),
        )

    async def requests(self) -> list[ToolRequest]:
        rows = await self._pool.fetch(
            "SELECT request, seen_count FROM tool_requests ORDER BY first_seen, action_type"
        )
        return [
            ToolRequest.model_validate({**_json(r["request"]), "seen_count": r["seen_count"]})
            for r in rows
        ]

    async def forget_request(self, action_type: str) -> None:
        await self._pool.execute("DELETE FROM tool_requests WHERE action_type = $1", action_type)
