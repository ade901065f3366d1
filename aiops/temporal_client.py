"""The Temporal client every process uses: the configured or dev-stack address, the
namespace, TLS/mTLS and the API key (aiops/temporal_tls.py), the pydantic data converter
(workflow inputs and outputs are pydantic) with, when AIOPS_PAYLOAD_KEY is set, the
AES-GCM payload codec (aiops/codec), and tracing, so one trace runs from the listener's
signal through workflows to activities.

Anything that decodes payloads without a connected client (a Replayer, a history read
from a file) takes `data_converter(settings)`, so it reads encrypted histories too."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from aiops import telemetry
from aiops.codec import codec_from_settings
from aiops.config import Settings
from aiops.endpoints import resolve_temporal_address
from aiops.temporal_tls import api_key, tls_config


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter, with the payload codec when AIOPS_PAYLOAD_KEY is set.
    A malformed key is a ConfigError naming AIOPS_PAYLOAD_KEY."""
    codec = codec_from_settings(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


async def connect(
    settings: Settings,
    service_name: str | None = None,
    *,
    serve_metrics: bool = False,
) -> Client:
    """A client; with a service_name, traced as that service. Only the worker serves
    Prometheus metrics (one endpoint per process). Bad TLS settings
    or a malformed AIOPS_PAYLOAD_KEY raise ConfigError before anything dials."""
    converter = data_converter(settings)
    tls = tls_config(settings)
    key = api_key(settings)
    return await Client.connect(
        resolve_temporal_address(settings),
        namespace=settings.temporal_namespace,
        data_converter=converter,
        plugins=telemetry.plugins(settings, service_name) if service_name else [],
        runtime=telemetry.runtime(settings) if serve_metrics else None,
        # None: plain gRPC, or TLS with the system roots when an API key is set (the SDK's
        # default, so a key is never sent in clear)
        tls=tls,
        api_key=key,
    )
