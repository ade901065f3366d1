"""A 100,000-event storm on one incident: every event counted exactly, and every run's
history stays bounded, because the incident continues as new on its history budget
carrying its counters (the status does not grow with the storm). Real Temporal dev server,
PostgreSQL and Redis; signals sent as the listener sends them (signal-with-start)."""

from __future__ import annotations

import asyncio
import uuid

from aiops_worker import aiops_worker
from temporalio.testing import WorkflowEnvironment
from test_incident_persists import _incident, observation, until_phase

from workflows.incident import IncidentWorkflow

SIGNALS = 1_000
PER_SIGNAL = 100
BUDGET = 200  # history events per run, set low so the storm crosses it many times
TEMPORAL_MAX_EVENTS = 50_000
TEMPORAL_MAX_BYTES = 50 * 1024 * 1024


async def test_a_100k_event_storm_is_counted_exactly_in_bounded_histories(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    client = temporal_env.client
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"incident-storm-{uuid.uuid4().hex[:8]}"
    start = _incident(cool_down_s=3, max_retries=0, history_budget=BUDGET)

    async def send() -> None:
        await client.start_workflow(
            IncidentWorkflow.run,
            start,
            id=wid,
            task_queue=queue,
            start_signal="observe",
            start_signal_args=[observation(wid, count=PER_SIGNAL)],
        )

    async with aiops_worker(client, queue, database_url, redis_url):
        await send()
        handle = client.get_workflow_handle_for(IncidentWorkflow.run, wid)
        await until_phase(handle, "cooling_down")
        before = (await handle.query(IncidentWorkflow.status)).model_dump_json()
        gate = asyncio.Semaphore(50)

        async def one() -> None:
            async with gate:
                await send()

        await asyncio.gather(*(one() for _ in range(SIGNALS - 1)))
        result = await handle.result(follow_runs=True)
        runs = [r async for r in client.list_workflows(f"WorkflowId = '{wid}'")]
        histories = [
            await client.get_workflow_handle(wid, run_id=r.run_id).fetch_history() for r in runs
        ]
    assert result.events == SIGNALS * PER_SIGNAL  # exactly 100,000: none lost, none twice
    assert result.observations == SIGNALS
    assert result.runs == len(runs) > 1  # the storm crossed the budget; counters carried
    for history in histories:
        length = len(history.events)
        size = sum(e.ByteSize() for e in history.events)
        assert size < TEMPORAL_MAX_BYTES / 50, size
        # a run ends at its first workflow task past the budget; what the server appended
        # while the worker was busy comes on top, so the bound is Temporal's, with margin
        assert length < TEMPORAL_MAX_EVENTS / 10, length
    # what a run carries to the next does not grow with the storm
    assert len(result.model_dump_json()) < len(before) + 1_000
