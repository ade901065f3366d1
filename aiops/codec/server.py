"""The codec server: Temporal's remote codec protocol over HTTP, for the Web UI and the CLI.

`POST .../encode` and `POST .../decode` take and return a Payloads message as protobuf
JSON, `{"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}`; only
the last part of the path counts, so the server can sit under any prefix. The Web UI
calls it from the browser, so CORS answers its origin (default: the dev stack's UI on
port 8233) with the headers it sends (content-type, x-namespace, authorization).

Every call needs `Authorization: Bearer <token>`, a JWT verified like the API's (the
shared secret or the OIDC issuer): decode needs the viewer role, encode the operator
role. 401 without a valid token, 403 without the role.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from aiops.auth import AuthError, Identity, Role
from aiops.auth.tokens import TokenVerifier
from aiops.codec.aesgcm import AesGcmCodec, PayloadDecryptError

log = logging.getLogger("aiops.codec")

DEFAULT_UI_ORIGINS = ("http://127.0.0.1:8233", "http://localhost:8233")
ALLOWED_HEADERS = ("content-type", "x-namespace", "authorization")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def _identify(request: Request, verifier: TokenVerifier, role: Role) -> Identity:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "the codec server needs Authorization: Bearer <token> (aiops token create)",
            headers=_CHALLENGE,
        )
    try:
        # an OIDC verification may fetch the issuer's keys: not on the event loop
        identity = await asyncio.to_thread(verifier.verify, token.strip())
    except AuthError as error:
        log.info("codec server refused a bearer token: %s", error)
        raise HTTPException(401, str(error), headers=_CHALLENGE) from None
    if not identity.can(role):
        have = ", ".join(r.value for r in identity.roles) or "no roles"
        raise HTTPException(403, f"this needs the {role.value} role; {identity.sub} has {have}")
    return identity


async def _payloads(request: Request) -> Payloads:
    body = await request.body()
    message = Payloads()
    try:
        json_format.Parse(body or b"{}", message)
    except (json_format.ParseError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"the body is not a Payloads JSON document: {error}") from None
    return message


def _respond(payloads: Payloads) -> Response:
    return Response(json_format.MessageToJson(payloads), media_type="application/json")


def create_codec_app(
    codec: AesGcmCodec,
    verifier: TokenVerifier,
    ui_origins: Sequence[str] = DEFAULT_UI_ORIGINS,
) -> FastAPI:
    app = FastAPI(
        title="aiops codec server",
        summary="Temporal's remote codec: encrypt and decrypt aiops payloads (AES-GCM)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def encode(request: Request) -> Response:
        identity = await _identify(request, verifier, Role.OPERATOR)
        payloads = await _payloads(request)
        encoded = await codec.encode(payloads.payloads)
        log.info(
            "encoded %d payload(s) for %s (namespace %s)",
            len(encoded),
            identity.sub,
            request.headers.get("x-namespace", "-"),
        )
        return _respond(Payloads(payloads=encoded))

    async def decode(request: Request) -> Response:
        identity = await _identify(request, verifier, Role.VIEWER)
        payloads = await _payloads(request)
        try:
            decoded = await codec.decode(payloads.payloads)
        except PayloadDecryptError as error:
            raise HTTPException(422, str(error)) from None
        log.info(
            "decoded %d payload(s) for %s (namespace %s)",
            len(decoded),
            identity.sub,
            request.headers.get("x-namespace", "-"),
        )
        return _respond(Payloads(payloads=decoded))

    # only the last part of the path counts (the protocol): /encode, /ns/default/encode...
    app.add_api_route("/encode", encode, methods=["POST"])
    app.add_api_route("/decode", decode, methods=["POST"])
    app.add_api_route("/{prefix:path}/encode", encode, methods=["POST"])
    app.add_api_route("/{prefix:path}/decode", decode, methods=["POST"])
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(ui_origins),
        allow_methods=["POST"],
        allow_headers=list(ALLOWED_HEADERS),
        # the UI may send cookies ("include cross-origin credentials"); origins are explicit
        allow_credentials=True,
        max_age=600,
    )
    return app
