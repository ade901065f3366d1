"""Send a signal with the real `temporal` CLI, as an operator would."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from aiops.devstack import binaries


async def cli_signal(
    address: str, workflow_id: str, name: str, payload: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    argv = [str(binaries.temporal_cli()), "workflow", "signal", "--address", address]
    argv += ["--workflow-id", workflow_id, "--name", name, "--input", json.dumps(payload)]
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
