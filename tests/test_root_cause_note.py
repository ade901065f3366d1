"""The optional LLM root-cause note, against a local OpenAI-compatible HTTP server: the note
lands in the diagnosis, the model sees masked text only, and a broken model costs no incident."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiops_worker import aiops_worker
from known_problems import seed_import_timeout
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from aiops.diagnosis.llm import RootCauseRequest, RootCauseWriter
from aiops.models.incident import IncidentInput
from workflows.incident import IncidentWorkflow

NOTE = "Large imports exceed the 30 s deadline; check the import batch size first."


class _ChatServer(ThreadingHTTPServer):
    requests: list[dict[str, Any]]
    status: int = 200


class _Handler(BaseHTTPRequestHandler):
    server: _ChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        if self.server.status != 200:
            self.send_response(self.server.status)
            self.end_headers()
            return
        answer = {"choices": [{"message": {"role": "assistant", "content": NOTE}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chat() -> Iterator[_ChatServer]:
    server = _ChatServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _writer(server: _ChatServer) -> RootCauseWriter:
    host, port = server.server_address[:2]
    return RootCauseWriter("tiny-model", f"http://{host!s}:{port}/v1", SecretStr("sk-test"), 5.0)


async def test_note_lands_in_the_diagnosis_and_the_model_sees_masked_text(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, chat: _ChatServer
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(
        temporal_env.client, queue, database_url, redis_url, root_cause=_writer(chat)
    ) as kg:
        await seed_import_timeout(kg)
        result = await temporal_env.client.execute_workflow(
            IncidentWorkflow.run,
            IncidentInput(
                event_type="ServiceTimeout",
                source="import-service",
                payload={
                    "message": "import requests time out with large bookmark files "
                    "(user alice@example.com from 10.2.3.4)"
                },
                cool_down_s=0.5,
            ),
            id=f"incident-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
    assert result.outcome == "healed"
    assert result.diagnosis is not None and result.diagnosis.root_cause_note == NOTE
    [sent] = chat.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "tiny-model"
    prompt = json.dumps(sent["body"]["messages"])
    assert "Clear the import cache" in prompt  # the candidates go with the incident
    assert "alice@example.com" not in prompt and "10.2.3.4" not in prompt


async def test_a_failing_model_gives_no_note_and_says_why(chat: _ChatServer) -> None:
    chat.status = 500
    note = await _writer(chat).write(
        RootCauseRequest(incident_id="i", masked_text="disk full on /var/lib/postgresql")
    )
    assert note.note is None
    assert note.error is not None and "500" in note.error


async def test_an_unreachable_model_gives_no_note() -> None:
    writer = RootCauseWriter("m", "http://127.0.0.1:9/v1", None, 2.0)
    note = await writer.write(RootCauseRequest(incident_id="i", masked_text="x"))
    assert note.note is None and note.error is not None
