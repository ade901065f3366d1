"""Sensitive data stays out of workflow histories, the audit log and the knowledge graph:
events carrying e-mails, bearer tokens, card numbers and passwords in URLs become incidents
whose exported histories hold the masked text only (the raw event stays in the event
store)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import asyncpg
from aiops_worker import aiops_worker
from known_problems import seed_import_timeout
from temporalio.testing import WorkflowEnvironment

from aiops.events.detection import DefaultDetector
from aiops.events.envelope import Event
from aiops.events.routing import IncidentRouter
from aiops.fingerprint import Fingerprinter
from aiops.models.incident import IncidentStatus

SECRETS = {
    "e-mail": "alice.smith@example.com",
    "bearer token": "Bearer s3cr3tT0kenValue9876",
    "card number": "4111 1111 1111 1111",
    "password in a URL": "hunter2pass",
}
MESSAGE = (
    "bookmark import timed out after 30s on a large file for alice.smith@example.com "
    "(Authorization: Bearer s3cr3tT0kenValue9876, card 4111 1111 1111 1111, "
    "db postgresql://app:hunter2pass@db.internal/bookmarks)"
)


def _payload_texts(node: Any) -> str:
    """Every payload of an exported history, decoded (the JSON holds them base64)."""
    if isinstance(node, dict):
        if "data" in node and "metadata" in node and isinstance(node["data"], str):
            return base64.b64decode(node["data"]).decode("utf-8", "replace")
        return " ".join(_payload_texts(v) for v in node.values())
    if isinstance(node, list):
        return " ".join(_payload_texts(v) for v in node)
    return ""


async def test_no_secret_of_an_event_reaches_a_history_the_audit_log_or_the_graph(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        await seed_import_timeout(kg)
        router = IncidentRouter(
            client,
            task_queue=queue,
            detector=DefaultDetector(),
            fingerprinter=Fingerprinter(),
            cool_down_s=1,
        )
        event = Event(
            event_type="ServiceTimeout",
            source="import-service",
            service="import-service",
            payload={
                "message": MESSAGE,
                "request": {"user": "alice.smith@example.com", "password": "hunter2pass"},
            },
        )
        [observation] = router.observe([event])
        await router.signal_all([observation])
        wid = f"incident-{observation.fingerprint}"
        result = await client.get_workflow_handle(wid, result_type=IncidentStatus).result()
        histories = []
        async for execution in client.list_workflows(f"WorkflowId STARTS_WITH '{wid}'"):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            histories.append(_payload_texts(json.loads((await handle.fetch_history()).to_json())))
    assert result.outcome == "healed"  # masking kept the problem recognisable
    assert len(histories) >= 4  # the incident and its three children
    conn = await asyncpg.connect(database_url)
    try:
        audit = " ".join(str(dict(r)) for r in await conn.fetch("SELECT * FROM audit_log"))
        graph = " ".join(
            str(r["data"]) for r in await conn.fetch("SELECT data::text FROM knowledge_nodes")
        )
    finally:
        await conn.close()
    exported = " ".join(histories)
    for what, secret in SECRETS.items():
        for name, text in (("history", exported), ("audit log", audit), ("graph", graph)):
            assert secret not in text, f"the {what} reached the {name}"
    assert "<EMAIL>" in exported  # masked, not dropped: the text still reads
