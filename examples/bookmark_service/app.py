"""The HTTP API (FastAPI): bookmarks, health, metrics, and the admin endpoints aiops calls."""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

import redis.asyncio as aioredis
from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from aiops.events.mesh import EventMesh
from examples.bookmark_service.imports import ImportDeadlineExceeded
from examples.bookmark_service.models import (
    Bookmark,
    BookmarkIn,
    BookmarkPage,
    BookmarkPatch,
    ConfigUpdate,
    FaultSwitch,
    Health,
    ImportResult,
    ScaleRequest,
)
from examples.bookmark_service.options import ServiceOptions
from examples.bookmark_service.runtime_config import InvalidConfig
from examples.bookmark_service.service import BookmarkService
from examples.bookmark_service.store import DuplicateBookmark

MAX_IMPORT_ITEMS: Final = 10_000
# operational endpoints stay out of the API's latency and error figures
UNMEASURED: Final = ("/health", "/metrics", "/admin", "/docs", "/openapi.json")


def create_app(options: ServiceOptions) -> FastAPI:
    mesh = EventMesh(aioredis.Redis.from_url(options.redis_url))
    service = BookmarkService(options, mesh)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="bookmark-api",
        summary="The seed's bookmark service, with fault switches for the aiops demo",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as error:
            message = service.request_failed(request.method, request.url.path, error)
            response = JSONResponse({"error": message}, status_code=500)
        if not request.url.path.startswith(UNMEASURED):
            service.stats.record(
                (time.perf_counter() - started) * 1000, failed=response.status_code >= 500
            )
        return response

    @app.exception_handler(InvalidConfig)
    async def invalid_config(_: Request, error: InvalidConfig) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.exception_handler(DuplicateBookmark)
    async def duplicate(_: Request, error: DuplicateBookmark) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=409)

    def not_found(bookmark_id: int) -> HTTPException:
        return HTTPException(status_code=404, detail=f"no bookmark {bookmark_id}")

    @app.get("/health", response_model=Health)
    async def health() -> JSONResponse:
        report = await service.health()
        code = 200 if report.status == "healthy" else 503
        return JSONResponse(report.model_dump(mode="json"), status_code=code)

    @app.get("/metrics")
    async def metrics() -> dict[str, Any]:
        return service.metrics()

    @app.post("/bookmarks", status_code=201)
    async def create(item: BookmarkIn) -> Bookmark:
        created = await service.store.create(item)
        service.created(item, created.id)
        return created

    @app.get("/bookmarks")
    async def list_bookmarks(
        page: Annotated[int, Query(ge=1)] = 1, user_id: str | None = None
    ) -> BookmarkPage:
        size = service.config.current.page_size
        items, total = await service.store.page(page, size, user_id)
        return BookmarkPage(items=items, page=page, page_size=size, total=total)

    @app.get("/bookmarks/search")
    async def search(
        q: str = "",
        tag: str | None = None,
        user_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[Bookmark]:
        return await service.search(q, tag, user_id, limit)

    @app.get("/bookmarks/{bookmark_id}")
    async def get(bookmark_id: int) -> Bookmark:
        found = await service.store.get(bookmark_id)
        if found is None:
            raise not_found(bookmark_id)
        return found

    @app.patch("/bookmarks/{bookmark_id}")
    async def update(bookmark_id: int, patch: BookmarkPatch) -> Bookmark:
        updated = await service.store.update(bookmark_id, patch)
        if updated is None:
            raise not_found(bookmark_id)
        service.invalidate()
        return updated

    @app.delete("/bookmarks/{bookmark_id}", status_code=204)
    async def delete(bookmark_id: int) -> Response:
        if not await service.store.delete(bookmark_id):
            raise not_found(bookmark_id)
        service.invalidate()
        return Response(status_code=204)

    @app.post("/bookmarks/import", response_model=ImportResult)
    async def import_bookmarks(items: Annotated[list[Any], Body()]) -> JSONResponse:
        if len(items) > MAX_IMPORT_ITEMS:
            raise HTTPException(
                status_code=413, detail=f"at most {MAX_IMPORT_ITEMS} bookmarks per import"
            )
        try:
            result = await service.importer.run(items, service.config.current.import_deadline_s)
        except ImportDeadlineExceeded as exceeded:
            report = exceeded.report.model_dump(mode="json")
            service.import_timed_out(report)
            return JSONResponse(report, status_code=504)
        if result.failed:
            service.import_had_failures(
                result.received, [f.model_dump(mode="json") for f in result.failed]
            )
        return JSONResponse(result.model_dump(mode="json"))

    app.include_router(_admin_router(service, options.admin_token))
    return app


def _admin_router(service: BookmarkService, token: str | None) -> APIRouter:
    expected = f"Bearer {token}".encode() if token else None

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if expected is None:
            return
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="admin endpoints need the header Authorization: Bearer <admin token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

    @admin.get("/config")
    async def get_config() -> dict[str, Any]:
        return service.config.current.model_dump()

    @admin.post("/config")
    async def set_config(update: ConfigUpdate) -> dict[str, Any]:
        return service.set_config(update.key, update.value).model_dump()

    @admin.get("/scale")
    async def get_scale() -> dict[str, int]:
        return service.scale_state()

    @admin.post("/scale")
    async def scale(request: ScaleRequest) -> dict[str, int]:
        service.set_config("replicas", request.replicas)
        return service.scale_state()

    @admin.get("/cache")
    async def cache() -> dict[str, int]:
        return service.cache_state()

    @admin.post("/cache/clear")
    async def clear_cache(_: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, int]:
        return service.clear_cache()

    @admin.get("/logs")
    async def logs(limit: Annotated[int, Query(ge=0, le=500)] = 100) -> dict[str, Any]:
        return service.error_log.report(limit)

    @admin.get("/faults")
    async def faults() -> dict[str, Any]:
        return service.fault_state()

    @admin.post("/faults")
    async def switch_fault(switch: FaultSwitch) -> JSONResponse:
        state = service.set_fault(switch.fault, switch.enabled)
        if switch.fault == "crash" and switch.enabled:
            return JSONResponse({"crashing": True, **state}, status_code=202)
        return JSONResponse(state)

    return admin
