"""AES-256-GCM encryption of every Temporal payload, with key ids and rotation.

AIOPS_PAYLOAD_KEY is `id1:base64key[,id0:base64key...]`: the first key encrypts, every key
listed decrypts. To rotate, put a new key first and keep the old ones until every history
they encrypted has aged out of the namespace's retention.

An encrypted payload is the whole original Payload (metadata and data, serialized
protobuf) sealed with AES-GCM under a fresh 96-bit random nonce; its metadata says only
`encoding: binary/encrypted` and `encryption-key-id: <id>`, and its data is
nonce || ciphertext || tag. The key id is authenticated too (associated data), so a
payload cannot be passed off as another key's. A payload that is not encrypted decodes
unchanged: histories written before the codec was switched on stay readable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from aiops.config import ConfigError, Settings
from aiops.errors import AiopsError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
_VARIABLE = "AIOPS_PAYLOAD_KEY"
_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_AAD_PREFIX = b"aiops payload v1:"
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


class PayloadDecryptError(AiopsError):
    """An encrypted payload cannot be decrypted: its key is not configured, or it fails
    authentication (another key, or tampered bytes). The message names the key id."""


def _decode_key(key_id: str, text: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    text = text.strip()
    if not _BASE64.match(text):
        raise ConfigError(f"{_VARIABLE}: key {key_id!r} is not base64")
    padded = (text + "=" * (-len(text) % 4)).encode("ascii")
    try:
        raw = base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{_VARIABLE}: key {key_id!r} is not base64") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(
            f"{_VARIABLE}: key {key_id!r} is {len(raw)} bytes, AES-256 needs {KEY_BYTES} "
            "(make one with `openssl rand -base64 32`)"
        )
    return raw


def parse_payload_keys(value: str) -> list[tuple[str, bytes]]:
    """`id1:base64key[,id0:base64key...]` as (id, key) pairs, the encrypting key first.
    A malformed value is a one-line ConfigError naming AIOPS_PAYLOAD_KEY (never the key)."""
    pairs: list[tuple[str, bytes]] = []
    entries = [e.strip() for e in value.split(",")]
    if not any(entries):
        raise ConfigError(f"{_VARIABLE} is empty: give id:base64key[,id:base64key...]")
    for position, entry in enumerate(entries, start=1):
        key_id, sep, key_text = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not key_text.strip():
            raise ConfigError(
                f"{_VARIABLE}: entry {position} is not id:base64key "
                "(e.g. k2:$(openssl rand -base64 32))"
            )
        if not _KEY_ID_PATTERN.match(key_id):
            raise ConfigError(
                f"{_VARIABLE}: entry {position} has key id {key_id!r}: use 1 to 64 letters, "
                "digits, '.', '_' or '-'"
            )
        if any(key_id == known for known, _ in pairs):
            raise ConfigError(f"{_VARIABLE}: key id {key_id!r} is listed twice")
        pairs.append((key_id, _decode_key(key_id, key_text)))
    return pairs


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode("ascii")


class AesGcmCodec(PayloadCodec):
    """Encrypts with the first key, decrypts with any key listed (found by the payload's
    key id); passes through payloads that are not encrypted."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError(f"{_VARIABLE}: at least one key is needed")
        for key_id, key in keys:
            if len(key) != KEY_BYTES:
                raise ConfigError(f"{_VARIABLE}: key {key_id!r} must be {KEY_BYTES} bytes")
        self._encrypt_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def from_value(cls, value: str) -> AesGcmCodec:
        return cls(parse_payload_keys(value))

    @property
    def encrypting_key_id(self) -> str:
        return self._encrypt_id

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._encrypt_id]
        aad = _aad(self._encrypt_id)
        encoded: list[Payload] = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), aad)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self._encrypt_id.encode("ascii")},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(payload) for payload in payloads]

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before the codec was on (or by another client)
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        if not key_id:
            raise PayloadDecryptError(
                f"an encrypted payload names no {KEY_ID}: it was not written by aiops' codec"
            )
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptError(
                f"payload encrypted with key id {key_id!r}, which {_VARIABLE} does not list "
                f"(it has {', '.join(map(repr, self._ciphers))}): add that key back to decrypt"
            )
        data = payload.data
        if len(data) < NONCE_BYTES + 16:
            raise PayloadDecryptError(f"payload encrypted with key id {key_id!r} is truncated")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id))
        except InvalidTag:
            raise PayloadDecryptError(
                f"payload encrypted with key id {key_id!r} fails authentication: the key "
                f"configured under {key_id!r} is not the one it was written with, or it was altered"
            ) from None
        original = Payload()
        original.ParseFromString(plain)
        return original


def codec_from_settings(settings: Settings) -> AesGcmCodec | None:
    """The codec AIOPS_PAYLOAD_KEY asks for; None when it is unset."""
    if settings.payload_key is None:
        return None
    return AesGcmCodec.from_value(settings.payload_key.get_secret_value())
