"""The knowledge graph: hybrid search for solutions (viewer), rate-limited per identity:
each search embeds its query, the costliest thing a viewer can ask for."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aiops.knowledge import SearchHit
from workers.api.auth import Deps, Viewer
from workers.api.ratelimit import RateLimit

router = APIRouter(tags=["knowledge graph"])

SEARCH_LIMIT_MAX = 100


@router.get(
    "/kg/search",
    response_model=list[SearchHit],
    responses={429: {"description": "over AIOPS_KG_SEARCH_PER_MINUTE; see Retry-After"}},
)
async def search(
    b: Deps,
    identity: Viewer,
    q: Annotated[str, Query(min_length=1, max_length=4000)],
    limit: Annotated[int, Query(ge=1, le=SEARCH_LIMIT_MAX)] = 5,
) -> list[SearchHit]:
    await RateLimit(b.redis, "kg-search", b.settings.kg_search_per_minute).check(identity.sub)
    return await b.kg.find_solutions(q, limit=limit)
