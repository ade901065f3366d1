"""The HTTP API's bodies (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be an http(s) URL with a host")
    return value.strip()


class BookmarkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    title: str = Field(default="", max_length=500)
    user_id: str = Field(default="anonymous", min_length=1, max_length=128)
    category: str | None = Field(default=None, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class BookmarkPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    title: str | None = Field(default=None, max_length=500)
    category: str | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=50)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


class Bookmark(BaseModel):
    id: int
    url: str
    title: str
    user_id: str
    category: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime


class BookmarkPage(BaseModel):
    items: list[Bookmark]
    page: int
    page_size: int
    total: int


class ImportFailure(BaseModel):
    index: int
    url: str | None
    error: str


class ImportResult(BaseModel):
    received: int
    imported: int
    skipped: int = Field(description="already bookmarked (same user and URL)")
    failed: list[ImportFailure]
    duration_ms: float
    deadline_s: float
    replicas: int


class ImportTimedOut(BaseModel):
    error: str
    received: int
    processed: int
    duration_ms: float
    deadline_s: float
    replicas: int


FaultName = Literal["slow_imports", "memory_leak", "bad_config", "disk_full", "crash"]


class FaultSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fault: FaultName
    enabled: bool = True


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    value: Any


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(ge=1, le=64)


class Check(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    service: str
    pid: int
    uptime: float = Field(description="seconds since the process started")
    memory_usage: float = Field(description="RSS as a percentage of the memory budget")
    rss_mb: float
    checks: dict[str, Check]
    faults: list[str]
