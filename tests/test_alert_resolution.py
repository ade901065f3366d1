"""Alerts from intake: the same alert firing again is one incident with a counter, and an
alert that resolves at its source stops an incident that waits for approval, so nothing
acts on a problem that is gone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiops_worker import aiops_worker
from known_problems import import_timeout_incident, seed_import_timeout
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from aiops.events.detection import DefaultDetector
from aiops.events.envelope import Event
from aiops.events.routing import IncidentRouter, alert_fingerprint
from aiops.fingerprint import Fingerprinter
from aiops.models.incident import IncidentStatus, SourceResolved
from workflows.incident import IncidentWorkflow


def alert(status: str, fingerprint: str, alertname: str = "ImportsSlow", **extra: Any) -> Event:
    """What aiops/intake makes of one Alertmanager alert."""
    return Event(
        event_type=alertname,
        source="alertmanager",
        service="import-service",
        severity="warning",
        timestamp=datetime.now(UTC),
        payload={
            "message": "bookmark import timed out after 30s on a large file",
            "labels": {"alertname": alertname, "service": "import-service"},
            "alert": {"source": "alertmanager", "status": status, "fingerprint": fingerprint},
            **extra,
        },
    )


def _router(client: Client, queue: str) -> IncidentRouter:
    return IncidentRouter(
        client,
        task_queue=queue,
        detector=DefaultDetector(),
        fingerprinter=Fingerprinter(),
        cool_down_s=2,
    )


async def _status(client: Client, wid: str) -> IncidentStatus:
    status: IncidentStatus = await client.get_workflow_handle(wid).query(
        "status", result_type=IncidentStatus
    )
    return status


def test_a_firing_alert_of_any_name_is_a_problem_and_a_resolved_one_is_not() -> None:
    detector = DefaultDetector()
    unknown = alert("firing", "f1", alertname="SomethingOdd")
    assert detector.classify(unknown) is not None  # escalates as unknown, never dropped
    assert detector.classify(alert("resolved", "f1", alertname="SomethingOdd")) is None
    assert detector.classify(alert("acknowledged", "f1", alertname="ImportTimeout")) is None
    # the sender's own identity of the alert decides the incident, not its wording
    changed = alert("firing", "f1", alertname="SomethingOdd", message="other words")
    assert alert_fingerprint(unknown) == alert_fingerprint(changed)
    assert alert_fingerprint(unknown) != alert_fingerprint(alert("firing", "f2"))


async def test_resolved_at_the_source_stops_the_wait_for_approval(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    fingerprint = uuid.uuid4().hex
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        await seed_import_timeout(kg, "scale", "Add import workers")  # critical: waits
        router = _router(client, queue)
        firing = [alert("firing", fingerprint) for _ in range(3)]
        [observation] = router.observe(firing)
        await router.signal_all([observation])
        wid = f"incident-{observation.fingerprint}"
        for _ in range(200):
            if (await _status(client, wid)).pending_approval == "1":
                break
            await asyncio.sleep(0.1)
        # the same alert again while the incident is open: the same incident, counted
        again = router.observe([alert("firing", fingerprint)])
        await router.signal_all(again)
        assert again[0].fingerprint == observation.fingerprint
        assert await router.deliver_resolutions([alert("resolved", fingerprint)]) == 1
        result = await client.get_workflow_handle(wid, result_type=IncidentStatus).result()
    assert result.events == 4
    assert result.source_resolved_by == "alertmanager"
    assert result.outcome == "resolved_by_source"
    assert result.healing_result is not None
    assert result.healing_result.steps[0].status == "skipped"
    conn = await asyncpg.connect(database_url)
    try:
        acted = await conn.fetchval(
            "SELECT count(*) FROM action_executions WHERE workflow_id LIKE $1", f"{wid}%"
        )
        moot = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE workflow_id LIKE $1 AND decision = 'skipped'",
            f"{wid}%",
        )
        outcomes = await conn.fetchval(
            "SELECT count(*) FROM knowledge_nodes WHERE node_type = 'solution'"
            " AND (data->>'attempt_count')::int > 0"
        )
    finally:
        await conn.close()
    assert acted == 0 and moot == 1
    assert not outcomes  # a problem that went away says nothing about the fix


async def test_a_resolution_without_an_open_incident_is_only_stored(
    temporal_env: WorkflowEnvironment,
) -> None:
    router = _router(temporal_env.client, f"q-{uuid.uuid4().hex[:8]}")
    assert await router.deliver_resolutions([alert("resolved", uuid.uuid4().hex)]) == 0


async def test_an_incident_resolved_before_it_ran_still_shows_its_mode_and_acts_on_nothing(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    """The resolution came with the start (the alert fired and resolved within one batch):
    nothing is held or acted on, and the status still says the service's mode."""
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"incident-resolved-first-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        await seed_import_timeout(kg)
        handle = await client.start_workflow(
            IncidentWorkflow.run,
            import_timeout_incident(cool_down_s=1),
            id=wid,
            task_queue=queue,
            start_signal="source_resolved",
            start_signal_args=[SourceResolved(source="alertmanager", at=datetime.now(UTC))],
        )
        result = await handle.result()
        acted = await kg.pool.fetchval(
            "SELECT count(*) FROM action_executions WHERE workflow_id LIKE $1", f"{wid}%"
        )
    assert result.outcome == "resolved_by_source" and acted == 0
    assert result.mode == "act"
