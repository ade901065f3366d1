"""The workflows tell people: an incident whose critical step waits for approval sends the
approval request, a reminder at half the timeout and the timeout itself to a real webhook,
and a channel that is down costs the incident nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from aiops_worker import aiops_worker
from known_problems import import_timeout_incident, seed_import_timeout
from temporalio.testing import WorkflowEnvironment
from webhook import Receiver

from aiops.config import Settings
from aiops.devstack.ports import free_port
from workflows.incident import IncidentWorkflow


async def test_an_approval_wait_is_announced_reminded_and_timed_out(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("approval_timeout_s: 4\n")  # a reminder at 2 s, the timeout at 4 s
    down = f"json://127.0.0.1:{free_port()}/down"  # nothing listens there
    settings = Settings(
        notify_urls=f"json://127.0.0.1:{receiver.port}/hook,{down}",
        public_url="http://aiops.example",
        home=tmp_path,
    )
    queue = f"q-{uuid.uuid4().hex[:8]}"
    wid = f"incident-notify-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(
        temporal_env.client, queue, database_url, redis_url, policy_file=policy, settings=settings
    ) as kg:
        await seed_import_timeout(kg, "scale", "Add import workers")
        result = await temporal_env.client.execute_workflow(
            IncidentWorkflow.run,
            import_timeout_incident(cool_down_s=1),
            id=wid,
            task_queue=queue,
        )
        for _ in range(50):  # the last one is sent beside learning
            if len(receiver.bodies) >= 3:
                break
            await asyncio.sleep(0.1)
    assert result.outcome == "escalated"  # nobody decided: nothing acted
    said = [json.dumps(body) for body in receiver.bodies]
    assert len(said) == 3, said
    assert all(wid in text for text in said)
    assert "http://aiops.example/approve/" in said[0]  # approve and reject links
    assert "remind" in said[1].lower()
    assert "approve/" not in said[2]  # the wait is over: no links
