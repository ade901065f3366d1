"""The demo's target: the bookmark service, started under aiops's control, and a client that
switches its faults and drives the traffic that makes each fault visible."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from aiops.actions.process import ProcessAdapter
from aiops.devstack.ports import free_port
from aiops.registry import ServiceRegistry
from aiops.registry.models import ServiceRecord
from aiops.registry.store import UnknownService
from examples.bookmark_service.options import ServiceOptions
from examples.bookmark_service.registration import service_definition


def demo_options(home: Path, redis_url: str, stream_prefix: str) -> ServiceOptions:
    """Small budgets and short intervals, so each fault shows within seconds."""
    data_dir = home / "demo" / "bookmark-api"
    # config.json outlives restarts by design: a fresh run starts from a clean config
    shutil.rmtree(data_dir, ignore_errors=True)
    return ServiceOptions(
        port=free_port(),
        redis_url=redis_url,
        data_dir=data_dir,
        stream_prefix=stream_prefix,
        metrics_interval_s=2,
        memory_budget_mb=192,
        leak_mb_per_s=32,
    )


class BookmarkTarget:
    def __init__(
        self, options: ServiceOptions, registry: ServiceRegistry, processes: ProcessAdapter
    ) -> None:
        self.options = options
        self.name = options.name
        self._registry = registry
        self._processes = processes
        self.http = httpx.AsyncClient(base_url=options.endpoint, timeout=30.0)
        # the service's own pid before a fault: shadow mode shows nobody replaced it
        self.pid_before_fault: int | None = None

    async def start(self) -> ServiceRecord:
        definition = service_definition(self.options)
        # the monitor probes it every second, so a crash shows at once
        metadata = {**definition.metadata, "probe_interval_s": 1.0}
        await self._registry.register(definition.model_copy(update={"metadata": metadata}))
        record = await self._registry.get(self.name)
        await self._processes.start(record)
        await self.wait_healthy(30.0)
        return await self._registry.get(self.name)

    async def stop(self) -> None:
        try:
            record = await self._registry.get(self.name)
            await self._processes.stop(record)
        except UnknownService:
            pass  # stopped before it was started
        finally:
            await self.http.aclose()

    async def restart_by_hand(self) -> None:
        """What the on-call engineer does when aiops only watches (shadow): start it again."""
        record = await self._registry.get(self.name)
        await self._processes.stop(record)
        await self._processes.start(await self._registry.get(self.name))
        await self.wait_healthy(30.0)

    async def health(self) -> httpx.Response:
        """The service's own word on itself, not the registry's."""
        return await self.http.get("/health")

    async def pid(self) -> int | None:
        record = await self._registry.get(self.name)
        return record.process.pid if record.process else None

    async def wait_healthy(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                response = await self.http.get("/health")
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not healthy within {timeout_s:g} s")
            await asyncio.sleep(0.2)

    async def fault(self, fault: str, enabled: bool = True) -> None:
        response = await self.request(
            "POST", "/admin/faults", json={"fault": fault, "enabled": enabled}
        )
        response.raise_for_status()

    async def config(self) -> dict[str, Any]:
        response = await self.request("GET", "/admin/config")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def import_bookmarks(self, count: int, invalid: int = 0) -> httpx.Response:
        items: list[dict[str, Any]] = [
            {"url": f"https://example.org/demo/{time.time_ns()}/{i}", "user_id": "demo"}
            for i in range(count - invalid)
        ]
        items += [{"url": f"ftp://bad.example/{i}", "user_id": "demo"} for i in range(invalid)]
        return await self.request("POST", "/bookmarks/import", json=items, timeout=60.0)

    async def add_bookmark(self) -> httpx.Response:
        return await self.request(
            "POST",
            "/bookmarks",
            json={"url": f"https://example.org/demo/{time.time_ns()}", "user_id": "demo"},
        )

    async def list_bookmarks(self) -> httpx.Response:
        return await self.request("GET", "/bookmarks")

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A user's request: while aiops restarts the service it may find nobody home, and
        a user would try again a moment later."""
        for attempt in range(50):
            try:
                return await self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")
