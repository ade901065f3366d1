"""The knowledge graph: hybrid search for solutions (viewer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aiops.knowledge import SearchHit
from workers.api.auth import Deps, Viewer

router = APIRouter(tags=["knowledge graph"])


@router.get("/kg/search", response_model=list[SearchHit])
async def search(
    b: Deps,
    _: Viewer,
    q: Annotated[str, Query(min_length=1, max_length=4000)],
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
) -> list[SearchHit]:
    return await b.kg.find_solutions(q, limit=limit)
