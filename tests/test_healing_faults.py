"""kill -9 of the worker in the middle of an action: the incident completes and the action
ran once. The target is a real HTTP service that counts the changes it receives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from temporalio.testing import WorkflowEnvironment

from aiops.config import ENV_NAMES
from aiops.db.pool import create_pool
from aiops.models.healing import HealingInput, HealingPlan, HealingResult, PlannedAction
from aiops.policy import load_policy
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry
from aiops.registry.models import ConfigKey
from workflows.healing import HealingWorkflow

AIOPS = str(Path(sys.executable).parent / "aiops")


class ConfigService:
    """A service whose config change takes effect at once but answers slowly."""

    def __init__(self, answer_delay_s: float) -> None:
        self.config: dict[str, object] = {"import_batch_size": 1000}
        self.posts = 0
        self.delay = answer_delay_s
        self.changed = threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(service.config if self.path == "/admin/config" else {"ok": True})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.config[body["key"]] = body["value"]
                service.posts += 1
                service.changed.set()
                time.sleep(service.delay)
                self._reply({"ok": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def config_service() -> Iterator[ConfigService]:
    service = ConfigService(answer_delay_s=30)
    yield service
    service.server.shutdown()


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [AIOPS, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def test_kill_9_mid_action_completes_without_acting_twice(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    config_service: ConfigService,
    tmp_path: Path,
) -> None:
    key = Fernet.generate_key()
    pool = await create_pool(database_url)
    try:
        await ServiceRegistry(pool, Fernet(key)).register(
            ServiceDefinition(
                name="config-svc",
                endpoint=f"http://127.0.0.1:{config_service.port}",
                admin_endpoints={"config_update": "/admin/config"},
                config_keys={"import_batch_size": ConfigKey(type="integer", min=1, max=10_000)},
            )
        )
        queue = f"q-{uuid.uuid4().hex[:8]}"
        base = {
            k: v for k, v in os.environ.items() if not k.startswith("AIOPS_") and k not in ENV_NAMES
        }
        env = {
            **base,
            "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:1/0",  # unused by the worker
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "AIOPS_TASK_QUEUE": queue,
            "AIOPS_SECRET_KEY": key.decode(),
            "AIOPS_HOME": str(tmp_path),
            "AIOPS_TRACING": "off",
        }
        first = _worker(env)
        plan = HealingPlan(
            service="config-svc",
            description="lower the import batch size",
            actions=[
                PlannedAction(
                    step="1",
                    action=ActionSpec(
                        action_type="config_update",
                        target="config-svc",
                        parameters={"key": "import_batch_size", "value": 50},
                    ),
                )
            ],
        )
        wid = f"healing-{uuid.uuid4().hex[:8]}"
        handle = await temporal_env.client.start_workflow(
            HealingWorkflow.run,
            HealingInput(
                incident_id="incident-kill",
                plan=plan,
                policy=load_policy(None),
                verify_timeout_s=10,
            ),
            id=wid,
            task_queue=queue,
        )
        started = await asyncio.to_thread(config_service.changed.wait, 60)
        assert started and config_service.posts == 1, "the action never started"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = _worker(env)
        try:
            result: HealingResult = await handle.result(rpc_timeout=None)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(40)
        assert result.outcome == "healed", result.detail
        assert config_service.posts == 1  # reconciled, not repeated
        assert config_service.config["import_batch_size"] == 50
        step = result.steps[0]
        assert step.outcome is not None and "not repeated" in step.outcome.detail
        row = await pool.fetchrow(
            "SELECT status, attempts FROM action_executions WHERE idempotency_key = $1", f"{wid}:1"
        )
        assert row is not None and row["status"] == "succeeded" and row["attempts"] >= 2
    finally:
        await pool.close()
