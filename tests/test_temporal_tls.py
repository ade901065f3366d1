"""aiops reaches a Temporal frontend over TLS, mTLS and with an API key (issue 13).

The dev server speaks plain gRPC, so each test puts a TLS-terminating proxy in front of it:
an asyncio TLS server (ALPN h2, optionally requiring a client certificate) that pipes the
bytes to the real dev server. The certificates come from a throwaway CA made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import random
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from aiops.config import ConfigError, Settings
from aiops.temporal_client import connect
from aiops.temporal_tls import tls_config

# --- a throwaway PKI ---


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = _ca("aiops test CA")
    server = _leaf("temporal-frontend", ca, server=True)
    client = _leaf("aiops-worker", ca, server=False)
    other, _ = _ca("some other CA")
    files = {
        "ca.pem": _cert_pem(ca[0]),
        "server.pem": _cert_pem(server[0]),
        "server.key": _key_pem(server[1]),
        "client.pem": _cert_pem(client[0]),
        "client.key": _key_pem(client[1]),
        "other-ca.pem": _cert_pem(other),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return Pki(
        ca=root / "ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        client_cert=root / "client.pem",
        client_key=root / "client.key",
        other_ca=root / "other-ca.pem",
    )


# --- the TLS-terminating proxy in front of the plain dev server ---


@dataclass
class Proxy:
    port: int
    peers: list[dict[str, Any]] = field(default_factory=list)  # client certs it verified
    alpn: list[str | None] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)  # decrypted client -> server bytes


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray | None
) -> None:
    try:
        while data := await reader.read(65536):
            if seen is not None:
                seen.extend(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _dev_server_port(env: WorkflowEnvironment) -> int:
    return int(env.client.service_client.config.target_host.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def tls_proxy(pki: Pki, target_port: int, *, mtls: bool) -> AsyncIterator[Proxy]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.set_alpn_protocols(["h2"])
    if mtls:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    proxy = Proxy(port=0)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxy.peers.append(writer.get_extra_info("peercert") or {})
        ssl_object = writer.get_extra_info("ssl_object")
        proxy.alpn.append(ssl_object.selected_alpn_protocol() if ssl_object else None)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(
            _pipe(reader, up_writer, proxy.received), _pipe(up_reader, writer, None)
        )

    def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(spawn, "127.0.0.1", 0, ssl=context)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _settings(port: int, **tls: Any) -> Settings:
    return Settings(temporal_address=f"127.0.0.1:{port}", temporal_namespace="default", **tls)


async def _works(client: Client) -> None:
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default")
    )
    assert described.namespace_info.name == "default"


async def _refused(settings: Settings) -> str:
    with pytest.raises(RuntimeError) as failed:
        await asyncio.wait_for(connect(settings), timeout=60)
    return str(failed.value)


def _subject_cn(peer: dict[str, Any]) -> str | None:
    for rdn in peer.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


# --- the tests ---


async def test_mtls_through_the_proxy(temporal_env: WorkflowEnvironment, pki: Pki) -> None:
    async with tls_proxy(pki, _dev_server_port(temporal_env), mtls=True) as proxy:
        settings = _settings(
            proxy.port,
            temporal_tls_ca=pki.ca,
            temporal_tls_cert=pki.client_cert,
            temporal_tls_key=pki.client_key,
        )
        client = await connect(settings)
        await _works(client)
        # the proxy verified aiops' client certificate and spoke HTTP/2
        assert [_subject_cn(peer) for peer in proxy.peers][:1] == ["aiops-worker"]
        assert proxy.alpn[0] == "h2"


async def test_the_mtls_proxy_refuses_a_client_without_a_certificate(
    temporal_env: WorkflowEnvironment, pki: Pki
) -> None:
    async with tls_proxy(pki, _dev_server_port(temporal_env), mtls=True) as proxy:
        await _refused(_settings(proxy.port, temporal_tls_ca=pki.ca))
        assert proxy.peers == []  # no connection got through the handshake


async def test_a_wrong_ca_refuses_the_server(temporal_env: WorkflowEnvironment, pki: Pki) -> None:
    async with tls_proxy(pki, _dev_server_port(temporal_env), mtls=True) as proxy:
        settings = _settings(
            proxy.port,
            temporal_tls_ca=pki.other_ca,
            temporal_tls_cert=pki.client_cert,
            temporal_tls_key=pki.client_key,
        )
        assert "UnknownIssuer" in await _refused(settings)
        assert proxy.peers == []


async def test_plain_grpc_to_the_tls_port_fails(
    temporal_env: WorkflowEnvironment, pki: Pki
) -> None:
    async with tls_proxy(pki, _dev_server_port(temporal_env), mtls=False) as proxy:
        await _refused(_settings(proxy.port))
        assert proxy.peers == []


async def test_server_tls_and_the_server_name(temporal_env: WorkflowEnvironment, pki: Pki) -> None:
    async with tls_proxy(pki, _dev_server_port(temporal_env), mtls=False) as proxy:
        # server-side TLS only: the CA, no client certificate
        await _works(await connect(_settings(proxy.port, temporal_tls_ca=pki.ca)))
        # the certificate names localhost: checked against AIOPS_TEMPORAL_TLS_SERVER_NAME
        named = _settings(proxy.port, temporal_tls_ca=pki.ca, temporal_tls_server_name="localhost")
        await _works(await connect(named))
        wrong = _settings(
            proxy.port, temporal_tls_ca=pki.ca, temporal_tls_server_name="temporal.example.com"
        )
        assert "NotValidForName" in await _refused(wrong)
        # AIOPS_TEMPORAL_TLS alone: the system roots, which do not know the test CA
        assert "UnknownIssuer" in await _refused(_settings(proxy.port, temporal_tls=True))


# RFC 7541 Appendix B: the HPACK Huffman codes of the characters the test key uses
_HUFFMAN = {
    "B": ("1011101", 7),
    "e": ("00101", 5),
    "a": ("00011", 5),
    "r": ("101100", 6),
    " ": ("010100", 6),
    "|": ("11111111100", 11),
    "~": ("1111111111101", 13),
}
_AUTHORIZATION = b"\x0f\x08"  # literal without indexing, name = static table entry 23


def _huffman(text: str) -> bytes:
    bits = "".join(_HUFFMAN[c][0] for c in text)
    bits += "1" * (-len(bits) % 8)  # padded with the EOS prefix
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _authorization_header(value: str) -> bytes:
    encoded = _huffman(value)
    assert len(encoded) < 127
    return _AUTHORIZATION + bytes([0x80 | len(encoded)]) + encoded


def test_the_hpack_helper_encodes_as_rfc_7541_says() -> None:
    # B e a r e r SP, code by code: 1011101 00101 00011 101100 00101 101100 010100
    assert _huffman("Bearer ").hex() == "ba51d85b14"


async def test_the_api_key_is_sent(temporal_env: WorkflowEnvironment, pki: Pki) -> None:
    # HTTP/2 compresses headers (HPACK, Huffman); the key is made of characters whose codes
    # are above, so the proxy can find the encoded `authorization: Bearer <key>` header in
    # the decrypted bytes without an HTTP/2 decoder
    rng = random.Random(uuid.uuid4().int)
    key = "".join(rng.choice("Bear~|") for _ in range(16))
    async with tls_proxy(pki, _dev_server_port(temporal_env), mtls=False) as proxy:
        settings = _settings(proxy.port, temporal_tls_ca=pki.ca, temporal_api_key=SecretStr(key))
        client = await connect(settings)
        await _works(client)
        assert client.api_key == key
        assert _authorization_header(f"Bearer {key}") in proxy.received
        assert _authorization_header(f"Bearer {key[::-1]}") not in proxy.received


async def test_an_api_key_alone_turns_tls_on(temporal_env: WorkflowEnvironment, pki: Pki) -> None:
    # no TLS setting: the SDK uses TLS with the system roots rather than send a key in
    # clear, so the plain dev server is never reached with it
    settings = Settings(
        temporal_address=temporal_env.client.service_client.config.target_host,
        temporal_api_key=SecretStr("k"),
    )
    assert tls_config(settings) is None
    assert "InvalidContentType" in await _refused(settings)  # a TLS hello to plain gRPC


# --- settings that are wrong are one clear line, before anything dials ---


ADDRESS = "temporal.example.com:7233"


def test_tls_settings_map_to_the_sdk(pki: Pki) -> None:
    assert tls_config(Settings(temporal_address=ADDRESS)) is None
    system = tls_config(Settings(temporal_address=ADDRESS, temporal_tls=True))
    assert system is not None and system.server_root_ca_cert is None
    assert system.client_cert is None and system.domain is None
    full = tls_config(
        Settings(
            temporal_address=ADDRESS,
            temporal_tls_ca=pki.ca,
            temporal_tls_cert=pki.client_cert,
            temporal_tls_key=pki.client_key,
            temporal_tls_server_name="frontend.internal",
        )
    )
    assert full is not None
    assert full.server_root_ca_cert == pki.ca.read_bytes()
    assert full.client_cert == pki.client_cert.read_bytes()
    assert full.client_private_key == pki.client_key.read_bytes()
    assert full.domain == "frontend.internal"
    named = tls_config(Settings(temporal_address=ADDRESS, temporal_tls_server_name="x"))
    assert named is not None and named.domain == "x"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temporal_tls_cert": "client.pem"}, "AIOPS_TEMPORAL_TLS_CERT is set without"),
        ({"temporal_tls_key": "client.key"}, "AIOPS_TEMPORAL_TLS_KEY is set without"),
        (
            {"temporal_tls_ca": "missing.pem"},
            r"cannot read AIOPS_TEMPORAL_TLS_CA=.*missing\.pem: No such file",
        ),
        (
            {"temporal_tls_cert": "missing.pem", "temporal_tls_key": "client.key"},
            r"cannot read AIOPS_TEMPORAL_TLS_CERT=.*missing\.pem",
        ),
        (
            {"temporal_tls_cert": "client.pem", "temporal_tls_key": "client.pem"},
            r"AIOPS_TEMPORAL_TLS_KEY=.*client\.pem is not a PEM private key",
        ),
        ({"temporal_tls_ca": "client.key"}, "AIOPS_TEMPORAL_TLS_CA=.* is not a PEM certificate"),
    ],
)
async def test_bad_tls_settings_are_one_clear_line(
    pki: Pki, fields: dict[str, str], message: str
) -> None:
    root = pki.ca.parent
    paths: dict[str, Any] = {k: root / v for k, v in fields.items()}
    settings = Settings(temporal_address=ADDRESS, **paths)
    with pytest.raises(ConfigError, match=message) as failed:
        await connect(settings)
    assert failed.value.exit_code == 2 and "\n" not in str(failed.value)


async def test_tls_or_a_key_without_an_address_is_refused(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="TEMPORAL_ADDRESS is not"):
        await connect(Settings(temporal_address=None, temporal_tls_ca=pki.ca))
    with pytest.raises(ConfigError, match="AIOPS_TEMPORAL_API_KEY is set but TEMPORAL_ADDRESS"):
        await connect(Settings(temporal_address=None, temporal_api_key=SecretStr("k")))
