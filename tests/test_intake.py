"""Intake on `aiops api`, against the real servers: Alertmanager, Grafana, CloudEvents and
PagerDuty bodies become envelope events on events:api with the documented mapping; a bad
body names its field and writes nothing; every route needs an operator; and a real
Alertmanager (Debian's prometheus-alertmanager) delivers firing and resolved alerts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import uvicorn
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.conversion import to_binary as v1_to_binary
from cloudevents.v1.http import CloudEvent as V1CloudEvent
from temporalio.testing import WorkflowEnvironment
from test_api import api_client, api_settings, bearer, token

from aiops.auth import Role
from aiops.config import Settings
from aiops.devstack.ports import free_port
from aiops.events.envelope import Event
from workers.api import create_app
from workers.api.events import API_STREAM

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
OPERATOR = bearer(token(Role.OPERATOR, sub="alert-sender"))
ROUTES = ("/intake/alertmanager", "/intake/grafana", "/intake/cloudevents", "/intake/pagerduty")


@pytest.fixture
def settings(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, tmp_path: Path
) -> Settings:
    return api_settings(
        database_url, redis_url, temporal_env.client.service_client.config.target_host, tmp_path
    )


@pytest_asyncio.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


class Stream:
    """events:api from where it ended when the test began; other tests write there too, so
    callers pick their own events by a marker."""

    def __init__(self, redis: aioredis.Redis, start: str) -> None:
        self.redis, self.start = redis, start

    @classmethod
    async def open(cls, redis: aioredis.Redis) -> Stream:
        newest = cast(list[tuple[bytes, Any]], await redis.xrevrange(API_STREAM, count=1))
        return cls(redis, newest[0][0].decode() if newest else "0-0")

    async def events(self, marker: str) -> list[Event]:
        rows = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrange(API_STREAM, min=f"({self.start}"),
        )
        found = [Event.model_validate_json(fields[b"event"]) for _, fields in rows]
        return [e for e in found if marker in e.model_dump_json()]

    async def wait(self, marker: str, count: int, timeout: float = 30) -> list[Event]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = await self.events(marker)
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.1)


def v4_body(marker: str) -> dict[str, Any]:
    """A notification as Alertmanager 0.25 posts it: two alerts of one group."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname=~"^(?:.*)$"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {"env": "prod"},
        "commonLabels": {"env": "prod", "run": marker},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "HighErrorRate",
                    "service": "checkout",
                    "job": "checkout-api",
                    "instance": "10.0.0.5:8080",
                    "severity": "critical",
                    "env": "prod",
                    "run": marker,
                },
                "annotations": {
                    "summary": "5xx above 5% on checkout",
                    "description": "error ratio 0.071 over 5m",
                    "runbook_url": "https://runbooks.example/checkout",
                },
                "startsAt": "2024-05-01T10:00:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=rate%28x%29",
                "fingerprint": "a1b2c3d4e5f60718",
            },
            {
                "status": "resolved",
                "labels": {
                    "alertname": "Disk Usage > 90%",
                    "job": "node",
                    "instance": "db1:9100",
                    "severity": "warn",
                    "env": "prod",
                    "run": marker,
                },
                "annotations": {"description": "disk on db1 is 93% full"},
                "startsAt": "2024-05-01T09:00:00Z",
                "endsAt": "2024-05-01T09:30:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=disk",
                "fingerprint": "0f0e0d0c0b0a0908",
            },
        ],
    }


async def test_alertmanager_v4_becomes_one_event_per_alert(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    body = v4_body(marker)
    answer = await api.post("/intake/alertmanager", json=body, headers=OPERATOR)
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 2
    events = await stream.events(marker)
    assert [str(e.id) for e in events] == answer.json()["events"]
    firing, resolved = events
    assert (firing.event_type, firing.source, firing.service, firing.severity) == (
        "HighErrorRate",
        "alertmanager",
        "checkout",
        "critical",
    )
    assert firing.timestamp == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert firing.payload == {
        "message": "5xx above 5% on checkout",
        "labels": body["alerts"][0]["labels"],
        "annotations": body["alerts"][0]["annotations"],
        "generator_url": "http://prometheus:9090/graph?g0.expr=rate%28x%29",
        "alert": {
            "source": "alertmanager",
            "status": "firing",
            "fingerprint": "a1b2c3d4e5f60718",
            "starts_at": "2024-05-01T10:00:00.123456+00:00",
            "ends_at": None,  # Go's zero time: no end yet
            "receiver": "aiops",
            "external_url": "http://alertmanager.example:9093",
        },
    }
    # a name that is no type name is made one; service falls back to job; warn is warning
    assert (resolved.event_type, resolved.service, resolved.severity) == (
        "Disk_Usage_90",
        "node",
        "warning",
    )
    assert resolved.payload["message"] == "disk on db1 is 93% full"  # no summary
    assert resolved.payload["alert"]["status"] == "resolved"
    assert resolved.payload["alert"]["ends_at"] == "2024-05-01T09:30:00+00:00"
    # Alertmanager sending the same notification again (a retry) yields the same ids, so
    # the event store keeps it once
    again = await api.post("/intake/alertmanager", json=body, headers=OPERATOR)
    assert again.json()["events"] == answer.json()["events"]


async def test_mapping_follows_the_settings(settings: Settings, redis: aioredis.Redis) -> None:
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    custom = settings.model_copy(
        update={"intake_service_labels": "team,job", "intake_message_annotations": "runbook_url"}
    )
    body = v4_body(marker)
    body["alerts"][0]["labels"]["team"] = "payments"
    async with api_client(custom) as api:
        answer = await api.post("/intake/alertmanager", json=body, headers=OPERATOR)
    assert answer.status_code == 202, answer.text
    first, second = await stream.events(marker)
    assert (first.service, first.payload["message"]) == (
        "payments",
        "https://runbooks.example/checkout",
    )
    assert (second.service, second.payload["message"]) == ("node", "Disk Usage > 90%")


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (lambda b: b["alerts"][1].update(status="burning"), ["body", "alerts", 1, "status"]),
        (lambda b: b["alerts"][1]["labels"].update(job=7), ["body", "alerts", 1, "labels", "job"]),
        (lambda b: b.pop("status"), ["body", "status"]),
        # valid for Alertmanager, but no envelope holds a 300-character service
        (
            lambda b: b["alerts"][1]["labels"].update(job="j" * 300),
            ["body", "alerts", 1, "service"],
        ),
    ],
)
async def test_a_bad_body_names_the_field_and_writes_nothing(
    api: httpx.AsyncClient, redis: aioredis.Redis, change: Any, loc: list[object]
) -> None:
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    body = v4_body(marker)
    change(body)
    answer = await api.post("/intake/alertmanager", json=body, headers=OPERATOR)
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [loc]
    # alerts[0] was valid: it is not written either
    assert await stream.events(marker) == []
    broken = await api.post("/intake/grafana", content=b'{"alerts": [', headers=OPERATOR)
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"


async def test_every_intake_route_needs_an_operator(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    viewer = token(Role.VIEWER, sub="dashboard")
    pd_body = {
        "routing_key": "0123456789abcdef0123456789abcdef",
        "event_action": "trigger",
        "payload": {"summary": marker, "source": "db1", "severity": "error"},
    }
    for route in (*ROUTES, "/v2/enqueue"):
        body = pd_body if "pagerduty" in route or "enqueue" in route else v4_body(marker)
        none = await api.post(route, json=body)
        assert none.status_code == 401, (route, none.text)
        assert none.headers["www-authenticate"] == "Bearer"
        forged = await api.post(route, json=body, headers=bearer("not-a-token"))
        assert forged.status_code == 401, route
        seen = await api.post(route, json=body, headers=bearer(viewer))
        assert seen.status_code == 403, (route, seen.text)
        assert "operator" in seen.json()["detail"]
    # a PagerDuty sender without a header: its routing_key must be an operator's token
    as_key = await api.post("/v2/enqueue", json={**pd_body, "routing_key": viewer})
    assert as_key.status_code == 403
    assert (await stream.events(marker)) == []
    operator_key = token(Role.OPERATOR, sub="pd-sender")
    accepted = await api.post("/v2/enqueue", json={**pd_body, "routing_key": operator_key})
    assert accepted.status_code == 202, accepted.text
    (event,) = await stream.events(marker)
    assert operator_key not in event.model_dump_json()  # the credential is never stored


async def test_grafana_contact_point(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """The body from Grafana's webhook notifier documentation (version "1")."""
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    body = {
        "receiver": "My Super Webhook",
        "status": "firing",
        "orgId": 1,
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
                "annotations": {
                    "description": "The system has high memory usage",
                    "runbook_url": "https://myrunbook.com/runbook/1234",
                    "summary": f"This alert was triggered for zone us-1 {marker}",
                },
                "startsAt": "2021-10-12T09:51:03.157076+02:00",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
                "fingerprint": "c6eadffa33fcdf37",
                "silenceURL": "https://play.grafana.org/alerting/silence/new?x=1",
                "dashboardURL": "",
                "panelURL": "",
                "values": {"B": 44.23943737541908, "C": 1},
                "valueString": "[ var='B' labels={} value=44.2 ]",
            }
        ],
        "groupLabels": {},
        "commonLabels": {"team": "blue"},
        "commonAnnotations": {},
        "externalURL": "https://play.grafana.org/",
        "version": "1",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "title": "[FIRING:1]  (blue)",
        "state": "alerting",
        "message": "**Firing**",
    }
    answer = await api.post("/intake/grafana", json=body, headers=OPERATOR)
    assert answer.status_code == 202, answer.text
    (event,) = await stream.events(marker)
    assert (event.event_type, event.source, event.service, event.severity) == (
        "High_memory_usage",
        "grafana",
        None,  # none of service, job, instance
        None,
    )
    assert event.timestamp == datetime(2021, 10, 12, 7, 51, 3, 157076, tzinfo=UTC)
    assert event.payload["alert"] == {
        "source": "grafana",
        "status": "firing",
        "fingerprint": "c6eadffa33fcdf37",
        "starts_at": "2021-10-12T07:51:03.157076+00:00",
        "ends_at": None,
        "receiver": "My Super Webhook",
        "external_url": "https://play.grafana.org/",
    }
    assert event.payload["grafana"] == {
        "org_id": 1,
        "values": {"B": 44.23943737541908, "C": 1},
        "value_string": "[ var='B' labels={} value=44.2 ]",
        "silence_url": "https://play.grafana.org/alerting/silence/new?x=1",
    }


async def test_cloudevents_from_sdk_clients_in_both_modes(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    structured_id = str(uuid.uuid4())
    structured = to_structured_event(
        CloudEvent(
            {
                "type": "com.example.order.failed",
                "source": "https://shop.example/orders",
                "subject": "checkout",
                "id": structured_id,
                "time": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
                "datacontenttype": "application/json",
                "severity": "err",
            },
            {"order": 42, "marker": marker},
        )
    )
    binary = to_binary_event(
        CloudEvent(
            {
                "type": "com.example.disk.full",
                "source": "/hosts/db1",
                "id": "evt-0001",
                "datacontenttype": "text/plain",
            },
            f"disk full {marker}",
        )
    )
    # the SDK's v1 compatibility API (what cloudevents 1.x clients call)
    v1_headers, v1_body = v1_to_binary(
        V1CloudEvent(
            {"type": "legacy.ping", "source": "legacy-app", "subject": "legacy"},
            {"marker": marker},
        )
    )
    answers = []
    for headers, content in (
        (structured.headers, structured.body),
        (binary.headers, binary.body),
        (v1_headers, v1_body),
    ):
        answer = await api.post(
            "/intake/cloudevents", content=content, headers={**headers, **OPERATOR}
        )
        assert answer.status_code == 202, answer.text
        answers += answer.json()["events"]
    order, disk, legacy = await stream.events(marker)
    assert [str(e.id) for e in (order, disk, legacy)] == answers
    assert order.id == uuid.UUID(structured_id)  # a UUID id is the event id
    assert (order.event_type, order.source, order.service, order.severity) == (
        "com.example.order.failed",
        "https://shop.example/orders",
        "checkout",
        "error",
    )
    assert order.timestamp == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert order.payload == {"order": 42, "marker": marker, "cloudevent_id": structured_id}
    assert (disk.event_type, disk.source, disk.service) == (
        "com.example.disk.full",
        "/hosts/db1",
        None,
    )
    assert disk.payload == {"data": f"disk full {marker}", "cloudevent_id": "evt-0001"}
    assert (legacy.event_type, legacy.service) == ("legacy.ping", "legacy")
    # a batch: the SDK reads each element
    batch = [
        json.loads(
            to_structured_event(
                CloudEvent({"type": f"batch.n{i}", "source": "batcher"}, {"m": marker})
            ).body
        )
        for i in range(3)
    ]
    answer = await api.post(
        "/intake/cloudevents",
        content=json.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json", **OPERATOR},
    )
    assert answer.status_code == 202 and answer.json()["accepted"] == 3
    # refused: an event without a type (nothing of the batch is written), a reserved source
    stream = await Stream.open(redis)
    batch[2].pop("type")
    bad = await api.post(
        "/intake/cloudevents",
        content=json.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json", **OPERATOR},
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", 2, "type"]
    headers = dict(binary.headers, **{"ce-source": "aiops-monitor"})
    reserved = await api.post(
        "/intake/cloudevents", content=binary.body, headers={**headers, **OPERATOR}
    )
    assert reserved.status_code == 403, reserved.text
    assert await stream.events(marker) == []


async def test_pagerduty_senders_get_pagerdutys_answers(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    trigger: dict[str, Any] = {
        "routing_key": "0123456789abcdef0123456789abcdef",
        "event_action": "trigger",
        "payload": {
            "summary": f"Disk full on db1 {marker}",
            "source": "db1.example",
            "severity": "critical",
            "component": "postgres",
            "group": "prod-db",
            "class": "disk full",
            "custom_details": {"free_bytes": 0},
        },
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.example.com",
    }
    answer = await api.post("/v2/enqueue", json=trigger, headers=OPERATOR)
    assert answer.status_code == 202, answer.text
    dedup_key = answer.json()["dedup_key"]
    assert answer.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": dedup_key,
    }
    assert re.fullmatch(r"[0-9a-f]{32}", dedup_key)  # generated as PagerDuty does
    resolve = {
        "routing_key": trigger["routing_key"],
        "event_action": "resolve",
        "dedup_key": dedup_key,
    }
    done = await api.post("/intake/pagerduty", json=resolve, headers=OPERATOR)
    assert done.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": dedup_key,
    }
    fired = (await stream.events(marker))[0]
    assert (fired.event_type, fired.source, fired.service, fired.severity) == (
        "disk_full",
        "pagerduty",
        "postgres",
        "critical",
    )
    assert fired.payload["message"] == f"Disk full on db1 {marker}"
    assert fired.payload["alert"]["status"] == "firing"
    assert fired.payload["alert"]["fingerprint"] == dedup_key
    assert fired.payload["custom_details"] == {"free_bytes": 0}
    assert fired.payload["generator_url"] == "https://monitoring.example.com"
    resolved = [e for e in await stream.events(dedup_key) if e.id != fired.id]
    assert [e.payload["alert"]["status"] for e in resolved] == ["resolved"]
    # invalid events: PagerDuty's 400 shape, nothing written
    stream = await Stream.open(redis)
    for body, field in (
        ({**trigger, "event_action": "explode"}, "event_action"),
        ({**trigger, "payload": {**trigger["payload"], "severity": "bad"}}, "payload.severity"),
        ({"routing_key": "k", "event_action": "acknowledge"}, "dedup_key"),
    ):
        bad = await api.post("/v2/enqueue", json=body, headers=OPERATOR)
        assert bad.status_code == 400, bad.text
        reply = bad.json()
        assert set(reply) == {"status", "message", "errors"}
        assert (reply["status"], reply["message"]) == ("invalid event", "Event object is invalid")
        assert any(field in error for error in reply["errors"]), reply
    assert await stream.events(marker) == []


# --- the real Alertmanager -------------------------------------------------------------


def _alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or (
        ALERTMANAGER_BIN if os.path.exists(ALERTMANAGER_BIN) else None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus-alertmanager is missing; .ci/run installs it with apt")
        pytest.skip(
            "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"
        )
    return found


def _start_alertmanager(
    binary: str, config: Path, storage: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # one instance, no gossip port
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not answer")
            await asyncio.sleep(0.1)


async def test_a_real_alertmanager_delivers_firing_and_resolved(
    settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    binary = _alertmanager_binary()
    marker = uuid.uuid4().hex
    stream = await Stream.open(redis)
    api_port, am_port = free_port(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=api_port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "route": {
                    "receiver": "aiops",
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "aiops",
                        "webhook_configs": [
                            {
                                "url": f"http://127.0.0.1:{api_port}/intake/alertmanager",
                                "send_resolved": True,
                                "http_config": {
                                    "authorization": {
                                        "type": "Bearer",
                                        "credentials": token(Role.OPERATOR, sub="alertmanager"),
                                    }
                                },
                            }
                        ],
                    }
                ],
            }
        )
    )
    log = tmp_path / "alertmanager.log"
    alertmanager = _start_alertmanager(binary, config, tmp_path / "am-data", am_port, log)
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
        am = f"http://127.0.0.1:{am_port}"
        await _wait_http(f"{am}/-/ready")
        starts = datetime.now(UTC) - timedelta(minutes=1)
        alert = {
            "labels": {
                "alertname": "CheckoutLatencyHigh",
                "service": "checkout",
                "severity": "critical",
                "run": marker,
            },
            "annotations": {"summary": "p99 latency above 2s", "description": "p99 is 3.1s"},
            "startsAt": starts.isoformat(),
            "generatorURL": "http://prometheus:9090/graph?g0.expr=latency",
        }
        async with httpx.AsyncClient(base_url=am) as client:
            posted = await client.post("/api/v2/alerts", json=[alert])
            assert posted.status_code == 200, posted.text
            (firing,) = await stream.wait(marker, 1)
            assert (firing.event_type, firing.source, firing.service, firing.severity) == (
                "CheckoutLatencyHigh",
                "alertmanager",
                "checkout",
                "critical",
            )
            assert firing.payload["message"] == "p99 latency above 2s"
            assert firing.payload["labels"] == alert["labels"]
            assert firing.payload["annotations"] == alert["annotations"]
            assert firing.payload["generator_url"] == alert["generatorURL"]
            block = firing.payload["alert"]
            assert (block["source"], block["status"], block["receiver"]) == (
                "alertmanager",
                "firing",
                "aiops",
            )
            assert re.fullmatch(r"[0-9a-f]{16}", block["fingerprint"])  # Alertmanager's own
            assert block["external_url"].startswith("http")
            assert abs(firing.timestamp - starts) < timedelta(seconds=1)
            # the same alert, ended a moment ago: Alertmanager sends it resolved
            ended = {**alert, "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
            posted = await client.post("/api/v2/alerts", json=[ended])
            assert posted.status_code == 200, posted.text
            events = await stream.wait(marker, 2)
        assert len(events) == 2, log.read_text()[-2000:]
        resolved = events[1]
        assert resolved.payload["alert"]["status"] == "resolved"
        assert resolved.payload["alert"]["fingerprint"] == block["fingerprint"]
        assert resolved.payload["alert"]["ends_at"] is not None
        assert (resolved.event_type, resolved.service) == ("CheckoutLatencyHigh", "checkout")
    finally:
        alertmanager.terminate()
        alertmanager.wait(timeout=30)
        server.should_exit = True
        await serving
