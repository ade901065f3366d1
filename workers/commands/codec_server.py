"""`aiops codec-server`: serve Temporal's remote codec (aiops/codec/server.py) with uvicorn,
so the Web UI and `temporal workflow show` can read histories encrypted with
AIOPS_PAYLOAD_KEY."""

from __future__ import annotations

from typing import Annotated

import typer

from aiops.auth import AuthError
from aiops.auth.keys import token_verifier
from aiops.codec import codec_from_settings
from aiops.config import ConfigError, get_settings


def codec_server(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8234,
    ui_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--ui-origin",
            help="the Web UI's origin that CORS allows (repeatable); default: the dev "
            "stack's UI, http://127.0.0.1:8233 and http://localhost:8233",
        ),
    ] = None,
) -> None:
    """Serve the codec endpoint for the Temporal Web UI and CLI: POST /encode and
    POST /decode with {"payloads": [...]} (protobuf JSON), under any path prefix.

    Decrypts with every key in AIOPS_PAYLOAD_KEY, encrypts with the first. Every call
    needs `Authorization: Bearer <token>` (a JWT from `aiops token create` or the OIDC
    issuer): decode needs the viewer role, encode operator. Point the UI at it with
    `temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8234` (or the UI's
    codec endpoint setting, with "pass the user access token"), and the CLI with
    `temporal workflow show -w ID --codec-endpoint http://127.0.0.1:8234
    --codec-auth "Bearer $TOKEN"`. See docs/payload-encryption.md."""
    # FastAPI and uvicorn load here, not for every other command
    import uvicorn

    from aiops.codec.server import DEFAULT_UI_ORIGINS, create_codec_app

    settings = get_settings()
    codec = codec_from_settings(settings)
    if codec is None:
        raise ConfigError("AIOPS_PAYLOAD_KEY is not set: the codec server has no key to use")
    try:
        verifier = token_verifier(settings)
    except AuthError as error:
        raise ConfigError(f"cannot verify bearer tokens, so not serving: {error}") from None
    origins = [o.rstrip("/") for o in ui_origin] if ui_origin else list(DEFAULT_UI_ORIGINS)
    typer.echo(
        f"codec server on http://{host}:{port} (encrypting key {codec.encrypting_key_id!r}, "
        f"decrypting {', '.join(codec.key_ids)}; CORS for {', '.join(origins)})",
        err=True,
    )
    uvicorn.run(create_codec_app(codec, verifier, origins), host=host, port=port, log_level="info")
