"""Payload encryption for Temporal: the AES-GCM codec (aesgcm) every client and worker uses
when AIOPS_PAYLOAD_KEY is set, and the codec server (server) that lets the Web UI and
`temporal workflow show` read encrypted histories (docs/payload-encryption.md)."""

from aiops.codec.aesgcm import (
    ENCODING,
    KEY_ID,
    AesGcmCodec,
    PayloadDecryptError,
    codec_from_settings,
    parse_payload_keys,
)

__all__ = [
    "ENCODING",
    "KEY_ID",
    "AesGcmCodec",
    "PayloadDecryptError",
    "codec_from_settings",
    "parse_payload_keys",
]
