"""The encrypting payload codec (aiops/codec) on the real Temporal dev server.

With AIOPS_PAYLOAD_KEY set, a workflow's input is ciphertext in the server's history: a
client without the key sees only `binary/encrypted` payloads and the key id, a client
with it sees the input; keys rotate (a new first key encrypts, old ones still decrypt);
and `aiops codec-server` lets `temporal workflow show` read the history, behind the
API's bearer tokens, with CORS for the Web UI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from aiops.auth import Role, issue_token
from aiops.codec import ENCODING, KEY_ID, AesGcmCodec, PayloadDecryptError, parse_payload_keys
from aiops.config import ConfigError, Settings
from aiops.devstack import binaries
from aiops.devstack.ports import free_port
from aiops.models.incident import IncidentInput
from aiops.temporal_client import connect, data_converter

SECRET = "hunter2-s3cr3t"
MESSAGE = f"login failed: password={SECRET} for alice@example.com"
JWT_SECRET = "codec-test-secret-" + "x" * 40
UI_ORIGIN = "http://127.0.0.1:8233"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


KEY_A = f"a:{_key()}"
KEY_B = f"b:{_key()}"


def _settings(tmp_path: Path, env: WorkflowEnvironment, payload_key: str | None) -> Settings:
    return Settings(
        home=tmp_path,
        temporal_address=env.client.service_client.config.target_host,
        payload_key=SecretStr(payload_key) if payload_key else None,
        jwt_secret=SecretStr(JWT_SECRET),
    )


async def _start_incident(client: Client) -> str:
    """An IncidentWorkflow on a queue no worker polls: its input stays in the history."""
    workflow_id = f"codec-{uuid.uuid4().hex[:10]}"
    await client.start_workflow(
        "IncidentWorkflow",
        IncidentInput(event_type="auth.failed", source="codec-test", payload={"message": MESSAGE}),
        id=workflow_id,
        task_queue=f"no-worker-{uuid.uuid4().hex[:8]}",
        memo={"summary": MESSAGE},
        execution_timeout=timedelta(minutes=5),
    )
    return workflow_id


def _started_input(history: WorkflowHistory) -> list[Payload]:
    started = history.events[0].workflow_execution_started_event_attributes
    return list(started.input.payloads)


def _raw_history_text(history: WorkflowHistory) -> str:
    """Everything the server gave back, payload bytes decoded as loosely as possible."""
    parts = [history.to_json()]
    for event in history.events:
        parts.append(event.SerializeToString().decode("latin-1"))
    return "\n".join(parts)


@workflow.defn(name="CodecEchoWorkflow")
class CodecEchoWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return f"echo: {text}"


# --- the codec on the server -------------------------------------------------------------


async def test_history_without_the_key_is_ciphertext(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """connect() with AIOPS_PAYLOAD_KEY encrypts the input and the memo; the plain client
    (the conftest one, no codec) gets ciphertext with the encoding and the key id only;
    the codec client reads the input back."""
    with_key = await connect(_settings(tmp_path, temporal_env, KEY_A))
    workflow_id = await _start_incident(with_key)
    try:
        # a client without the codec: what the server stores, as the UI would show it
        plain = await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()
        assert SECRET not in _raw_history_text(plain)
        assert "alice@example.com" not in _raw_history_text(plain)
        (payload,) = _started_input(plain)
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID] == b"a"
        assert set(payload.metadata) == {"encoding", KEY_ID}
        described = await temporal_env.client.get_workflow_handle(workflow_id).describe()
        memo_payload = described.raw_description.workflow_execution_info.memo.fields["summary"]
        assert memo_payload.metadata["encoding"] == ENCODING
        assert SECRET.encode() not in memo_payload.SerializeToString()

        # with the codec: the same history reads back as the input that was sent
        history = await with_key.get_workflow_handle(workflow_id).fetch_history()
        (decoded,) = await with_key.data_converter.decode(_started_input(history), [IncidentInput])
        assert isinstance(decoded, IncidentInput)
        assert decoded.payload == {"message": MESSAGE}
        memo = await (await with_key.get_workflow_handle(workflow_id).describe()).memo()
        assert memo == {"summary": MESSAGE}
    finally:
        await with_key.get_workflow_handle(workflow_id).terminate("test over")


async def test_unencrypted_histories_still_decode(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A workflow started before the codec was switched on (plain payloads) reads through a
    codec client unchanged."""
    workflow_id = await _start_incident(temporal_env.client)
    try:
        with_key = await connect(_settings(tmp_path, temporal_env, KEY_A))
        history = await with_key.get_workflow_handle(workflow_id).fetch_history()
        (payload,) = _started_input(history)
        assert payload.metadata["encoding"] == b"json/plain"
        (decoded,) = await with_key.data_converter.decode([payload], [IncidentInput])
        assert isinstance(decoded, IncidentInput)
        assert decoded.payload == {"message": MESSAGE}
    finally:
        await temporal_env.client.get_workflow_handle(workflow_id).terminate("test over")


async def test_rotation_and_unknown_key(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Encrypted with A; a codec configured "B,A" decodes A's payloads and encrypts new
    ones with B; a codec with only B refuses A's payload and names the key id."""
    with_a = await connect(_settings(tmp_path, temporal_env, KEY_A))
    old_id = await _start_incident(with_a)
    rotated = await connect(_settings(tmp_path, temporal_env, f"{KEY_B},{KEY_A}"))
    new_id = await _start_incident(rotated)
    try:
        (old,) = _started_input(await rotated.get_workflow_handle(old_id).fetch_history())
        (new,) = _started_input(await rotated.get_workflow_handle(new_id).fetch_history())
        assert old.metadata[KEY_ID] == b"a"
        assert new.metadata[KEY_ID] == b"b"
        for payload in (old, new):
            (decoded,) = await rotated.data_converter.decode([payload], [IncidentInput])
            assert isinstance(decoded, IncidentInput)
            assert decoded.payload == {"message": MESSAGE}

        only_b = data_converter(_settings(tmp_path, temporal_env, KEY_B))
        with pytest.raises(PayloadDecryptError, match="key id 'a'"):
            await only_b.decode([old], [IncidentInput])
        (decoded,) = await only_b.decode([new], [IncidentInput])
        assert isinstance(decoded, IncidentInput)
    finally:
        for workflow_id in (old_id, new_id):
            await rotated.get_workflow_handle(workflow_id).terminate("test over")


async def test_a_worker_with_the_key_runs_encrypted_workflows(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A worker on a connect() client decodes the encrypted input and encrypts its result:
    the caller reads the result, the history holds neither in clear."""
    client = await connect(_settings(tmp_path, temporal_env, KEY_A))
    queue = f"codec-echo-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CodecEchoWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(
            CodecEchoWorkflow.run,
            MESSAGE,
            id=f"codec-echo-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        assert await handle.result() == f"echo: {MESSAGE}"
    plain = await temporal_env.client.get_workflow_handle(handle.id).fetch_history()
    assert SECRET not in _raw_history_text(plain)
    completed = plain.events[-1].workflow_execution_completed_event_attributes
    (result,) = completed.result.payloads
    assert result.metadata["encoding"] == ENCODING


# --- the codec itself ---------------------------------------------------------------------


async def test_each_payload_gets_its_own_nonce_and_tampering_fails() -> None:
    codec = AesGcmCodec.from_value(KEY_A)
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"x": 1}')
    first, second = await codec.encode([original, original])
    assert first.data != second.data
    assert first.data[:12] != second.data[:12]
    assert await codec.decode([first]) == [original]

    tampered = Payload()
    tampered.CopyFrom(first)
    tampered.data = first.data[:-1] + bytes([first.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptError, match=r"key id 'a'.*fails authentication"):
        await codec.decode([tampered])

    # the key id is authenticated: relabelling a payload as another key's does not decrypt
    other = AesGcmCodec(parse_payload_keys(f"b:{KEY_A.split(':', 1)[1]}"))
    relabelled = Payload()
    relabelled.CopyFrom(first)
    relabelled.metadata[KEY_ID] = b"b"
    with pytest.raises(PayloadDecryptError, match="key id 'b'"):
        await other.decode([relabelled])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is empty"),
        ("nokey", "not id:base64key"),
        ("a:", "not id:base64key"),
        ("a b:" + _key(), "key id 'a b'"),
        ("a:!!notbase64!!", "not base64"),
        ("a:" + base64.b64encode(os.urandom(16)).decode(), "16 bytes"),
        (f"a:{_key()},a:{_key()}", "listed twice"),
    ],
)
def test_a_malformed_key_is_a_one_line_config_error(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as raised:
        parse_payload_keys(value)
    message = str(raised.value)
    assert "AIOPS_PAYLOAD_KEY" in message
    assert "\n" not in message
    # the key material is never echoed back
    for entry in value.split(","):
        secret = entry.partition(":")[2]
        if len(secret) > 8:
            assert secret not in message


def test_keys_accept_urlsafe_base64_without_padding() -> None:
    raw = os.urandom(32)
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert parse_payload_keys(f"k1:{text}") == [("k1", raw)]


async def test_connect_refuses_a_malformed_key_before_dialing(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, temporal_address="127.0.0.1:1", payload_key=SecretStr("k1:short")
    )
    with pytest.raises(ConfigError, match="AIOPS_PAYLOAD_KEY"):
        await connect(settings)


# --- aiops codec-server -------------------------------------------------------------------


def _token(*roles: Role) -> str:
    return issue_token(JWT_SECRET, "codec-test", list(roles), timedelta(minutes=10))


@pytest.fixture(scope="module")
def codec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`aiops codec-server` in a subprocess with key "b,a", on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOPS_", "TEMPORAL_"))} | {
        "AIOPS_HOME": str(tmp_path_factory.mktemp("codec-home")),
        "AIOPS_PAYLOAD_KEY": f"{KEY_B},{KEY_A}",
        "AIOPS_JWT_SECRET": JWT_SECRET,
    }
    command = [
        sys.executable,
        "-c",
        "import typer; from workers.commands.codec_server import codec_server; "
        "typer.run(codec_server)",
        "--port",
        str(port),
        "--ui-origin",
        UI_ORIGIN,
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"aiops codec-server exited {process.returncode}: {output}")
            try:
                httpx.post(f"{url}/decode", json={"payloads": []}, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail("aiops codec-server did not answer within 30 s")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _show(env: WorkflowEnvironment, workflow_id: str, *codec: str) -> str:
    result = subprocess.run(
        [
            str(binaries.temporal_cli()),
            "workflow",
            "show",
            "--workflow-id",
            workflow_id,
            "--address",
            env.client.service_client.config.target_host,
            "--namespace",
            env.client.namespace,
            "--output",
            "json",
            "--disable-config-file",
            "--disable-config-env",
            *codec,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _shown_input(output: str) -> tuple[dict[str, str], bytes]:
    """The started event's input payload in `temporal workflow show --output json`:
    metadata values and data are base64 (protobuf JSON)."""
    started = json.loads(output)["events"][0]["workflowExecutionStartedEventAttributes"]
    (payload,) = started["input"]["payloads"]
    metadata = {k: base64.b64decode(v).decode() for k, v in payload["metadata"].items()}
    return metadata, base64.b64decode(payload["data"])


async def test_temporal_workflow_show_through_the_codec_server(
    temporal_env: WorkflowEnvironment, tmp_path: Path, codec_server: str
) -> None:
    """`temporal workflow show` prints ciphertext alone, and the input through
    --codec-endpoint with a viewer token; the codec server decodes a payload of the older
    key (it holds "b,a") too."""
    with_a = await connect(_settings(tmp_path, temporal_env, KEY_A))
    workflow_id = await _start_incident(with_a)
    try:
        without = _show(temporal_env, workflow_id)
        assert SECRET not in without
        metadata, data = _shown_input(without)
        assert metadata == {"encoding": "binary/encrypted", KEY_ID: "a"}
        assert SECRET.encode() not in data

        shown = _show(
            temporal_env,
            workflow_id,
            "--codec-endpoint",
            codec_server,
            "--codec-auth",
            f"Bearer {_token(Role.VIEWER)}",
        )
        metadata, data = _shown_input(shown)
        assert metadata == {"encoding": "json/plain"}
        assert json.loads(data)["payload"] == {"message": MESSAGE}
    finally:
        await with_a.get_workflow_handle(workflow_id).terminate("test over")


def test_codec_server_needs_a_token_and_the_role(codec_server: str) -> None:
    """401 (with a Bearer challenge) without a token or with a bad one; decode is for
    viewers, encode for operators (403 otherwise)."""
    body: dict[str, list[object]] = {"payloads": []}
    missing = httpx.post(f"{codec_server}/decode", json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    forged = issue_token("another-secret-" + "y" * 40, "x", [Role.ADMIN], timedelta(minutes=1))
    for token in ("not-a-jwt", forged):
        bad = httpx.post(
            f"{codec_server}/decode", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert bad.status_code == 401
    viewer = {"Authorization": f"Bearer {_token(Role.VIEWER)}"}
    assert httpx.post(f"{codec_server}/decode", json=body, headers=viewer).status_code == 200
    refused = httpx.post(f"{codec_server}/encode", json=body, headers=viewer)
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    assert httpx.post(f"{codec_server}/encode", json=body).status_code == 401


def test_codec_server_encodes_and_decodes_payloads_documents(codec_server: str) -> None:
    """The protocol: {"payloads": [...]} in and out, base64 metadata and data, /encode and
    /decode as the last part of any path; encode uses the first key ("b"), decode any
    listed key, plain payloads pass through, an unlisted key id is a 422 that names it."""
    plain = {
        "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
        "data": base64.b64encode(json.dumps({"message": MESSAGE}).encode()).decode(),
    }
    operator = {"Authorization": f"Bearer {_token(Role.OPERATOR)}", "X-Namespace": "default"}
    encoded = httpx.post(f"{codec_server}/encode", json={"payloads": [plain]}, headers=operator)
    assert encoded.status_code == 200, encoded.text
    (sealed,) = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    assert base64.b64decode(sealed["metadata"][KEY_ID]) == b"b"
    assert SECRET.encode() not in base64.b64decode(sealed["data"])

    decoded = httpx.post(
        f"{codec_server}/namespaces/default/decode",
        json={"payloads": [sealed, plain]},
        headers=operator,
    )
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == {"payloads": [plain, plain]}

    stranger = AesGcmCodec.from_value(f"zz:{_key()}")
    (foreign,) = asyncio.run(stranger.encode([Payload(metadata={"encoding": b"json/plain"})]))
    refused = httpx.post(
        f"{codec_server}/decode",
        json={"payloads": [json.loads(json_format.MessageToJson(foreign))]},
        headers=operator,
    )
    assert refused.status_code == 422
    assert "'zz'" in refused.json()["detail"]
    garbage = httpx.post(f"{codec_server}/decode", content=b"{nope", headers=operator)
    assert garbage.status_code == 400


def test_codec_server_cors_for_the_web_ui(codec_server: str) -> None:
    """The Web UI's preflight from its origin is answered with the headers it sends; the
    UI also sees the CORS headers on a 401; another origin gets none."""
    preflight = httpx.options(
        f"{codec_server}/decode",
        headers={
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
    allowed = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert {"content-type", "x-namespace", "authorization"} <= allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]

    unauthorized = httpx.post(
        f"{codec_server}/decode", json={"payloads": []}, headers={"Origin": UI_ORIGIN}
    )
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == UI_ORIGIN

    elsewhere = httpx.options(
        f"{codec_server}/decode",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in elsewhere.headers
