"""Bookmarks in a SQLite file, reached through a pool whose size is the db_pool_size setting.

The pool is real: every query holds one of db_pool_size connections while it runs in a
worker thread, so db_pool_size 0 (the bad_config fault) leaves requests waiting for a
connection that never comes, and after pool_timeout_s they fail with PoolExhausted.

The disk_full fault caps the file at its current size with SQLite's own max_page_count, a
per-connection setting: the pool applies the cap to each connection (pooled or new) before
its next query, and lifts it the same way. A write that needs a new page then fails with
SQLite's "database or disk is full"; reads, and writes that still fit in free room inside
the file, go on. It lives in the process, not in the file, so a restart drops it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, TypeVar

from examples.bookmark_service.models import Bookmark, BookmarkIn, BookmarkPatch
from examples.bookmark_service.slots import Slots

T = TypeVar("T")

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS bookmarks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    url         TEXT NOT NULL,
    title       TEXT NOT NULL,
    category    TEXT,
    tags        TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (user_id, url)
);
CREATE INDEX IF NOT EXISTS bookmarks_user ON bookmarks (user_id, id);
"""


class PoolExhausted(RuntimeError):
    """No database connection became free in time (db_pool_size too small, or 0)."""


class DuplicateBookmark(ValueError):
    pass


@cache
def _default_max_page_count() -> int:
    """SQLite's compiled-in cap, what lifting disk_full sets back (setting 0 changes nothing)."""
    conn = sqlite3.connect(":memory:")
    try:
        return int(conn.execute("PRAGMA max_page_count").fetchone()[0])
    finally:
        conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class ConnectionPool:
    def __init__(self, path: Path, size: int, timeout_s: float) -> None:
        self._path = path
        self._slots = Slots(size)
        self._idle: list[sqlite3.Connection] = []
        self._timeout = timeout_s
        # disk_full: the page count the file may not grow past (None: SQLite's default),
        # and the cap each connection holds now (absent: the default)
        self._max_pages: int | None = None
        self._applied: dict[sqlite3.Connection, int] = {}

    @property
    def size(self) -> int:
        return self._slots.size

    @property
    def in_use(self) -> int:
        return self._slots.in_use

    @property
    def max_pages(self) -> int | None:
        return self._max_pages

    def refuse_growth(self) -> int:
        """Cap the file at its current page count (disk_full); returns the cap.

        Read on a connection of its own, as migrate does: it must work whatever the pool
        size, and a query in flight may still grow the file by a page (SQLite then holds
        each connection's cap at the file's size, never below it).
        """
        if self._max_pages is None:
            conn = _connect(self._path)
            try:
                self._max_pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            finally:
                conn.close()
        return self._max_pages

    def allow_growth(self) -> None:
        self._max_pages = None

    def _limit(self, conn: sqlite3.Connection) -> None:
        """Give conn the current cap before it runs a query (in the query's thread)."""
        cap = self._max_pages  # read once: the event loop may switch the fault meanwhile
        if self._applied.get(conn) == cap:
            return
        conn.execute(f"PRAGMA max_page_count = {_default_max_page_count() if cap is None else cap}")
        if cap is None:
            self._applied.pop(conn, None)
        else:
            self._applied[conn] = cap

    def _close(self, conn: sqlite3.Connection) -> None:
        self._applied.pop(conn, None)
        conn.close()

    def resize(self, size: int) -> None:
        self._slots.resize(size)
        while len(self._idle) > size:
            self._close(self._idle.pop())

    def close(self) -> None:
        while self._idle:
            self._close(self._idle.pop())

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run work on a pooled connection in a thread; PoolExhausted when none is free."""
        try:
            await self._slots.acquire(self._timeout)
        except TimeoutError:
            raise PoolExhausted(
                f"database pool exhausted: no connection free within {self._timeout} s "
                f"(db_pool_size={self._slots.size})"
            ) from None
        conn = self._idle.pop() if self._idle else None

        def job() -> T:
            nonlocal conn
            if conn is None:
                conn = _connect(self._path)
            self._limit(conn)
            return work(conn)

        future = asyncio.ensure_future(asyncio.to_thread(job))
        try:
            # a cancelled request must not hand the connection on while its thread still
            # uses it: the thread finishes first, then the connection goes back
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._give_back(conn)
            else:
                future.add_done_callback(lambda _: self._give_back(conn))

    def _give_back(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            if len(self._idle) < self._slots.size:
                self._idle.append(conn)
            else:
                self._close(conn)
        self._slots.release()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _bookmark(row: sqlite3.Row) -> Bookmark:
    return Bookmark(
        id=row["id"],
        url=row["url"],
        title=row["title"],
        user_id=row["user_id"],
        category=row["category"],
        tags=json.loads(row["tags"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class BookmarkStore:
    def __init__(self, path: Path, pool: ConnectionPool) -> None:
        self.path = path
        self.pool = pool

    def migrate(self) -> None:
        """Create the schema on a connection of its own: it must work whatever the pool size."""
        conn = _connect(self.path)
        try:
            conn.executescript(SCHEMA)
        finally:
            conn.close()

    async def create(self, item: BookmarkIn) -> Bookmark:
        def work(conn: sqlite3.Connection) -> Bookmark:
            now = _now()
            try:
                row = conn.execute(
                    "INSERT INTO bookmarks (user_id, url, title, category, tags, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                    (
                        item.user_id,
                        item.url,
                        item.title,
                        item.category,
                        json.dumps(item.tags),
                        now,
                        now,
                    ),
                ).fetchone()
            except sqlite3.IntegrityError:
                raise DuplicateBookmark(
                    f"{item.user_id} has already bookmarked {item.url}"
                ) from None
            return _bookmark(row)

        return await self.pool.run(work)

    async def get(self, bookmark_id: int) -> Bookmark | None:
        def work(conn: sqlite3.Connection) -> Bookmark | None:
            row = conn.execute("SELECT * FROM bookmarks WHERE id = ?", (bookmark_id,)).fetchone()
            return None if row is None else _bookmark(row)

        return await self.pool.run(work)

    async def page(
        self, page: int, page_size: int, user_id: str | None
    ) -> tuple[list[Bookmark], int]:
        def work(conn: sqlite3.Connection) -> tuple[list[Bookmark], int]:
            where, args = ("WHERE user_id = ?", [user_id]) if user_id else ("", [])
            total = conn.execute(f"SELECT count(*) FROM bookmarks {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM bookmarks {where} ORDER BY id LIMIT ? OFFSET ?",
                [*args, page_size, (page - 1) * page_size],
            ).fetchall()
            return [_bookmark(r) for r in rows], int(total)

        return await self.pool.run(work)

    async def update(self, bookmark_id: int, patch: BookmarkPatch) -> Bookmark | None:
        changes: dict[str, Any] = patch.model_dump(exclude_unset=True)
        if "tags" in changes:
            changes["tags"] = json.dumps(changes["tags"] or [])

        def work(conn: sqlite3.Connection) -> Bookmark | None:
            columns = ", ".join(f"{name} = ?" for name in changes)
            try:
                row = conn.execute(
                    f"UPDATE bookmarks SET {columns}{', ' if columns else ''}updated_at = ?"
                    " WHERE id = ? RETURNING *",
                    [*changes.values(), _now(), bookmark_id],
                ).fetchone()
            except sqlite3.IntegrityError:
                raise DuplicateBookmark("the same user already has that URL") from None
            return None if row is None else _bookmark(row)

        return await self.pool.run(work)

    async def delete(self, bookmark_id: int) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM bookmarks WHERE id = ?", (bookmark_id,)).rowcount > 0

        return await self.pool.run(work)

    async def search(
        self, query: str, tag: str | None, user_id: str | None, limit: int
    ) -> list[Bookmark]:
        def work(conn: sqlite3.Connection) -> list[Bookmark]:
            clauses = ["(title LIKE ? ESCAPE '\\' OR url LIKE ? ESCAPE '\\')"]
            args: list[Any] = [_like(query), _like(query)]
            if tag:
                clauses.append("EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)")
                args.append(tag)
            if user_id:
                clauses.append("user_id = ?")
                args.append(user_id)
            rows = conn.execute(
                f"SELECT * FROM bookmarks WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
                [*args, limit],
            ).fetchall()
            return [_bookmark(r) for r in rows]

        return await self.pool.run(work)

    async def ping(self) -> None:
        await self.pool.run(lambda conn: conn.execute("SELECT 1").fetchone())
