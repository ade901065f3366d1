"""Tool construction end to end, on real Temporal, PostgreSQL and Redis: a known fix needs an
action no adapter offers, so its incident is refused and the request recorded; a chat model
(the real `openai` client against a local OpenAI-compatible server) drafts tools; a proposed
tool plans nothing; once approved, the next incident plans its primitive steps and heals,
and the outcome is learned for the fix that uses it."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from aiops_worker import EMBEDDER, aiops_worker
from cryptography.fernet import Fernet
from fastapi import FastAPI, Request
from known_problems import IMPORT_TIMEOUT, import_timeout_incident, register_simulated
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_tools import tool_builder

from aiops.diagnosis.chat import ChatModel
from aiops.diagnosis.tools import ToolPlanner
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.diagnosis import Candidate
from aiops.models.incident import IncidentStatus
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceRegistry
from aiops.tools import lifecycle
from aiops.tools.drafting import LlmDrafter
from aiops.tools.models import ToolDraft
from aiops.tools.spec import parse_spec
from aiops.tools.store import ToolStore
from workflows.incident import IncidentWorkflow

WARM = """
name: warm_import_cache
description: shrink import batches, then clear the import cache
parameters:
  - {name: batch_size, type: integer, default: 200, description: rows per import batch}
steps:
  - action_type: config_update
    parameters: {key: batch_size, value: "${batch_size}", success_probability: 1.0}
    compensation: undo
  - action_type: cache_clear
    parameters: {success_probability: 1.0}
    compensation: none
preconditions: [{kind: config_key, value: batch_size}]
postconditions: [{kind: healthy}]
"""


async def _incident(client: Client, queue: str) -> IncidentStatus:
    return await client.execute_workflow(
        IncidentWorkflow.run,
        import_timeout_incident(cool_down_s=1),
        id=f"incident-tools-{uuid.uuid4().hex[:12]}",
        task_queue=queue,
    )


async def test_a_missing_action_becomes_a_tool_that_heals_once_approved(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        pool = kg.pool
        store = ToolStore(pool)
        await register_simulated(pool, "import-service", config_keys=("batch_size",))
        problem = await kg.add_problem(
            ProblemIn(
                description=IMPORT_TIMEOUT,
                category="timeout",
                context={"service": "import-service"},
            )
        )
        solution_id = await kg.add_solution(
            problem.id,
            SolutionIn(
                description="Warm the import cache",
                actions=[ActionSpec(action_type="warm_import_cache", target="{service}")],
            ),
        )
        # 1. no adapter offers warm_import_cache: refused as before, and the request recorded
        refused = await _incident(client, queue)
        assert refused.healing_result is not None
        assert refused.healing_result.outcome == "refused"
        [request] = await store.requests()
        assert (request.action_type, request.problem_id) == ("warm_import_cache", problem.id)
        assert request.service == "import-service"
        # without a chat model and with no healed run recorded, nothing can be drafted
        report = await tool_builder(pool).from_requests("aiops")
        assert report.built == [] and "no healed run is recorded" in report.notes[0]
        # 2. a person writes it; validated, it is proposed, and a proposed tool plans nothing
        draft = ToolDraft(
            spec=parse_spec(WARM),
            origin="manual",
            problem_id=problem.id,
            service="import-service",
        )
        record = await tool_builder(pool).submit(draft, "alice")
        assert record.status == "proposed", record.validation.refusal()
        waiting = await _incident(client, queue)
        assert waiting.diagnosis is not None and waiting.diagnosis.plan is None
        # 3. approved: the fix that asked for it plans its primitive steps and heals
        approved = await lifecycle.approve(
            store, "warm_import_cache", "admin", "reviewed", version=1
        )
        assert approved.solution_id == solution_id  # the fix that asked for it, not a new one
        healed = await _incident(client, queue)
        stats = await kg.solution_stats(solution_id)
        outcomes = await store.outcomes("warm_import_cache")
        executed = await pool.fetch(
            "SELECT action_type, action FROM action_executions WHERE workflow_id LIKE $1"
            " ORDER BY step",
            f"{healed.healing_workflow_id}%",
        )
        # 4. retired: diagnosis passes over the fix again
        await lifecycle.retire(store, "warm_import_cache", "admin", "replaced")
        retired = await _incident(client, queue)
    assert healed.outcome == "healed"
    assert healed.diagnosis is not None and healed.diagnosis.plan is not None
    plan = healed.diagnosis.plan
    assert plan.solution_id == solution_id
    assert [(p.action.action_type, p.action.target) for p in plan.actions] == [
        ("config_update", "import-service"),
        ("cache_clear", "import-service"),
    ]
    assert plan.actions[0].action.parameters["value"] == 200  # the typed default
    assert "tool warm_import_cache v1 (2 steps)" in (
        healed.diagnosis.chosen.candidate.why if healed.diagnosis.chosen else ""
    )
    assert [r["action_type"] for r in executed] == ["config_update", "cache_clear"]
    # learned like any solution's: the healed run counts for the fix that uses the tool
    assert stats.success_count == 1
    assert outcomes == (stats.attempt_count, stats.success_count)
    assert retired.diagnosis is not None and retired.diagnosis.plan is None


class _ChatServer:
    """A tiny OpenAI-compatible chat-completions server (FastAPI on uvicorn) answering each
    request with the next scripted YAML."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append({"auth": request.headers.get("authorization"), "body": body})
            content = self.answers.pop(0)
            return {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        [sock] = [s for server in self.server.servers for s in server.sockets]
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@contextlib.contextmanager
def chat_server() -> Iterator[_ChatServer]:
    server = _ChatServer([])
    server.thread.start()
    deadline = time.monotonic() + 20
    while not server.server.started:
        assert time.monotonic() < deadline, "the chat server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.server.should_exit = True
        server.thread.join(timeout=10)


@pytest.fixture
def chat() -> Iterator[_ChatServer]:
    with chat_server() as server:
        yield server


async def test_a_chat_model_drafts_requested_tools_and_validation_judges_them(
    database_url: str, chat: _ChatServer
) -> None:
    from aiops.db.pool import create_pool

    pool = await create_pool(database_url)
    try:
        await register_simulated(pool, "import-service", config_keys=("batch_size",))
        planner = ToolPlanner(ToolStore(pool), ServiceRegistry(pool, Fernet(Fernet.generate_key())))

        kg = KnowledgeGraph(pool, EMBEDDER)
        text = "imports time out for alice@example.com"
        problem = await kg.add_problem(ProblemIn(description=text))

        async def candidate(action_type: str) -> Candidate:
            action = ActionSpec(action_type=action_type, target="{service}")
            fix = SolutionIn(description=f"run {action_type}", actions=[action])
            return Candidate(
                problem_id=problem.id,
                problem_description=text,
                problem_service="import-service",
                similarity=0.9,
                solution_id=await kg.add_solution(problem.id, fix),
                solution_description=fix.description,
                actions=[action],
            )

        asked = [await candidate("warm_import_cache"), await candidate("reset_import_state")]
        # nothing offers them: the candidates stay as they were, the requests are recorded
        assert await planner.expand(asked, "import-service") == asked
        chat.answers[:] = [
            "```yaml\n" + WARM.replace("name: warm_import_cache", "name: anything") + "```",
            json.dumps(
                {
                    "name": "reset_import_state",
                    "description": "wipe the import queue",
                    "steps": [
                        {
                            "action_type": "execute",
                            "parameters": {"command": "FLUSHDB"},
                            "compensation": "none",
                        }
                    ],
                }
            ),
        ]
        drafter = LlmDrafter(ChatModel("tiny-model", chat.url, None, 10.0))
        builder = tool_builder(pool, drafter=drafter)
        report = await builder.from_requests("aiops")
        built = {r.name: r for r in report.built}
        assert built["warm_import_cache"].status == "proposed", built[
            "warm_import_cache"
        ].validation.refusal()
        assert built["warm_import_cache"].origin == "llm"
        assert built["reset_import_state"].status == "refused"
        assert "data deletion (FLUSHDB) is forbidden" in (
            built["reset_import_state"].validation.refusal() or ""
        )
        # the approved tool expands for the fix that asked for it
        await lifecycle.approve(ToolStore(pool), "warm_import_cache", "admin", version=1)
        [planned] = await planner.expand(asked[:1], "import-service")
        assert [a.action_type for a in planned.actions] == ["config_update", "cache_clear"]
        assert [a.order for a in planned.actions] == [1, 2]
    finally:
        await pool.close()
    assert len(chat.requests) == 2
    first = chat.requests[0]
    assert first["auth"] is None  # no key configured: no Authorization header at all
    assert first["body"]["model"] == "tiny-model"
    prompt = json.dumps(first["body"]["messages"])
    assert "warm_import_cache" in prompt and "config_update" in prompt
    assert "batch_size" in prompt  # the service's declared config keys
    assert "alice@example.com" not in prompt  # masked before it leaves
