"""Notifications on real channels: an aiosmtpd SMTP server gets the approval e-mail whose
link approves the step through the API (once), a local HTTP receiver gets the JSON webhook,
a channel that is down is audited as failed and breaks nothing, and every send is audited."""

from __future__ import annotations

import asyncio
import email
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiops_worker import aiops_worker
from aiosmtpd.controller import Controller
from audit_tampering import as_owner, entry
from cryptography.fernet import Fernet
from known_problems import import_timeout_incident, seed_import_timeout
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from test_api import api_client

from activities.notify import NotifyActivities
from aiops.audit import AuditLog
from aiops.auth.keys import approval_key
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.devstack.ports import free_port
from aiops.models.healing import HealingStatus
from aiops.models.incident import IncidentStatus
from aiops.notify import LinkRefused, LinkSigner, NotificationKind, NotifyRequest, link_key
from aiops.notify.links import derive_link_key
from aiops.notify.sender import redact, split_urls
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry
from workflows.incident import IncidentWorkflow

SECRET = Fernet.generate_key().decode()
JWT = "notify-test-jwt-" + uuid.uuid4().hex


# --- real receivers --------------------------------------------------------------------


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    box = _Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], got
    finally:
        server.shutdown()
        server.server_close()


def _settings(database_url: str, redis_url: str, home: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        tracing="off",
        secret_key=SecretStr(SECRET),
        jwt_secret=SecretStr(JWT),
        home=home,
        public_url="http://api",
        web_ui_url="http://ui.example:8233",
        **extra,
    )


def _mailto(port: int, to: str) -> str:
    return f"mailto://127.0.0.1:{port}?from=aiops@example.com&to={to}&mode=insecure"


def _text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError("no text part")


def _links(text: str) -> dict[str, str]:
    found = dict(re.findall(r"(Approve|Reject):\s+http://api(/approve/[A-Za-z0-9._-]+)", text))
    return {k.lower(): v for k, v in found.items()}


async def _notify_rows(pool: asyncpg.Pool, workflow_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT decision, details FROM audit_log WHERE action = 'notify'"
            " AND workflow_id = $1 ORDER BY seq",
            workflow_id,
        )
    )


async def _wait(predicate: Any, what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# --- the approval e-mail, its link, the webhook, the channel that is down ---------------


async def test_approval_email_link_approves_once_and_a_down_channel_is_audited(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    smtp: tuple[int, _Mailbox],
    webhook: tuple[int, list[dict[str, Any]]],
) -> None:
    smtp_port, mailbox = smtp
    hook_port, hooks = webhook
    dead = free_port()
    urls = ",".join(
        [
            _mailto(smtp_port, "alice@example.com"),
            f"json://127.0.0.1:{hook_port}/aiops",
            f"json://127.0.0.1:{dead}/down",
        ]
    )
    address = temporal_env.client.service_client.config.target_host
    settings = _settings(
        database_url, redis_url, tmp_path, notify_urls=urls, temporal_address=address
    )
    queue = f"q-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url)
    acts = NotifyActivities(pool, ServiceRegistry(pool, Fernet(SECRET)), AuditLog(pool), settings)
    try:
        async with aiops_worker(
            temporal_env.client,
            queue,
            database_url,
            redis_url,
            approval_key=approval_key(settings),
            approvals="signed",
        ) as kg:
            await seed_import_timeout(kg, "scale", "Add import workers")  # scale is critical
            wid = f"incident-notify-{uuid.uuid4().hex[:8]}"
            handle = await temporal_env.client.start_workflow(
                IncidentWorkflow.run,
                import_timeout_incident(cool_down_s=1),
                id=wid,
                task_queue=queue,
            )

            async def waiting() -> bool:
                return (await handle.query(IncidentWorkflow.status)).pending_approval == "1"

            await _wait(waiting, "the approval wait")
            incident: IncidentStatus = await handle.query(IncidentWorkflow.status)
            healing_id = incident.healing_workflow_id
            assert healing_id is not None
            healing = await temporal_env.client.get_workflow_handle(healing_id).query(
                "status", result_type=HealingStatus
            )
            record = next(s for s in healing.steps if s.step == "1")
            assert record.decision is not None and record.decision.decision_id
            request = NotifyRequest(
                kind=NotificationKind.APPROVAL_REQUESTED,
                key="approval-requested:1",
                incident_id=wid,
                workflow_id=healing_id,
                service=healing.plan.service,
                step="1",
                action=record.action,
                decision_id=record.decision.decision_id,
                why=record.decision.reason,
                plan_description=healing.plan.description,
                approval_timeout_s=900,
            )
            result = await acts.send(request)

            # two channels got it, the one that is down failed without raising
            assert (result.sent, result.failed) == (2, 1)
            down = [c for c in result.channels if not c.ok]
            assert len(down) == 1 and str(dead) in down[0].channel and down[0].error
            assert {c.recipient for c in result.channels if c.ok} == {
                "alice@example.com",
                "channel:json",
            }
            # the e-mail: everything to decide, and links made for alice
            assert len(mailbox.messages) == 1
            rcpt, mail = mailbox.messages[0]
            assert rcpt == ["alice@example.com"]
            assert "Approval needed on import-service" in str(mail["Subject"])
            text = _text(mail)
            for needed in (wid, "import-service", "Step 1", "scale", "Add import workers"):
                assert needed in text, needed
            assert record.decision.reason in text
            assert f"http://ui.example:8233/namespaces/default/workflows/{wid}" in text
            links = _links(text)
            assert set(links) == {"approve", "reject"}
            claims = LinkSigner(link_key(settings)).verify(links["approve"].split("/")[-1])
            assert (claims.recipient, claims.step, claims.verdict) == (
                "alice@example.com",
                "1",
                "approve",
            )
            assert claims.workflow_id == healing_id
            # the webhook got the incident id
            assert len(hooks) == 1 and hooks[0]["path"] == "/aiops"
            assert wid in hooks[0]["body"]["message"]
            # each send is audited; the retried activity sends nothing twice
            rows = await _notify_rows(pool, healing_id)
            assert sorted(r["decision"] for r in rows) == ["failed", "sent", "sent"]
            assert all(r["details"]["kind"] == "approval_requested" for r in rows)
            assert not any(
                "127.0.0.1:" + str(dead) + "/down?" in json.dumps(r["details"]) for r in rows
            )
            again = await acts.send(request)
            assert (again.sent, again.failed) == (0, 1)
            assert sum(c.skipped for c in again.channels) == 2
            assert len(mailbox.messages) == 1 and len(hooks) == 1
            rows = await _notify_rows(pool, healing_id)
            assert sorted(r["decision"] for r in rows) == ["failed", "failed", "sent", "sent"]

            async with api_client(settings) as api:
                # opening the link shows the step and changes nothing
                page = await api.get(links["approve"])
                assert page.status_code == 200, page.text
                for needed in ("Approve step 1", "import-service", "scale", "alice@example.com"):
                    assert needed in page.text, needed
                assert "<form method='post'>" in page.text
                assert page.headers["cache-control"] == "no-store"
                assert (await handle.query(IncidentWorkflow.status)).pending_approval == "1"
                # confirming approves, as alice
                done = await api.post(links["approve"], data={"reason": "window open"})
                assert done.status_code == 200, done.text
                assert "step 1 approved by alice@example.com" in done.text
                result_of_incident = await asyncio.wait_for(handle.result(), 60)
                assert result_of_incident.outcome == "healed"
                # the same link again: used, nothing happens
                reused = await api.post(links["approve"])
                assert reused.status_code == 410 and "already used" in reused.text
                assert "Nothing was changed" in reused.text
                assert (await api.get(links["approve"])).status_code == 410
                # the reject link: the step is no longer pending
                late = await api.get(links["reject"])
                assert late.status_code == 409 and "no longer waiting" in late.text
                late_post = await api.post(links["reject"])
                assert late_post.status_code == 409 and "Nothing was changed" in late_post.text
                # a forged or tampered link is not one
                bad = await api.get(links["reject"][:-3] + "abc")
                assert bad.status_code == 400 and "not a valid approval link" in bad.text
            assert result_of_incident.outcome == "healed"
            audit = await AuditLog(pool).list(healing_id)
            decided = [a for a in audit if a.action != "notify"]
            assert any("alice@example.com" in a.model_dump_json() for a in decided)
            assert (await AuditLog(pool).verify()).ok
    finally:
        await pool.close()


# --- channels, recipients, overrides, failures ------------------------------------------


def _approval(**extra: Any) -> NotifyRequest:
    base: dict[str, Any] = {
        "kind": NotificationKind.APPROVAL_REQUESTED,
        "key": f"approval-requested:{uuid.uuid4().hex[:6]}",
        "incident_id": "incident-abc",
        "workflow_id": "incident-abc-healing",
        "service": "billing",
        "step": "2",
        "action": ActionSpec(action_type="restart", target="billing"),
        "decision_id": "d-1",
        "why": "billing is a critical service",
        "plan_description": "Restart billing",
        "approval_timeout_s": 600,
    }
    return NotifyRequest(**(base | extra))


async def test_each_mail_recipient_gets_links_of_their_own_and_names_name_the_rest(
    pool: asyncpg.Pool,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    smtp: tuple[int, _Mailbox],
    webhook: tuple[int, list[dict[str, Any]]],
) -> None:
    smtp_port, mailbox = smtp
    hook_port, hooks = webhook
    urls = (
        f"{_mailto(smtp_port, 'alice@example.com,bob@example.com')}, "
        f"oncall-carol=json://127.0.0.1:{hook_port}/carol"
    )
    settings = _settings(database_url, redis_url, tmp_path, notify_urls=urls)
    acts = NotifyActivities(pool, ServiceRegistry(pool, Fernet(SECRET)), AuditLog(pool), settings)
    result = await acts.send(_approval())
    assert result.sent == 3 and result.failed == 0
    assert sorted(r for rcpt, _ in mailbox.messages for r in rcpt) == [
        "alice@example.com",
        "bob@example.com",
    ]
    signer = LinkSigner(link_key(settings))
    for rcpt, mail in mailbox.messages:
        text = _text(mail)
        assert "bob@example.com" not in text or rcpt == ["bob@example.com"]
        claims = signer.verify(_links(text)["approve"].split("/")[-1])
        assert [claims.recipient] == rcpt
    carol = signer.verify(_links(hooks[0]["body"]["message"])["reject"].split("/")[-1])
    assert (carol.recipient, carol.verdict, carol.decision_id) == ("oncall-carol", "reject", "d-1")
    # the reminder's links expire with the first ones, not later
    ends = datetime.now(UTC) + timedelta(minutes=5)
    reminder = _approval(kind=NotificationKind.APPROVAL_REMINDER, expires_at=ends)
    await acts.send(reminder)
    late = signer.verify(_links(hooks[-1]["body"]["message"])["approve"].split("/")[-1])
    assert abs((late.expires_at - ends).total_seconds()) < 1.5


async def test_service_override_no_channels_healed_off_and_all_down(
    pool: asyncpg.Pool,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    webhook: tuple[int, list[dict[str, Any]]],
) -> None:
    hook_port, hooks = webhook
    registry = ServiceRegistry(pool, Fernet(SECRET))
    await registry.register(
        ServiceDefinition(
            name="billing",
            endpoint="http://127.0.0.1:9",
            metadata={"notify": [f"json://127.0.0.1:{hook_port}/billing-team"]},
        )
    )
    quiet = _settings(database_url, redis_url, tmp_path)  # no AIOPS_NOTIFY_URLS
    acts = NotifyActivities(pool, registry, AuditLog(pool), quiet)
    failed = NotificationKind.REMEDIATION_FAILED
    told = await acts.send(_approval(kind=failed, detail="step 2 failed; step 1 compensated"))
    assert told.sent == 1 and hooks[0]["path"] == "/billing-team"
    assert "step 1 compensated" in hooks[0]["body"]["message"]
    assert "Approve:" not in hooks[0]["body"]["message"]  # links only for approvals
    # a service without overrides and no channels: nothing sent, no error
    nothing = await acts.send(_approval(service="other"))
    assert nothing.sent == 0 and nothing.channels == [] and "AIOPS_NOTIFY_URLS" in nothing.note
    # healed is off by default
    healed = await acts.send(_approval(kind=NotificationKind.HEALED))
    assert healed.sent == 0 and "AIOPS_NOTIFY_HEALED" in healed.note and len(hooks) == 1
    # every channel down: the activity fails (Temporal retries it), and it is audited
    dead = free_port()
    down = _settings(
        database_url,
        redis_url,
        tmp_path,
        notify_urls=f"json://user:hunter2pass@127.0.0.1:{dead}/x,notaservice://nothing",
    )
    broken = NotifyActivities(pool, ServiceRegistry(pool, Fernet(SECRET)), AuditLog(pool), down)
    request = _approval(service="other", workflow_id="wf-down")
    with pytest.raises(ApplicationError, match="every notification channel failed"):
        await broken.send(request)
    rows = await _notify_rows(pool, "wf-down")
    assert [r["decision"] for r in rows] == ["failed", "failed"]
    assert "hunter2pass" not in json.dumps([dict(r) for r in rows], default=str)


def test_link_tokens_and_redaction(tmp_path: Path) -> None:
    settings = Settings(secret_key=SecretStr(SECRET), home=tmp_path, tracing="off")
    key = link_key(settings)
    assert key != approval_key(settings)  # a link is never a grant
    signer = LinkSigner(key)
    now = datetime.now(UTC)
    token = signer.sign(
        workflow_id="wf",
        incident_id="incident-x",
        step="1",
        decision_id="d",
        verdict="approve",
        recipient="alice@example.com",
        service="svc",
        expires_at=now + timedelta(minutes=1),
    )
    assert signer.verify(token).recipient == "alice@example.com"
    with pytest.raises(LinkRefused, match="not a valid"):
        LinkSigner(derive_link_key(b"another server's secret key")).verify(token)
    with pytest.raises(LinkRefused, match="expired"):
        LinkSigner(key, leeway_s=0).verify(
            signer.sign(
                workflow_id="wf",
                incident_id="incident-x",
                step="1",
                decision_id="d",
                verdict="reject",
                recipient="bob",
                service=None,
                expires_at=now - timedelta(seconds=10),
                now=now - timedelta(minutes=5),
            )
        )
    with pytest.raises(LinkRefused, match="already ended"):
        signer.sign(
            workflow_id="wf",
            incident_id="i",
            step="1",
            decision_id="d",
            verdict="approve",
            recipient="x",
            service=None,
            expires_at=now - timedelta(seconds=1),
        )
    assert split_urls("mailto://h?to=a@x.com,b@x.com, json://h/p\nn=slack://a/b/c") == [
        "mailto://h?to=a@x.com,b@x.com",
        "json://h/p",
        "n=slack://a/b/c",
    ]
    shown = redact("json://user:s3cretpassword@hooks.example/T0KENT0KENT0KEN?+X-Token=abcdefgh")
    assert "s3cretpassword" not in shown and "T0KENT0KENT0KEN" not in shown
    assert "abcdefgh" not in shown and shown.startswith("json://user:****@hooks.example")


async def test_a_message_goes_once_when_the_audit_log_refuses_its_rows(
    pool: asyncpg.Pool,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    webhook: tuple[int, list[dict[str, Any]]],
) -> None:
    # The audit log's head row was changed: every append is refused (AuditKeyMismatch),
    # which is exactly when audit_broken is sent. The message went out; a failed activity
    # would be retried by Temporal and send it again, and again.
    hook_port, hooks = webhook
    audit = AuditLog(pool)
    await audit.append(entry(1))
    await as_owner(database_url, "UPDATE audit_log SET target = 'forged' WHERE seq = 1")
    settings = _settings(
        database_url, redis_url, tmp_path, notify_urls=f"json://127.0.0.1:{hook_port}/oncall"
    )
    acts = NotifyActivities(pool, ServiceRegistry(pool, Fernet(SECRET)), audit, settings)
    request = NotifyRequest(
        kind=NotificationKind.AUDIT_BROKEN,
        key="audit-broken:run:1",
        incident_id="AuditAnchorWorkflow",
        detail="row 1 does not match its MAC",
    )
    told = await acts.send(request)
    assert told.sent == 1 and len(hooks) == 1
    assert "not audited" in told.note and "audit log refuses" in told.note
    # a channel that is down is still an error to retry: nothing went out
    dead = _settings(
        database_url, redis_url, tmp_path, notify_urls=f"json://127.0.0.1:{free_port()}/x"
    )
    down = NotifyActivities(pool, ServiceRegistry(pool, Fernet(SECRET)), audit, dead)
    with pytest.raises(ApplicationError, match="every notification channel failed"):
        await down.send(request)
