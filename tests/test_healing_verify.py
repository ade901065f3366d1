"""Verification after a plan: a first probe inside the workflow task, the full wait (an
activity that polls) only when that probe is not healthy; the remediation closed in the
same task. Real Temporal (time-skipping), real PostgreSQL, a real HTTP health endpoint."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest
from cryptography.fernet import Fernet
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from test_healing_workflow import _activities, _export, _input, _step, _worker

from aiops.registry import ServiceDefinition, ServiceRegistry
from aiops.registry.models import ReplicaBounds
from workflows.healing import HealingWorkflow


class HealthEndpoint:
    """GET /health answers 503 for the first `sick` requests, then 200."""

    def __init__(self, sick: int) -> None:
        self.sick = sick
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                endpoint.requests += 1
                self.send_response(503 if endpoint.requests <= endpoint.sick else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> Iterator[HealthEndpoint]:
    served = HealthEndpoint(sick=request.param)
    yield served
    served.server.shutdown()


async def _with_health(pool: asyncpg.Pool, port: int) -> None:
    """import-service acted on by the simulated adapter, with a real health endpoint."""
    await ServiceRegistry(pool, Fernet(Fernet.generate_key())).register(
        ServiceDefinition(
            name="import-service",
            endpoint=f"http://127.0.0.1:{port}",
            health_check="/health",
            replicas=ReplicaBounds(min=0, max=10),
            metadata={"adapter": "simulated"},
        )
    )


def _activity_types(history: WorkflowHistory) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


@pytest.mark.parametrize(
    ("endpoint", "outcome", "polled"),
    [(0, "healed", False), (2, "healed", True), (1000, "compensated", True)],
    indirect=["endpoint"],
    ids=["healthy-at-once", "healthy-after-two-probes", "never-healthy"],
)
async def test_verification_waits_only_when_the_first_probe_is_not_healthy(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    endpoint: HealthEndpoint,
    outcome: str,
    polled: bool,
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    acts = await _activities(pool)
    await _with_health(pool, endpoint.port)
    async with _worker(time_skipping_env, queue, acts):
        result = await time_skipping_env.client.execute_workflow(
            HealingWorkflow.run,
            _input(_step("1", "cache_clear"), verify_timeout_s=2),
            id=wid,
            task_queue=queue,
        )
    history = await time_skipping_env.client.get_workflow_handle(wid).fetch_history()
    if not polled:
        await _export(time_skipping_env, wid, "healing_healed_verified_in_task")
    assert result.outcome == outcome, result.detail
    assert result.verified is (outcome == "healed")
    # the full wait ran exactly when the first probe was not healthy, and only then
    assert ("verify_service_health" in _activity_types(history)) is polled
    if not polled:
        assert endpoint.requests == 1
    # one patch marker stands for every patch of the healing
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert patches == ["patches-in-one-marker"]
    if outcome == "compensated":
        assert "verification failed" in result.detail and "503" in result.detail
    row = await pool.fetchrow(
        "SELECT outcome, finished_at FROM remediations WHERE workflow_id = $1", wid
    )
    assert row is not None and row["finished_at"] is not None and row["outcome"] == outcome
    audited = await pool.fetchval(
        "SELECT decision FROM audit_log WHERE workflow_id = $1 AND action = 'verify'", wid
    )
    assert audited == str(outcome == "healed")
    # and the run replays against the workflow code
    await Replayer(
        workflows=[HealingWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)
