"""The Temporal client every process uses: the configured or dev-stack address, the
namespace, TLS/mTLS and the API key (aiops/temporal_tls.py), the pydantic data converter
(workflow inputs and outputs are pydantic), and tracing, so one trace runs from the
listener's signal through workflows to activities."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from aiops import telemetry
from aiops.config import Settings
from aiops.endpoints import resolve_temporal_address
from aiops.temporal_tls import api_key, tls_config


async def connect(
    settings: Settings,
    service_name: str | None = None,
    *,
    serve_metrics: bool = False,
) -> Client:
    """A client; with a service_name, traced as that service. Only the worker serves
    Prometheus metrics (one endpoint per process). Bad TLS settings raise ConfigError
    before anything dials."""
    tls = tls_config(settings)
    key = api_key(settings)
    return await Client.connect(
        resolve_temporal_address(settings),
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        plugins=telemetry.plugins(settings, service_name) if service_name else [],
        runtime=telemetry.runtime(settings) if serve_metrics else None,
        # None: plain gRPC, or TLS with the system roots when an API key is set (the SDK's
        # default, so a key is never sent in clear)
        tls=tls,
        api_key=key,
    )
