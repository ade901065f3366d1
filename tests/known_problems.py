"""A known problem with one simulated fix, for tests that need diagnosis to find a match."""

from __future__ import annotations

import asyncpg
from cryptography.fernet import Fernet

from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.incident import IncidentInput
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry
from aiops.registry.models import ConfigKey, ReplicaBounds

IMPORT_TIMEOUT = "Import requests time out with large bookmark files"


def import_timeout_incident(cool_down_s: float = 1) -> IncidentInput:
    """An incident of the known import timeout on import-service, as a hand start gives it."""
    return IncidentInput(
        event_type="ServiceTimeout",
        source="import-service",
        service="import-service",
        payload={"message": "bookmark import timed out after 30s on a large file"},
        cool_down_s=cool_down_s,
    )


async def seed_import_timeout(
    kg: KnowledgeGraph,
    action_type: str = "cache_clear",
    description: str = "Clear the import cache",
) -> tuple[str, str]:
    """(problem id, solution id) of the import-service timeout, fixed by one simulated
    action that always succeeds (import-service is registered for the simulated adapter)."""
    await register_simulated(kg.pool, "import-service")
    problem = await kg.add_problem(
        ProblemIn(
            description=IMPORT_TIMEOUT, category="timeout", context={"service": "import-service"}
        )
    )
    solution_id = await kg.add_solution(
        problem.id,
        SolutionIn(
            description=description,
            actions=[
                ActionSpec(
                    action_type=action_type,
                    target="import-service",
                    parameters={"success_probability": 1.0}
                    | ({"replicas": 3} if action_type == "scale" else {}),
                )
            ],
        ),
    )
    return problem.id, solution_id


async def register_simulated(
    pool: asyncpg.Pool, *names: str, critical: bool = False, config_keys: tuple[str, ...] = ()
) -> None:
    """Register services whose actions the simulated adapter plays (as a worker with
    AIOPS_SIMULATED_ADAPTER=1 does): any integer config key in config_keys, 0..10 replicas."""
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    for name in names:
        await registry.register(
            ServiceDefinition(
                name=name,
                endpoint=f"http://127.0.0.1:9/{name}",
                health_check=None,  # nothing to verify: a simulated fix is its own outcome
                critical=critical,
                config_keys={k: ConfigKey(type="integer") for k in config_keys},
                replicas=ReplicaBounds(min=0, max=10),
                metadata={"adapter": "simulated"},
            )
        )
