"""Silences and maintenance windows: a problem during a silence is counted but nothing
acts and nobody is told; when the silence ends (or is expired) with the problem still
there, the incident goes on and heals."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiops_worker import aiops_worker
from known_problems import import_timeout_incident, seed_import_timeout
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner
from webhook import Receiver

from aiops.config import Settings
from aiops.models.incident import IncidentStatus
from aiops.silences import SilenceCheck, SilenceStore, maintenance_window
from aiops.silences.store import SilenceError, parse_matchers
from workers import cli
from workflows.incident import IncidentWorkflow

cli._register()


def test_matchers_and_maintenance_windows() -> None:
    assert parse_matchers(["event_type=ServiceTimeout", "label.env=prod"]) == {
        "event_type": "ServiceTimeout",
        "label.env": "prod",
    }
    with pytest.raises(SilenceError, match="field is one of"):
        parse_matchers(["payload.x=1"])
    saturday_2_30 = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)
    windows = [{"cron": "0 2 * * 6", "for": "2h", "reason": "weekly patching"}]
    held = maintenance_window(windows, saturday_2_30)
    assert held is not None and held[0] == datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
    assert held[1] == "weekly patching"
    assert maintenance_window(windows, saturday_2_30 + timedelta(hours=2)) is None


async def test_a_silence_matches_its_service_and_matchers(pool: asyncpg.Pool) -> None:
    store = SilenceStore(pool)
    await store.add(
        service="billing",
        matchers={"event_type": "ServiceTimeout"},
        duration=timedelta(minutes=5),
        reason="deploy",
        created_by="test",
    )
    assert await store.matching(SilenceCheck(service="billing", event_type="ServiceTimeout"))
    assert not await store.matching(SilenceCheck(service="billing", event_type="ServiceError"))
    assert not await store.matching(SilenceCheck(service="ledger", event_type="ServiceTimeout"))


async def _status(client: Client, wid: str) -> IncidentStatus:
    status: IncidentStatus = await client.get_workflow_handle(wid).query(
        "status", result_type=IncidentStatus
    )
    return status


async def test_a_fault_during_a_silence_does_nothing_and_heals_once_it_ends(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    receiver: Receiver,
    tmp_path: object,
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    wid = f"incident-silenced-{uuid.uuid4().hex[:8]}"
    settings = Settings(notify_urls=f"json://127.0.0.1:{receiver.port}/hook")
    async with aiops_worker(client, queue, database_url, redis_url, settings=settings) as kg:
        _, solution_id = await seed_import_timeout(kg)
        await SilenceStore(kg.pool).add(
            service="import-service",
            matchers={},
            duration=timedelta(seconds=5),
            reason="deploy of v2",
            created_by="test",
        )
        handle = await client.start_workflow(
            IncidentWorkflow.run,
            import_timeout_incident(cool_down_s=1),
            id=wid,
            task_queue=queue,
        )
        for _ in range(100):
            status = await _status(client, wid)
            if status.phase == "silenced":
                break
            await asyncio.sleep(0.1)
        assert status.phase == "silenced" and status.silence_reason == "deploy of v2"
        await asyncio.sleep(1.0)  # held: nothing acts meanwhile
        acted = await kg.pool.fetchval(
            "SELECT count(*) FROM action_executions WHERE workflow_id LIKE $1", f"{wid}%"
        )
        assert acted == 0 and not receiver.bodies
        result = await handle.result()  # the silence ends: the problem is still there
        stats = await kg.solution_stats(solution_id)
    assert result.outcome == "healed"
    assert result.silenced_until is None
    assert (stats.attempt_count, stats.success_count) == (1, 1)


def test_silence_cli_add_list_expire_and_audit(cli_db: str) -> None:
    runner = CliRunner()
    added = runner.invoke(
        cli.app,
        [
            *("silence", "add", "--service", "billing", "--match", "event_type=ServiceError"),
            *("--for", "2h", "--reason", "deploy"),
        ],
    )
    assert added.exit_code == 0, added.output
    silence_id = added.output.strip().splitlines()[-1].split()[0]
    listed = runner.invoke(cli.app, ["silence", "list"])
    assert silence_id in listed.output and "event_type=ServiceError" in listed.output
    assert runner.invoke(cli.app, ["silence", "add", "--for", "x", "--reason", "r"]).exit_code
    assert runner.invoke(cli.app, ["silence", "expire", silence_id]).exit_code == 0
    assert runner.invoke(cli.app, ["silence", "expire", silence_id]).exit_code != 0
    assert silence_id not in runner.invoke(cli.app, ["silence", "list"]).output

    async def audited() -> list[str]:
        conn = await asyncpg.connect(cli_db)
        try:
            rows = await conn.fetch(
                "SELECT decision FROM audit_log WHERE action = 'silence' ORDER BY seq"
            )
        finally:
            await conn.close()
        return [r["decision"] for r in rows]

    assert asyncio.run(audited()) == ["added", "expired"]
