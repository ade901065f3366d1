"""The pattern that opened an incident is carried from the detector through the router into
the incident and its learning: a real listener-side route, a real incident, the outcome
counted once for that pattern."""

from __future__ import annotations

import uuid

from aiops_worker import aiops_worker
from known_problems import register_simulated
from temporalio.testing import WorkflowEnvironment
from test_events_helpers import fingerprinter_for_tests

from aiops.db.pool import create_pool
from aiops.events.envelope import Event
from aiops.events.routing import IncidentRouter, workflow_id_for
from aiops.knowledge import ProblemIn, SolutionIn
from aiops.models.incident import IncidentStatus
from aiops.patterns.detector import PatternDetector
from aiops.patterns.learning import PatternTracker
from aiops.patterns.models import Pattern
from aiops.patterns.store import PatternLibrary
from aiops.policy.models import ActionSpec

PATTERN = {
    "pattern_type": "error",
    "description": "exports fail when the disk is full",
    "matching_rules": [{"field": "message", "operator": "contains", "value": "disk full"}],
    "severity": "high",
}


async def test_pattern_id_flows_from_detection_to_learning(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    service = f"export-{uuid.uuid4().hex[:6]}"
    pool = await create_pool(database_url, max_size=2)
    try:
        added = await PatternLibrary(pool).add(Pattern.model_validate(PATTERN))
        detector = PatternDetector(PatternLibrary(pool))
        await detector.refresh()
        event = Event(
            event_type="ExportFailed",
            source=service,
            service=service,
            payload={"message": "export failed: disk full on /var/exports"},
        )
        detection = detector.classify(event)
        assert detection is not None and detection.pattern_id == added.id
        # an event no pattern matches has none (the default rules decided)
        other = detector.classify(
            Event(event_type="ImportFailed", source=service, payload={"message": "bad csv"})
        )
        assert other is not None and other.pattern_id is None

        async with aiops_worker(temporal_env.client, queue, database_url, redis_url) as kg:
            await register_simulated(pool, service)
            problem = await kg.add_problem(
                ProblemIn(
                    description="export failed: disk full",
                    category="error",
                    severity="high",
                    context={"service": service},
                )
            )
            await kg.add_solution(
                problem.id,
                SolutionIn(
                    description="Rotate the export files",
                    actions=[
                        ActionSpec(
                            action_type="cache_clear",
                            target=service,
                            parameters={"success_probability": 1.0},
                        )
                    ],
                ),
            )
            router = IncidentRouter(
                temporal_env.client,
                task_queue=queue,
                detector=detector,
                fingerprinter=fingerprinter_for_tests(),
                cool_down_s=1,
            )
            [observation] = router.observe([event])
            assert observation.pattern_id == added.id
            await router.signal_all([observation])
            handle = temporal_env.client.get_workflow_handle(
                workflow_id_for(observation), result_type=IncidentStatus
            )
            status = await handle.result()
        stats = await PatternTracker(pool).stats(added.id)
    finally:
        await pool.close()
    assert status.pattern_id == added.id
    assert status.outcome == "healed", status.diagnosis
    assert status.learning is not None and status.learning.pattern is not None
    assert status.learning.pattern.attempt_count == 1
    assert (stats.attempt_count, stats.success_count) == (1, 1)
