"""How aiops reaches a secured Temporal frontend: the AIOPS_TEMPORAL_TLS* settings as the
SDK's TLSConfig, and the API key, checked before anything dials.

- nothing set: plain gRPC (the dev server, or a cluster on a private network);
- AIOPS_TEMPORAL_TLS=1 alone: TLS, the frontend's certificate checked against the
  system's CA roots;
- AIOPS_TEMPORAL_TLS_CA: TLS against that CA instead (a private PKI);
- AIOPS_TEMPORAL_TLS_CERT + AIOPS_TEMPORAL_TLS_KEY: mTLS, this client's certificate;
- AIOPS_TEMPORAL_TLS_SERVER_NAME: the name the frontend's certificate must carry (and the
  SNI sent) when it is not the host of TEMPORAL_ADDRESS;
- AIOPS_TEMPORAL_API_KEY: sent as `Authorization: Bearer <key>` on every call; with no TLS
  setting the SDK turns TLS on (system roots), so a key never crosses the wire in clear.

A mistake is a ConfigError (exit code 2) naming the variable, not a handshake failure.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.service import TLSConfig

from aiops.config import ConfigError, Settings


def _read_pem(variable: str, path: Path, marker: bytes, what: str) -> bytes:
    try:
        data = path.expanduser().read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {variable}={path}: {error.strerror or error}") from None
    if marker not in data:
        raise ConfigError(f"{variable}={path} is not a PEM {what} (no {marker.decode()!r})")
    return data


def tls_requested(settings: Settings) -> bool:
    return bool(
        settings.temporal_tls
        or settings.temporal_tls_ca
        or settings.temporal_tls_cert
        or settings.temporal_tls_key
        or settings.temporal_tls_server_name
    )


def tls_config(settings: Settings) -> TLSConfig | None:
    """The TLS the settings ask for, files read and checked; None for plain gRPC."""
    cert, key = settings.temporal_tls_cert, settings.temporal_tls_key
    if cert is not None and key is None:
        raise ConfigError(
            "AIOPS_TEMPORAL_TLS_CERT is set without AIOPS_TEMPORAL_TLS_KEY: mTLS needs the "
            "client certificate and its private key"
        )
    if key is not None and cert is None:
        raise ConfigError(
            "AIOPS_TEMPORAL_TLS_KEY is set without AIOPS_TEMPORAL_TLS_CERT: mTLS needs the "
            "client certificate and its private key"
        )
    if not tls_requested(settings):
        return None
    if settings.temporal_address is None:
        raise ConfigError(
            "AIOPS_TEMPORAL_TLS* is set but TEMPORAL_ADDRESS is not: the embedded dev server "
            "speaks plain gRPC; set TEMPORAL_ADDRESS to the TLS frontend"
        )
    ca = settings.temporal_tls_ca
    return TLSConfig(
        server_root_ca_cert=(
            _read_pem("AIOPS_TEMPORAL_TLS_CA", ca, b"-----BEGIN CERTIFICATE-----", "certificate")
            if ca is not None
            else None
        ),
        client_cert=(
            _read_pem(
                "AIOPS_TEMPORAL_TLS_CERT", cert, b"-----BEGIN CERTIFICATE-----", "certificate"
            )
            if cert is not None
            else None
        ),
        client_private_key=(
            _read_pem("AIOPS_TEMPORAL_TLS_KEY", key, b"PRIVATE KEY-----", "private key")
            if key is not None
            else None
        ),
        domain=settings.temporal_tls_server_name or None,
    )


def api_key(settings: Settings) -> str | None:
    """The API key to send, or None; refused for the dev stack, which takes none."""
    if settings.temporal_api_key is None:
        return None
    value = settings.temporal_api_key.get_secret_value().strip()
    if not value:
        raise ConfigError("AIOPS_TEMPORAL_API_KEY is set but empty")
    if settings.temporal_address is None:
        raise ConfigError(
            "AIOPS_TEMPORAL_API_KEY is set but TEMPORAL_ADDRESS is not: the embedded dev "
            "server takes no API key; set TEMPORAL_ADDRESS to the cluster it is for"
        )
    return value
