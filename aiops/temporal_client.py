"""The Temporal client every process uses: the configured or dev-stack address, the
namespace, and the pydantic data converter (workflow inputs and outputs are pydantic)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from aiops.config import Settings
from aiops.endpoints import resolve_temporal_address


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        resolve_temporal_address(settings),
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
