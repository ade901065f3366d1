"""The running service: storage, imports, config, faults, health, metrics and events.

The HTTP layer (app.py) only translates requests to these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from typing import Any, Final

from aiops.events.envelope import EventType, Severity
from aiops.events.mesh import EventMesh
from examples.bookmark_service.error_log import ErrorLog
from examples.bookmark_service.events import EventSink
from examples.bookmark_service.imports import Importer
from examples.bookmark_service.metrics import MB, RequestStats, rss_bytes
from examples.bookmark_service.models import Bookmark, BookmarkIn, Check, FaultName, Health
from examples.bookmark_service.options import ServiceOptions
from examples.bookmark_service.runtime_config import ConfigStore, RuntimeConfig
from examples.bookmark_service.slots import Slots
from examples.bookmark_service.store import BookmarkStore, ConnectionPool

log = logging.getLogger("bookmark_service")

# the leak grows in steps of this period, so RSS rises every second as the brief says
LEAK_TICK_S: Final = 1.0
CRASH_DELAY_S: Final = 0.2
CACHE_ENTRIES: Final = 1024

SearchKey = tuple[str, str | None, str | None, int]


class BookmarkService:
    def __init__(self, options: ServiceOptions, mesh: EventMesh) -> None:
        options.data_dir.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.started = time.monotonic()
        self.config = ConfigStore(
            options.data_dir / "config.json",
            RuntimeConfig(
                db_pool_size=options.db_pool_size,
                replicas=options.replicas,
                import_deadline_s=options.import_deadline_s,
                page_size=options.page_size,
            ),
        )
        current = self.config.current
        self.pool = ConnectionPool(
            options.data_dir / "bookmarks.db", current.db_pool_size, options.pool_timeout_s
        )
        self.store = BookmarkStore(options.data_dir / "bookmarks.db", self.pool)
        self.store.migrate()
        self.workers = Slots(current.replicas)
        self.events = EventSink(mesh, options.stream, options.name)
        self.importer = Importer(self.store, self.workers, self._upstream_delay_s, self.created)
        self.stats = RequestStats()
        self.error_log = ErrorLog()
        self.cache: dict[SearchKey, list[Bookmark]] = {}
        self.cache_hits = 0
        self.cache_misses = 0
        # faults
        self.slow_imports = False
        self.memory_leak = False
        self.leaked: list[bytearray] = []
        self.bad_config_previous: int | None = None
        self._memory_over = False
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---

    async def start(self) -> None:
        logging.getLogger().addHandler(self.error_log)
        self._tasks = [
            asyncio.create_task(self.events.run(), name="events"),
            asyncio.create_task(self._metrics_loop(), name="metrics"),
            asyncio.create_task(self._tick_loop(), name="tick"),
        ]
        log.info(
            "%s started (pid %d); events to %s", self.options.name, os.getpid(), self.events.stream
        )

    async def stop(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
        await self.events.drain(timeout=2.0)
        self._tasks[0].cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pool.close()
        await self.events.mesh.aclose()
        log.info("%s stopped; %d events published", self.options.name, self.events.published)
        logging.getLogger().removeHandler(self.error_log)

    # --- bookmarks ---

    def created(self, item: BookmarkIn, bookmark_id: int) -> None:
        self.cache.clear()
        self.events.emit(
            EventType.BOOKMARK_CREATED,
            {
                "user_id": item.user_id,
                "url": item.url,
                "category": item.category,
                "bookmark_id": bookmark_id,
                "message": "bookmark created",
            },
            Severity.INFO,
        )

    def invalidate(self) -> None:
        self.cache.clear()

    async def search(
        self, query: str, tag: str | None, user_id: str | None, limit: int
    ) -> list[Bookmark]:
        key = (query, tag, user_id, limit)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return cached
        self.cache_misses += 1
        found = await self.store.search(query, tag, user_id, limit)
        if len(self.cache) >= CACHE_ENTRIES:
            self.cache.clear()
        self.cache[key] = found
        return found

    def clear_cache(self) -> dict[str, int]:
        cleared = len(self.cache)
        self.cache.clear()
        log.info("search cache cleared (%d entries)", cleared)
        return {"cleared": cleared, **self.cache_state()}

    def cache_state(self) -> dict[str, int]:
        return {"entries": len(self.cache), "hits": self.cache_hits, "misses": self.cache_misses}

    # --- imports ---

    def _upstream_delay_s(self) -> float:
        return self.options.slow_item_ms / 1000 if self.slow_imports else 0.0

    def import_timed_out(self, report: dict[str, Any]) -> None:
        log.warning("%s", report["error"])
        self.events.emit(
            EventType.SERVICE_TIMEOUT,
            {
                "message": report["error"],
                "operation": "import",
                "received": report["received"],
                "processed": report["processed"],
                "deadline_s": report["deadline_s"],
                "duration_ms": report["duration_ms"],
                "replicas": report["replicas"],
            },
            Severity.WARNING,
        )

    def import_had_failures(self, received: int, failures: list[dict[str, Any]]) -> None:
        message = f"Import failed for {len(failures)} of {received} bookmarks: invalid items"
        log.warning("%s", message)
        self.events.emit(
            EventType.IMPORT_FAILED,
            {"message": message, "received": received, "failures": failures[:10]},
            Severity.WARNING,
        )

    # --- request failures ---

    def request_failed(self, method: str, path: str, error: BaseException) -> str:
        message = f"request failed: {error}"
        log.error("%s %s failed: %s", method, path, error, exc_info=error)
        self.events.emit(
            EventType.SERVICE_ERROR,
            {
                "message": message,
                "method": method,
                "path": path,
                "status": 500,
                "error_type": type(error).__name__,
            },
            Severity.ERROR,
        )
        return message

    # --- config and scale ---

    def set_config(self, key: str, value: Any) -> RuntimeConfig:
        before = self.config.current
        after = self.config.updated(key, value)
        self._apply(after)
        log.info("config %s: %r -> %r", key, getattr(before, key), getattr(after, key))
        return after

    def _apply(self, config: RuntimeConfig) -> None:
        if config.db_pool_size != 0:
            self.bad_config_previous = None
        self.config.store(config)
        self.pool.resize(config.db_pool_size)
        self.workers.resize(config.replicas)

    def scale_state(self) -> dict[str, int]:
        return {
            "replicas": self.workers.size,
            "busy": self.workers.in_use,
            "queue_depth": self.workers.waiting,
        }

    # --- faults ---

    def set_fault(self, fault: FaultName, enabled: bool) -> dict[str, Any]:
        if fault == "slow_imports":
            self.slow_imports = enabled
        elif fault == "memory_leak":
            # switching it off stops the growth; what leaked stays until a restart
            self.memory_leak = enabled
        elif fault == "bad_config":
            self._bad_config(enabled)
        elif fault == "disk_full":
            self._disk_full(enabled)
        elif enabled:
            self._crash_soon()
        log.warning("fault %s %s", fault, "enabled" if enabled else "disabled")
        return self.fault_state()

    def _bad_config(self, enabled: bool) -> None:
        current = self.config.current
        if enabled and current.db_pool_size != 0:
            self.bad_config_previous = current.db_pool_size
            self._apply(current.model_copy(update={"db_pool_size": 0}))
        elif not enabled and current.db_pool_size == 0:
            restore = self.bad_config_previous or self.options.db_pool_size or 1
            self._apply(current.model_copy(update={"db_pool_size": restore}))

    def _disk_full(self, enabled: bool) -> None:
        # process state, unlike bad_config: a restart opens connections without the cap
        if enabled:
            pages = self.pool.refuse_growth()
            log.warning("disk_full: the database may not grow past %d pages", pages)
        else:
            self.pool.allow_growth()

    def _crash_soon(self) -> None:
        code = self.options.crash_exit_code

        def crash() -> None:
            log.critical("crash fault: exiting with code %d", code)
            sys.stderr.flush()
            # abrupt on purpose: no shutdown, no goodbye event, as a real crash
            os._exit(code)

        asyncio.get_running_loop().call_later(CRASH_DELAY_S, crash)

    def fault_state(self) -> dict[str, Any]:
        return {
            "slow_imports": self.slow_imports,
            "memory_leak": self.memory_leak,
            "leaked_mb": round(self.leaked_mb, 1),
            # derived from the config itself: it survives restarts, as the bad value does
            "bad_config": self.config.current.db_pool_size == 0,
            "bad_config_previous": self.bad_config_previous,
            "disk_full": self.pool.max_pages is not None,
            "disk_full_max_pages": self.pool.max_pages,
            "crash_exit_code": self.options.crash_exit_code,
        }

    def active_faults(self) -> list[str]:
        state = self.fault_state()
        names = ("slow_imports", "memory_leak", "bad_config", "disk_full")
        return [name for name in names if state[name]]

    @property
    def leaked_mb(self) -> float:
        return sum(len(chunk) for chunk in self.leaked) / MB

    def _leak_step(self) -> None:
        if not self.memory_leak or self.leaked_mb >= self.options.leak_max_mb:
            return
        size = int(min(self.options.leak_mb_per_s, self.options.leak_max_mb - self.leaked_mb) * MB)
        # filled, not zeroed: every page is written, so RSS really grows
        self.leaked.append(bytearray(b"\xa5") * size)

    # --- health and metrics ---

    def memory(self) -> tuple[float, float]:
        """(rss_mb, memory_usage): RSS and RSS as a percentage of the memory budget."""
        rss_mb = rss_bytes() / MB
        return round(rss_mb, 1), round(100 * rss_mb / self.options.memory_budget_mb, 1)

    async def health(self) -> Health:
        rss_mb, usage = self.memory()
        checks: dict[str, Check] = {}
        pool_size = self.config.current.db_pool_size
        checks["config"] = Check(
            ok=pool_size >= 1,
            detail=f"db_pool_size={pool_size}"
            + ("" if pool_size >= 1 else ": no database connections, every request fails"),
        )
        if pool_size >= 1:
            try:
                await self.store.ping()
                checks["database"] = Check(ok=True, detail="SELECT 1 answered")
            except Exception as error:
                checks["database"] = Check(ok=False, detail=str(error))
        else:
            checks["database"] = Check(ok=False, detail="no connections configured")
        limit = self.options.memory_limit_pct
        checks["memory"] = Check(
            ok=usage < limit,
            detail=f"rss {rss_mb} MB is {usage}% of the {self.options.memory_budget_mb:g} MB "
            f"budget (limit {limit:g}%)",
        )
        self._watch_memory(rss_mb, usage)
        return Health(
            status="healthy" if all(c.ok for c in checks.values()) else "unhealthy",
            service=self.options.name,
            pid=os.getpid(),
            uptime=round(time.monotonic() - self.started, 1),
            memory_usage=usage,
            rss_mb=rss_mb,
            checks=checks,
            faults=self.active_faults(),
        )

    def _watch_memory(self, rss_mb: float, usage: float) -> None:
        # Memory is the one unhealthy state no request reports (bad config already shows
        # as ServiceError on each failing request), so it has its own event, once per change.
        over = usage >= self.options.memory_limit_pct
        if over == self._memory_over:
            return
        self._memory_over = over
        figures = {
            "memory_usage": usage,
            "rss_mb": rss_mb,
            "memory_budget_mb": self.options.memory_budget_mb,
            "limit_pct": self.options.memory_limit_pct,
            "leaked_mb": round(self.leaked_mb, 1),
            "uptime": round(time.monotonic() - self.started, 1),
        }
        if over:
            log.error("memory usage over budget: %s%% (rss %s MB)", usage, rss_mb)
            self.events.emit(
                EventType.SERVICE_UNHEALTHY,
                {"message": "memory usage over budget", "check": "memory", **figures},
                Severity.ERROR,
            )
        else:
            log.info("memory usage back under budget: %s%%", usage)
            self.events.emit(
                EventType.SERVICE_RECOVERED,
                {"message": "memory usage back under budget", "check": "memory", **figures},
                Severity.INFO,
            )

    def metrics(self) -> dict[str, Any]:
        rss_mb, usage = self.memory()
        figures = self.stats.figures()
        return {
            "message": f"{self.options.name} metrics",
            "memory_usage": usage,
            "rss_mb": rss_mb,
            "memory_budget_mb": self.options.memory_budget_mb,
            "latency_ms": figures.latency_ms,
            "error_rate": figures.error_rate,
            "requests": figures.requests,
            "window_s": self.stats.window_s,
            "queue_depth": self.workers.waiting,
            "import_workers_busy": self.workers.in_use,
            "replicas": self.workers.size,
            "db_pool_size": self.pool.size,
            "db_connections_in_use": self.pool.in_use,
            "uptime": round(time.monotonic() - self.started, 1),
            "leaked_mb": round(self.leaked_mb, 1),
            "events_dropped": self.events.dropped,
        }

    async def _metrics_loop(self) -> None:
        while True:
            try:
                self.events.emit(EventType.METRIC_REPORT, self.metrics(), Severity.INFO)
            except Exception:
                log.exception("metric report failed")
            await asyncio.sleep(self.options.metrics_interval_s)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(LEAK_TICK_S)
            try:
                self._leak_step()
                self._watch_memory(*self.memory())
            except Exception:
                log.exception("memory tick failed")
