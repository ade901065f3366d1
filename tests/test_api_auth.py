"""Attacks on `aiops api`, against the real servers: no token, the wrong role, an expired or
forged token, OIDC tokens from a rotating JWKS and from strangers, writes to aiops' own
streams and sources, error text leaking out; registry changes need admin and are audited."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiops_worker import aiops_worker
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from known_problems import seed_import_timeout
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment
from test_api import JWT_SECRET, KEY, api_client, api_settings, bearer, token

from aiops.auth import Role, TokenVerifier
from aiops.auth.keys import derive_approval_key
from aiops.config import Settings
from aiops.devstack.ports import free_port
from aiops.models.incident import IncidentStatus
from workers.api import create_app

OIDC_AUDIENCE = "aiops-test-api"
EVENT = {"event_type": "ServiceError", "source": "shop", "payload": {"message": "boom"}}


@pytest.fixture
def settings(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
) -> Settings:
    return api_settings(
        database_url,
        redis_url,
        temporal_env.client.service_client.config.target_host,
        tmp_path,
        api_token=SecretStr("legacy-static-token"),
        listener_streams=f"{stream_prefix}:*",
        dead_letter_stream=f"{stream_prefix}:dead",
        monitor_stream=f"{stream_prefix}:monitor",
    )


@pytest_asyncio.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


def _forged(claims: dict[str, Any], key: str = JWT_SECRET, **header: Any) -> str:
    now = datetime.now(UTC)
    base = {
        "iss": "aiops",
        "aud": "aiops",
        "sub": "mallory",
        "iat": now,
        "exp": now + timedelta(hours=1),
    }
    return jwt.encode({**base, **claims}, key, algorithm="HS256", headers=header or None)


async def test_every_route_but_health_needs_a_token(api: httpx.AsyncClient) -> None:
    for path in ("/incidents", "/incidents/incident-x", "/services", "/kg/search?q=timeout"):
        response = await api.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Bearer" in response.json()["detail"]
    for method, path in (
        ("POST", "/events"),
        ("POST", "/incidents/incident-x/approve"),
        ("POST", "/services"),
        ("DELETE", "/services/shop"),
    ):
        response = await api.request(method, path, json={})
        assert response.status_code == 401, (method, path)
    # a token in another scheme is no token
    basic = await api.get("/services", headers={"Authorization": f"Basic {token(Role.ADMIN)}"})
    assert basic.status_code == 401
    assert (await api.get("/health")).status_code == 200


async def test_roles_decide_what_a_token_may_do(api: httpx.AsyncClient, settings: Settings) -> None:
    stream = settings.listener_streams.replace("*", "events")
    viewer = bearer(token(Role.VIEWER, sub="vic"))
    assert (await api.get("/services", headers=viewer)).status_code == 200
    assert (await api.get("/incidents", headers=viewer)).status_code == 200

    posted = await api.post("/events", params={"stream": stream}, json=EVENT, headers=viewer)
    assert posted.status_code == 403
    assert "operator" in posted.json()["detail"] and "vic" in posted.json()["detail"]
    approve = await api.post("/incidents/incident-x/approve", json={}, headers=viewer)
    assert approve.status_code == 403 and "approver" in approve.json()["detail"]

    # operator and approver are separate duties
    operator = bearer(token(Role.OPERATOR, sub="ops"))
    approve = await api.post("/incidents/incident-x/approve", json={}, headers=operator)
    assert approve.status_code == 403 and "approver" in approve.json()["detail"]
    approver = bearer(token(Role.APPROVER, sub="boss"))
    posted = await api.post("/events", params={"stream": stream}, json=EVENT, headers=approver)
    assert posted.status_code == 403 and "operator" in posted.json()["detail"]

    # roles aiops does not know give nothing, not even reading
    unknown_roles = bearer(_forged({"roles": ["superuser", "root"]}))
    assert (await api.get("/services", headers=unknown_roles)).status_code == 403
    # the static AIOPS_API_TOKEN is viewer, operator and approver, never admin
    static = bearer("legacy-static-token")
    assert (await api.get("/services", headers=static)).status_code == 200
    definition = {"name": "shop", "endpoint": "http://127.0.0.1:9"}
    assert (await api.post("/services", json=definition, headers=static)).status_code == 403
    assert (await api.delete("/services/shop", headers=static)).status_code == 403


async def test_expired_forged_and_malformed_tokens_are_refused(api: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    cases = {
        # (the verifier allows 30 s of clock skew, so expired means past that)
        "expired": _forged(
            {"roles": ["admin"], "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}
        ),
        "another secret": _forged({"roles": ["admin"]}, key="not-the-server-secret-" + "x" * 20),
        "no exp": jwt.encode(
            {"iss": "aiops", "aud": "aiops", "sub": "m", "roles": ["admin"]}, JWT_SECRET
        ),
        "other audience": _forged({"roles": ["admin"], "aud": "someone-else"}),
        "alg none": jwt.encode(
            {
                "iss": "aiops",
                "aud": "aiops",
                "sub": "m",
                "roles": ["admin"],
                "exp": now + timedelta(hours=1),
            },
            "",
            algorithm="none",
        ),
        "garbage": "not.a.jwt",
        "unknown issuer": _forged({"roles": ["admin"], "iss": "https://evil.example"}),
    }
    for name, value in cases.items():
        response = await api.get("/services", headers=bearer(value))
        assert response.status_code == 401, (name, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    expired = await api.get("/services", headers=bearer(cases["expired"]))
    assert "expired" in expired.json()["detail"]


async def test_events_cannot_reach_aiops_own_streams_or_speak_as_aiops(
    api: httpx.AsyncClient, settings: Settings, redis_url: str
) -> None:
    operator = bearer(token(Role.OPERATOR, sub="ops"))
    for stream in (settings.dead_letter_stream, settings.monitor_stream, "events:dead", "other:x"):
        response = await api.post(
            "/events", params={"stream": stream}, json=EVENT, headers=operator
        )
        assert response.status_code == 400, (stream, response.text)
    # the default stream events:api is not read by this listener (streams test-...:*)
    default = await api.post("/events", json=EVENT, headers=operator)
    assert default.status_code == 400 and "events:api" in default.json()["detail"]
    stream = settings.listener_streams.replace("*", "events")
    for source in ("aiops-monitor", "aiops-healer", "AIOPS-Monitor"):
        spoofed = {**EVENT, "event_type": "ServiceUnhealthy", "source": source}
        response = await api.post(
            "/events", params={"stream": stream}, json=spoofed, headers=operator
        )
        assert response.status_code == 403, source
        assert "reserved" in response.json()["detail"]
    redis = aioredis.Redis.from_url(redis_url)
    try:
        for name in (stream, settings.dead_letter_stream, settings.monitor_stream):
            assert await redis.exists(name) == 0, name  # nothing was written anywhere
    finally:
        await redis.aclose()


async def test_events_default_to_the_api_stream(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = api_settings(
        database_url,
        redis_url,
        temporal_env.client.service_client.config.target_host,
        tmp_path,
        listener_streams="events:*",
    )
    event = {**EVENT, "id": str(uuid.uuid4())}
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with api_client(settings) as api:
            response = await api.post(
                "/events", json=event, headers=bearer(token(Role.OPERATOR, sub="ops"))
            )
        assert response.status_code == 202, response.text
        assert response.json()["stream"] == "events:api"
        entry = response.json()["stream_entry"]
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
            "events:api", min=entry, max=entry
        )
        assert json.loads(entries[0][1][b"event"])["id"] == event["id"]
        await redis.xdel("events:api", entry)
    finally:
        await redis.aclose()


async def test_health_tells_clients_nothing_of_backend_errors(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead_port = free_port()
    settings = api_settings(
        database_url,
        f"redis://127.0.0.1:{dead_port}/0",
        temporal_env.client.service_client.config.target_host,
        tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="aiops.api"):
        async with api_client(settings) as api:
            response = await api.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["components"]["redis"]["ok"] is False
    assert all(set(c) == {"ok", "latency_ms"} for c in body["components"].values())
    assert str(dead_port) not in response.text and "Error" not in response.text
    # the reason is in the server's log, where an operator looks
    assert any("redis is down" in r.getMessage() for r in caplog.records)


async def test_registry_changes_need_admin_and_are_audited(
    api: httpx.AsyncClient, database_url: str
) -> None:
    admin = bearer(token(Role.ADMIN, sub="root-admin"))
    definition = {
        "name": f"shop-{uuid.uuid4().hex[:6]}",
        "endpoint": "http://127.0.0.1:9",
        "restart_argv": ["python", "-m", "shop"],
        "env": {"DB_PASSWORD": "hunter2-first", "PORT": "9"},
        "credentials": "admin-credential-abc",
        "critical": True,
    }
    for who in (Role.VIEWER, Role.OPERATOR, Role.APPROVER):
        refused = await api.post("/services", json=definition, headers=bearer(token(who)))
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    created = await api.post("/services", json=definition, headers=admin)
    assert created.status_code == 201, created.text
    changed = {
        **definition,
        "restart_argv": ["python", "-m", "shop", "--workers", "2"],
        "env": {"DB_PASSWORD": "hunter2-second", "LOG_LEVEL": "debug"},
        "critical": False,
    }
    updated = await api.post("/services", json=changed, headers=admin)
    assert updated.status_code == 200 or updated.status_code == 201, updated.text
    for body in (created.text, updated.text):
        assert "hunter2" not in body and "admin-credential-abc" not in body
    listed = await api.get("/services", headers=bearer(token(Role.VIEWER)))
    assert "hunter2" not in listed.text and "admin-credential-abc" not in listed.text
    assert (
        await api.delete(f"/services/{definition['name']}", headers=bearer(token(Role.OPERATOR)))
    ).status_code == 403
    removed = await api.delete(f"/services/{definition['name']}", headers=admin)
    assert removed.status_code == 200, removed.text
    gone = await api.delete(f"/services/{definition['name']}", headers=admin)
    assert gone.status_code == 404

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT actor, decision, target, details::text AS details FROM audit_log"
            " WHERE action = 'registry' ORDER BY seq"
        )
    finally:
        await conn.close()
    assert [(r["actor"], r["decision"], r["target"]) for r in rows] == [
        ("root-admin", "registered", definition["name"]),
        ("root-admin", "registered", definition["name"]),
        ("root-admin", "deregistered", definition["name"]),
    ]
    for row in rows:
        assert "hunter2" not in row["details"] and "admin-credential-abc" not in row["details"]
    first, second, third = (json.loads(r["details"]) for r in rows)
    assert first["created"] is True and first["via"] == "api"
    assert first["env"] == {"added": ["DB_PASSWORD", "PORT"]}
    assert first["credentials"] == "added"
    assert first["changes"]["restart_argv"] == {"old": None, "new": ["python", "-m", "shop"]}
    assert second["created"] is False
    assert second["env"] == {
        "added": ["LOG_LEVEL"],
        "removed": ["PORT"],
        "changed": ["DB_PASSWORD"],
    }
    assert second["changes"]["restart_argv"]["old"] == ["python", "-m", "shop"]
    assert second["changes"]["critical"] == {"old": True, "new": False}
    assert "credentials" not in second and "endpoint" not in second["changes"]
    assert third["env_keys"] == ["DB_PASSWORD", "LOG_LEVEL"] and third["had_credentials"] is True


def _hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


# --- OIDC: a local identity provider with a JWKS that rotates ---------------------------


class _Idp:
    """A tiny OIDC provider: discovery document and JWKS over HTTP, keys it can rotate."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {"issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/jwks"}
                elif self.path == "/jwks":
                    idp.fetches += 1
                    body = {"keys": [idp.jwk(kid) for kid in idp.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def rotate(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published = [kid]
        return kid

    def jwk(self, kid: str) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str, roles: list[str], **claims: Any) -> str:
        now = datetime.now(UTC)
        body = {
            "iss": self.issuer,
            "aud": OIDC_AUDIENCE,
            "sub": "carol@idp",
            "iat": now,
            "exp": now + timedelta(minutes=10),
            "realm_access": {"roles": roles},
            **claims,
        }
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[_Idp]:
    provider = _Idp()
    provider.thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()


async def test_oidc_tokens_from_a_rotating_jwks(
    idp: _Idp,
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        tracing="off",
        home=tmp_path,
        secret_key=SecretStr(KEY),
        oidc_issuer=idp.issuer,
        oidc_audience=OIDC_AUDIENCE,
        roles_claim="realm_access.roles",
    )
    first = idp.rotate()
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        ok = await api.get("/services", headers=bearer(idp.token(first, ["viewer", "idp-group"])))
        assert ok.status_code == 200, ok.text
        # roles come from the configured claim: viewer may not publish
        posted = await api.post("/events", json=EVENT, headers=bearer(idp.token(first, ["viewer"])))
        assert posted.status_code == 403

        # PyJWKClient refetches the JWKS for an unknown kid at most every 30 s (so a flood
        # of made-up kids cannot hammer the provider); let those 30 s pass quickly
        verifier: TokenVerifier = app.state.backends.verifier
        jwks = verifier._jwks_client()
        jwks.cooldown_duration = 0.2
        await asyncio.sleep(0.3)
        second = idp.rotate()  # the provider rotates: the new kid is fetched on first sight
        rotated = await api.get("/services", headers=bearer(idp.token(second, ["viewer"])))
        assert rotated.status_code == 200, rotated.text
        assert idp.fetches == 2

        stranger = _Idp()  # another issuer, its own keys: not trusted
        stranger_kid = stranger.rotate()
        foreign = await api.get(
            "/services", headers=bearer(stranger.token(stranger_kid, ["admin"]))
        )
        assert foreign.status_code == 401 and "issuer" in foreign.json()["detail"]
        stranger.server.server_close()

        # the right issuer and kid, signed with somebody else's key
        impostor = _Idp()
        impostor.issuer = idp.issuer
        impostor.keys[second] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = await api.get("/services", headers=bearer(impostor.token(second, ["admin"])))
        assert forged.status_code == 401
        impostor.server.server_close()

        # algorithm confusion: HS256 keyed with the provider's public key (which anyone can
        # read from the JWKS); signed by hand, since PyJWT itself refuses to make one
        public_pem = (
            idp.keys[second]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        confused = _hs256_by_hand(
            {"alg": "HS256", "typ": "JWT", "kid": second},
            {
                "iss": idp.issuer,
                "aud": OIDC_AUDIENCE,
                "sub": "m",
                "exp": int((datetime.now(UTC) + timedelta(minutes=5)).timestamp()),
                "realm_access": {"roles": ["admin"]},
            },
            public_pem,
        )
        assert (await api.get("/services", headers=bearer(confused))).status_code == 401

        # the wrong audience
        other_aud = idp.token(second, ["admin"], aud="another-app")
        assert (await api.get("/services", headers=bearer(other_aud))).status_code == 401


async def test_oidc_key_removed_from_the_jwks_is_refused(
    idp: _Idp,
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        tracing="off",
        home=tmp_path,
        secret_key=SecretStr(KEY),
        oidc_issuer=idp.issuer,
        oidc_audience=OIDC_AUDIENCE,
        roles_claim="realm_access.roles",
    )
    retired = idp.rotate()
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        assert (
            await api.get("/services", headers=bearer(idp.token(retired, ["viewer"])))
        ).status_code == 200
        verifier: TokenVerifier = app.state.backends.verifier
        verifier._jwks_client().cooldown_duration = 0.2
        await asyncio.sleep(0.3)
        current = idp.rotate()  # e.g. the old key leaked: the provider drops it
        assert (
            await api.get("/services", headers=bearer(idp.token(current, ["viewer"])))
        ).status_code == 200
        await asyncio.sleep(0.3)
        stale = await api.get("/services", headers=bearer(idp.token(retired, ["viewer"])))
        assert stale.status_code == 401


async def test_api_approval_is_signed_for_the_token_and_heals(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"incident-api-{uuid.uuid4().hex[:8]}"
    settings = api_settings(
        database_url,
        redis_url,
        temporal_env.client.service_client.config.target_host,
        tmp_path,
        task_queue=queue,
    )
    # the worker checks grants with the key the API signs with (both from AIOPS_SECRET_KEY)
    key = derive_approval_key(KEY.encode())
    async with (
        aiops_worker(
            temporal_env.client,
            queue,
            database_url,
            redis_url,
            approval_key=key,
            approvals="signed",
        ) as kg,
        api_client(settings) as api,
    ):
        _, solution_id = await seed_import_timeout(kg, "scale", "Add an import worker")
        await temporal_env.client.start_workflow(
            "IncidentWorkflow",
            {
                "event_type": "ServiceTimeout",
                "source": "import-service",
                "payload": {"message": "bookmark import timed out after 30s"},
                "cool_down_s": 1,
            },
            id=wid,
            task_queue=queue,
        )
        viewer = bearer(token(Role.VIEWER, sub="vic"))
        for _ in range(120):
            status = await api.get(f"/incidents/{wid}", headers=viewer)
            if status.status_code == 200 and status.json().get("pending_approval"):
                break
            await asyncio.sleep(0.5)
        assert status.json()["pending_approval"] == "1", status.text

        approver = bearer(token(Role.APPROVER, sub="alice"))
        refused = await api.post(f"/incidents/{wid}/approve", json={}, headers=viewer)
        assert refused.status_code == 403
        later = await api.post(
            f"/incidents/{wid}/approve", json={"action_id": "9"}, headers=approver
        )
        assert later.status_code == 409 and "step 1" in later.json()["detail"]
        # the old body shape: its approver is ignored, the token says who decides
        decided = await api.post(
            f"/incidents/{wid}/approve",
            json={"approver": "mallory", "approved": True, "reason": "ok"},
            headers=approver,
        )
        assert decided.status_code == 200, decided.text
        assert decided.json() == {"result": "step 1 approved by alice", "approver": "alice"}
        twice = await api.post(f"/incidents/{wid}/approve", json={}, headers=approver)
        assert twice.status_code == 409

        handle = temporal_env.client.get_workflow_handle(wid, result_type=IncidentStatus)
        result = await handle.result()
        stats = await kg.solution_stats(solution_id)
    # the worker checks the grant again where the action runs
    assert result.outcome == "healed", result.healing_result and result.healing_result.detail
    assert result.healing_result is not None
    approval = result.healing_result.steps[0].approval
    assert approval is not None and approval.approver == "alice" and approval.grant
    assert (stats.attempt_count, stats.success_count) == (1, 1)
    conn = await asyncpg.connect(database_url)
    try:
        approvals = await conn.fetch(
            "SELECT decision, details->>'detail' AS detail FROM audit_log WHERE action = 'approval'"
            " AND workflow_id LIKE $1",
            f"{wid}-healing-%",
        )
    finally:
        await conn.close()
    assert [(r["decision"], r["detail"]) for r in approvals] == [("approved", "alice: ok")]


async def test_with_producer_trust_the_api_publishes_only_to_its_own_stream(
    database_url: str, redis_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A producer's stream (events:billing) is that producer's word; the API's operators
    speak on events:api, which the listener trusts because the API verified them."""
    settings = api_settings(
        database_url,
        redis_url,
        temporal_env.client.service_client.config.target_host,
        tmp_path,
        event_trust="producers",
    )
    app = create_app(settings)
    operator = bearer(token(Role.OPERATOR, sub="ops"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        spoof = await api.post(
            "/events", params={"stream": "events:billing"}, json=EVENT, headers=operator
        )
        assert spoof.status_code == 400 and "events:api only" in spoof.json()["detail"]
        own = await api.post("/events", json=EVENT, headers=operator)
        assert own.status_code == 202, own.text
        assert own.json()["stream"] == "events:api"
