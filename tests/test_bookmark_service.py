"""The demo's target, examples/bookmark_service, as a real process against the real Redis.

Each test starts the service from its registry definition's restart_argv (the same argv
aiops's process adapter uses), drives it over HTTP, reads its events back from the Redis
stream with aiops's own envelope parser, and heals it through aiops's own http adapter.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from aiops.actions.base import ActionContext, ActionOutcome
from aiops.actions.http import HttpAdapter
from aiops.devstack.ports import free_port
from aiops.events.envelope import Event, Severity, decode_entry
from aiops.policy.models import ActionSpec
from aiops.registry.models import ServiceDefinition, ServiceRecord

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # examples/ is not an installed package: like the service, it runs from the repo root
    sys.path.insert(0, str(REPO_ROOT))

from examples.bookmark_service.__main__ import main  # noqa: E402
from examples.bookmark_service.options import ServiceOptions, parse_args  # noqa: E402
from examples.bookmark_service.registration import service_definition  # noqa: E402
from examples.bookmark_service.slots import Slots  # noqa: E402

MB = 1024 * 1024


class Service:
    """One bookmark service process, started (and restarted) from its restart_argv."""

    def __init__(self, options: ServiceOptions, redis_url: str, log: Path) -> None:
        self.options = options
        self.definition = service_definition(options)
        self.redis_url = redis_url
        self.log = log
        headers = {"Authorization": f"Bearer {options.admin_token}"} if options.admin_token else {}
        self.http = httpx.Client(base_url=options.endpoint, timeout=10.0, headers=headers)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = self.definition.restart_argv
        assert argv is not None
        with self.log.open("ab") as out:
            # as aiops's process adapter starts it: argv, working_dir and env from the registry
            self.proc = subprocess.Popen(
                argv,
                cwd=self.definition.working_dir,
                env={**os.environ, **self.definition.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"service exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                self.http.get("/health")
                return
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"service did not answer within 30 s:\n{self.log.read_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=15)

    def restart(self) -> None:
        # a graceful stop; uvicorn re-raises the SIGTERM it handled, hence -15
        assert self.stop() == -signal.SIGTERM, self.log.read_text()
        assert self.log.read_text().rstrip().endswith("events published")
        self.start()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.http.close()

    def events(self, event_type: str | None = None) -> list[Event]:
        client = redis.Redis.from_url(self.redis_url)
        try:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(self.options.stream)  # type: ignore[assignment]
        finally:
            client.close()
        decoded = [
            decode_entry(self.options.stream, entry_id.decode(), fields, 1 << 20)
            for entry_id, fields in entries
        ]
        return [e for e in decoded if event_type is None or e.event_type == event_type]

    def wait_for_events(
        self, event_type: str, count: int = 1, timeout: float = 10.0
    ) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(event_type)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} {event_type} events, wanted {count}"
                return found
            time.sleep(0.1)

    def act(self, action_type: str, **parameters: Any) -> ActionOutcome:
        """Run one action through aiops's http adapter, as the healing workflow does."""
        record = ServiceRecord(**self.definition.model_dump(), registered_at=datetime.now(UTC))
        ctx = ActionContext(
            idempotency_key=f"test:{action_type}:{time.monotonic_ns()}",
            workflow_id="test",
            step=action_type,
            action=ActionSpec(action_type=action_type, target=record.name, parameters=parameters),
            service=record,
        )
        adapter = HttpAdapter()

        async def run() -> ActionOutcome:
            intent = await adapter.prepare(ctx)
            return await adapter.apply(ctx, intent)

        return asyncio.run(run())


@pytest.fixture
def launch(redis_url: str, stream_prefix: str, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def _launch(**overrides: Any) -> Service:
        options = ServiceOptions.model_validate(
            {
                "port": free_port(),
                "redis_url": redis_url,
                "stream_prefix": stream_prefix,
                "data_dir": tmp_path / "data",
                "metrics_interval_s": 0.5,
                **overrides,
            }
        )
        service = Service(options, redis_url, tmp_path / "service.log")
        started.append(service)
        service.start()
        return service

    yield _launch
    for service in started:
        service.kill()


def _items(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"url": f"https://{prefix}{i}.example.org/page", "user_id": "u1"} for i in range(n)]


def test_crud_persists_across_restart_and_emits_bookmark_created(
    launch: Callable[..., Service], stream_prefix: str
) -> None:
    svc = launch()
    http = svc.http
    first = http.post(
        "/bookmarks",
        json={
            "url": "https://docs.temporal.io/",
            "title": "Temporal docs",
            "user_id": "ann",
            "category": "reading",
            "tags": ["workflows"],
        },
    )
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]
    assert http.get(f"/bookmarks/{first_id}").json()["title"] == "Temporal docs"
    patched = http.patch(f"/bookmarks/{first_id}", json={"title": "Temporal documentation"})
    assert patched.status_code == 200 and patched.json()["title"] == "Temporal documentation"
    duplicate = http.post("/bookmarks", json={"url": "https://docs.temporal.io/", "user_id": "ann"})
    assert duplicate.status_code == 409
    assert http.post("/bookmarks", json={"url": "not a url"}).status_code == 422
    second = http.post(
        "/bookmarks", json={"url": "https://redis.io/docs/streams", "title": "Redis streams"}
    )
    assert second.status_code == 201
    second_id = second.json()["id"]
    found = http.get("/bookmarks/search", params={"q": "documentation"}).json()
    assert [b["id"] for b in found] == [first_id]
    assert [b["id"] for b in http.get("/bookmarks/search", params={"tag": "workflows"}).json()] == [
        first_id
    ]
    assert http.get("/bookmarks").json()["total"] == 2
    assert http.delete(f"/bookmarks/{first_id}").status_code == 204
    assert http.get(f"/bookmarks/{first_id}").status_code == 404
    # the search cache was invalidated by the delete
    assert http.get("/bookmarks/search", params={"q": "documentation"}).json() == []

    old_pid = svc.pid
    svc.restart()
    assert svc.pid != old_pid
    page = svc.http.get("/bookmarks").json()
    assert page["total"] == 1 and page["items"][0]["id"] == second_id
    assert page["items"][0]["title"] == "Redis streams"

    created = svc.wait_for_events("BookmarkCreated", 2)
    assert svc.options.stream == f"{stream_prefix}:bookmark-api"
    assert [e.payload["url"] for e in created] == [
        "https://docs.temporal.io/",
        "https://redis.io/docs/streams",
    ]
    assert created[0].payload["user_id"] == "ann"
    assert created[0].payload["category"] == "reading"
    assert created[0].payload["bookmark_id"] == first_id
    assert all(e.source == e.service == "bookmark-api" for e in created)
    assert svc.wait_for_events("MetricReport")[0].payload["uptime"] >= 0


def test_slow_imports_exceed_the_deadline_and_scaling_heals_them(
    launch: Callable[..., Service],
) -> None:
    svc = launch(replicas=1, import_deadline_s=1.0, slow_item_ms=200)
    http = svc.http
    mixed = [*_items("a", 8), {"url": "ftp://nowhere"}, _items("a", 1)[0]]
    done = http.post("/bookmarks/import", json=mixed)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["imported"], body["skipped"], len(body["failed"])) == (8, 1, 1)
    assert body["failed"][0]["index"] == 8
    failed_event = svc.wait_for_events("ImportFailed")[0]
    assert failed_event.payload["failures"][0]["url"] == "ftp://nowhere"
    assert http.get("/bookmarks", params={"user_id": "u1"}).json()["total"] == 8

    assert http.post("/admin/faults", json={"fault": "slow_imports"}).json()["slow_imports"]
    started = time.monotonic()
    slow = http.post("/bookmarks/import", json=_items("b", 10))
    took = time.monotonic() - started
    assert slow.status_code == 504, slow.text
    assert took >= 1.0
    assert slow.json()["processed"] < 10
    timeout = svc.wait_for_events("ServiceTimeout")[0]
    assert timeout.payload["message"].startswith("Import timeout:")
    assert timeout.payload["deadline_s"] == 1.0 and timeout.payload["operation"] == "import"
    assert timeout.severity == Severity.WARNING

    scaled = svc.act("scale", replicas=16)
    assert scaled.data == {"key": "replicas", "previous": 1, "value": 16}
    assert http.get("/admin/scale").json()["replicas"] == 16
    started = time.monotonic()
    healed = http.post("/bookmarks/import", json=_items("c", 10))
    assert healed.status_code == 200, healed.text
    assert healed.json()["imported"] == 10
    # still 200 ms an item: sixteen at once is what brings it under the deadline
    assert 0.2 <= time.monotonic() - started < 1.0


def test_memory_leak_really_grows_rss_until_a_restart(launch: Callable[..., Service]) -> None:
    svc = launch(memory_budget_mb=200, leak_mb_per_s=40)
    assert svc.http.get("/health").status_code == 200
    before = psutil.Process(svc.pid).memory_info().rss
    reports_before = len(svc.events("MetricReport"))

    svc.http.post("/admin/faults", json={"fault": "memory_leak", "enabled": True})
    deadline = time.monotonic() + 20
    while svc.http.get("/health").status_code == 200:
        assert time.monotonic() < deadline, "health never went 503"
        time.sleep(0.2)
    after = psutil.Process(svc.pid).memory_info().rss
    assert after - before >= 60 * MB, (before / MB, after / MB)
    health = svc.http.get("/health").json()
    assert health["status"] == "unhealthy" and not health["checks"]["memory"]["ok"]
    assert health["faults"] == ["memory_leak"]

    unhealthy = svc.wait_for_events("ServiceUnhealthy")[0]
    assert unhealthy.payload["message"] == "memory usage over budget"
    assert unhealthy.payload["memory_usage"] >= 90
    time.sleep(0.6)  # one more metric report after the leak passed the limit
    usage = [e.payload["memory_usage"] for e in svc.events("MetricReport")[reports_before:]]
    assert max(usage) - usage[0] >= 25, usage
    assert max(usage) >= 90

    leaked_pid = svc.pid
    svc.restart()
    assert svc.http.get("/health").status_code == 200
    assert psutil.Process(svc.pid).memory_info().rss < after - 50 * MB
    assert not psutil.pid_exists(leaked_pid)


def test_bad_config_fails_requests_until_config_update_restores_it(
    launch: Callable[..., Service],
) -> None:
    svc = launch(admin_token="s3cret-admin")
    anonymous = httpx.get(svc.options.endpoint + "/admin/config")
    assert anonymous.status_code == 401
    wrong = httpx.get(
        svc.options.endpoint + "/admin/config", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    config = svc.http.get("/admin/config").json()
    assert config["db_pool_size"] == 4
    assert svc.http.post("/bookmarks", json={"url": "https://ok.example/"}).status_code == 201

    faults = svc.http.post("/admin/faults", json={"fault": "bad_config", "enabled": True}).json()
    assert faults["bad_config"] and faults["bad_config_previous"] == 4
    listed = svc.http.get("/bookmarks")
    assert listed.status_code == 500
    assert "pool exhausted" in listed.json()["error"]
    assert svc.http.post("/bookmarks", json={"url": "https://x.example/"}).status_code == 500
    health = svc.http.get("/health")
    assert health.status_code == 503 and not health.json()["checks"]["config"]["ok"]
    errors = svc.wait_for_events("ServiceError", 2)
    assert errors[0].payload["message"].startswith("request failed: database pool exhausted")
    assert {e.payload["path"] for e in errors} == {"/bookmarks"}
    assert errors[0].payload["status"] == 500 and errors[0].severity == Severity.ERROR
    logs = svc.act("log_analysis")
    assert any("pool exhausted" in line for line in logs.data["lines"])

    # the bad value is in config.json: a restart does not heal it
    svc.restart()
    assert svc.http.get("/bookmarks").status_code == 500
    assert svc.http.get("/health").status_code == 503

    assert svc.http.post("/admin/config", json={"key": "nope", "value": 1}).status_code == 422
    assert (
        svc.http.post("/admin/config", json={"key": "db_pool_size", "value": -1}).status_code == 422
    )
    healed = svc.act("config_update", key="db_pool_size", value=4)
    assert healed.data == {"key": "db_pool_size", "previous": 0, "value": 4}
    assert svc.http.get("/health").status_code == 200
    page = svc.http.get("/bookmarks")
    assert page.status_code == 200 and page.json()["total"] == 1
    assert svc.act("cache_clear").success


DISK_FULL = "request failed: database or disk is full"


def _post_until_full(svc: Service, prefix: str, limit: int = 400) -> tuple[int, httpx.Response]:
    """POST new bookmarks until one fails; (how many went in first, the failed response).

    URLs rise with the ids, so every index grows at its right edge: the rows fill the free
    room left in the file's last pages, and once one insert needs a new page, so do all the
    ones after it.
    """
    for stored in range(limit):
        answer = svc.http.post(
            "/bookmarks", json={"url": f"https://{prefix}{stored:04d}.example/", "user_id": "u1"}
        )
        if answer.status_code != 201:
            return stored, answer
    pytest.fail(f"{limit} bookmarks went in with the database capped")


def test_disk_full_fails_writes_while_reads_go_on_until_switched_off(
    launch: Callable[..., Service],
) -> None:
    svc = launch()
    http = svc.http
    assert http.post("/bookmarks", json={"url": "https://before.example/"}).status_code == 201
    state = http.post("/admin/faults", json={"fault": "disk_full", "enabled": True}).json()
    assert state["disk_full"] and state["disk_full_max_pages"] >= 2
    assert http.get("/admin/faults").json()["disk_full"]

    stored, failed = _post_until_full(svc, "fill")
    assert failed.status_code == 500 and failed.json() == {"error": DISK_FULL}
    # full now, not only once: later writes fail too, the import's the same way
    for i in range(3):
        again = http.post("/bookmarks", json={"url": f"https://more{i}.example/", "user_id": "u1"})
        assert again.status_code == 500 and again.json() == {"error": DISK_FULL}
    imported = http.post("/bookmarks/import", json=_items("imp", 5))
    assert imported.status_code == 500 and imported.json() == {"error": DISK_FULL}

    # reads go on, and so does /health (it only reads)
    listed = http.get("/bookmarks")
    assert listed.status_code == 200 and listed.json()["total"] == 1 + stored
    assert http.get("/bookmarks/search", params={"q": "before"}).json()[0]["id"] == 1
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["faults"] == ["disk_full"]

    errors = svc.wait_for_events("ServiceError", 5)
    assert {e.payload["message"] for e in errors} == {DISK_FULL}
    assert {e.payload["path"] for e in errors} == {"/bookmarks", "/bookmarks/import"}
    assert {e.payload["error_type"] for e in errors} == {"OperationalError"}
    assert all(e.severity == Severity.ERROR for e in errors)

    state = http.post("/admin/faults", json={"fault": "disk_full", "enabled": False}).json()
    assert not state["disk_full"] and state["disk_full_max_pages"] is None
    assert http.post("/bookmarks", json={"url": "https://more0.example/"}).status_code == 201
    assert http.post("/bookmarks/import", json=_items("imp", 5)).json()["imported"] == 5

    # the cap is process state: full again, then restarted, the service writes
    http.post("/admin/faults", json={"fault": "disk_full", "enabled": True})
    assert _post_until_full(svc, "refill")[1].json() == {"error": DISK_FULL}
    svc.restart()
    assert not svc.http.get("/admin/faults").json()["disk_full"]
    assert svc.http.post("/bookmarks", json={"url": "https://after.example/"}).status_code == 201


def test_crash_fault_exits_the_process_with_a_non_zero_code(
    launch: Callable[..., Service],
) -> None:
    svc = launch(crash_exit_code=7)
    answer = svc.http.post("/admin/faults", json={"fault": "crash", "enabled": True})
    assert answer.status_code == 202
    assert svc.proc is not None
    assert svc.proc.wait(timeout=10) == 7
    with pytest.raises(httpx.TransportError):
        svc.http.get("/health")


def test_definition_round_trips_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    options = ServiceOptions(
        port=8002,
        redis_url="redis://127.0.0.1:6382/0",
        data_dir=tmp_path,
        replicas=3,
        admin_token="t0ken",
    )
    definition = service_definition(options)
    argv = definition.restart_argv
    assert argv is not None and argv[1:3] == ["-m", "examples.bookmark_service"]
    # the token is in the environment and the encrypted credential, never in argv
    assert "t0ken" not in argv and definition.env == {"BOOKMARK_ADMIN_TOKEN": "t0ken"}
    assert parse_args(argv[3:]) == (options.model_copy(update={"admin_token": None}), False)
    monkeypatch.setenv("BOOKMARK_ADMIN_TOKEN", "t0ken")
    assert parse_args(argv[3:]) == (options, False)
    assert definition.endpoint == "http://127.0.0.1:8002"
    assert set(definition.admin_endpoints) == {
        "config_update",
        "cache_clear",
        "scale",
        "log_analysis",
    }
    assert definition.credentials is not None
    assert definition.credentials.get_secret_value() == "t0ken"

    assert main([*argv[3:], "--print-definition"]) == 0
    printed = ServiceDefinition.model_validate_json(capsys.readouterr().out)
    assert printed == definition
    assert printed.credentials is not None
    assert printed.credentials.get_secret_value() == "t0ken"
    readme = (REPO_ROOT / "examples" / "bookmark_service" / "README.md").read_text()
    for name in ServiceOptions.model_fields:
        assert f"`--{name.replace('_', '-')}`" in readme, f"--{name} is not in the README"
    with pytest.raises(SystemExit) as exited:
        parse_args(["--port", "0", "--redis-url", "r", "--data-dir", "d"])
    assert exited.value.code == 2


async def test_slots_resize_while_held() -> None:
    """What scale and db_pool_size do: shrinking admits nobody new, growing wakes waiters."""
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.01)
    assert slots.waiting == 1
    slots.resize(0)
    slots.release()
    await asyncio.sleep(0.01)
    assert not waiter.done() and slots.in_use == 0
    with pytest.raises(TimeoutError):
        await slots.acquire(timeout=0.05)
    slots.resize(2)
    await asyncio.wait_for(waiter, 1)
    await slots.acquire(timeout=0.05)
    assert (slots.in_use, slots.waiting) == (2, 0)
