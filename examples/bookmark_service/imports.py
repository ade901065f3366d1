"""POST /bookmarks/import: items processed by `replicas` workers at once, under a deadline.

Each item is validated, its metadata looked up (the page title, taken from the URL's host;
under the slow_imports fault the lookup waits slow_item_ms on a slow upstream while it holds
its worker), then stored. Items waiting for a worker are the queue_depth metric. More
replicas really means more items at once, which is why `scale` heals slow imports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from examples.bookmark_service.models import (
    BookmarkIn,
    ImportFailure,
    ImportResult,
    ImportTimedOut,
)
from examples.bookmark_service.slots import Slots
from examples.bookmark_service.store import BookmarkStore, DuplicateBookmark

ItemOutcome = Literal["imported", "skipped"] | ImportFailure


class ImportDeadlineExceeded(Exception):
    def __init__(self, report: ImportTimedOut) -> None:
        super().__init__(report.error)
        self.report = report


def _first_error(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in item["loc"])
    return f"{where}: {item['msg']}" if where else str(item["msg"])


def _consume(task: asyncio.Task[ItemOutcome]) -> None:
    # the first error is the one reported; later ones are read so asyncio does not warn
    if not task.cancelled():
        task.exception()


class Importer:
    def __init__(
        self,
        store: BookmarkStore,
        workers: Slots,
        upstream_delay_s: Callable[[], float],
        on_created: Callable[[BookmarkIn, int], None],
    ) -> None:
        self.store = store
        self.workers = workers
        self._upstream_delay_s = upstream_delay_s
        self._on_created = on_created

    async def _one(self, index: int, raw: Any) -> ItemOutcome:
        async with self.workers.hold():
            try:
                item = BookmarkIn.model_validate(raw)
            except ValidationError as error:
                url = raw.get("url") if isinstance(raw, dict) else None
                return ImportFailure(
                    index=index,
                    url=url if isinstance(url, str) else None,
                    error=_first_error(error),
                )
            delay = self._upstream_delay_s()
            if delay > 0:
                await asyncio.sleep(delay)
            if not item.title:
                item = item.model_copy(update={"title": urlsplit(item.url).hostname or item.url})
            try:
                created = await self.store.create(item)
            except DuplicateBookmark:
                return "skipped"
            self._on_created(item, created.id)
            return "imported"

    async def run(self, items: list[Any], deadline_s: float) -> ImportResult:
        """Import items; ImportDeadlineExceeded when they are not all done by the deadline."""
        started = time.monotonic()
        tasks = [asyncio.create_task(self._one(i, raw)) for i, raw in enumerate(items)]
        try:
            async with asyncio.timeout(deadline_s):
                outcomes = await asyncio.gather(*tasks)
        except TimeoutError:
            processed = sum(1 for t in tasks if t.done() and not t.cancelled())
            duration_ms = (time.monotonic() - started) * 1000
            raise ImportDeadlineExceeded(
                ImportTimedOut(
                    error=f"Import timeout: {processed} of {len(items)} bookmarks processed "
                    f"within the {deadline_s:g} s deadline",
                    received=len(items),
                    processed=processed,
                    duration_ms=round(duration_ms, 1),
                    deadline_s=deadline_s,
                    replicas=self.workers.size,
                )
            ) from None
        finally:
            # on an error in one item (a broken database), the others stop too
            for task in tasks:
                task.cancel()
                task.add_done_callback(_consume)
        failed = [o for o in outcomes if isinstance(o, ImportFailure)]
        return ImportResult(
            received=len(items),
            imported=sum(1 for o in outcomes if o == "imported"),
            skipped=sum(1 for o in outcomes if o == "skipped"),
            failed=failed,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            deadline_s=deadline_s,
            replicas=self.workers.size,
        )
