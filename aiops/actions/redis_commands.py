"""Run allow-listed, non-destructive Redis commands against a registered Redis service."""

from __future__ import annotations

import shlex
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aiops.actions.base import ActionContext, ActionError, ActionOutcome

# Read-only or self-healing commands only; anything that deletes data, changes credentials
# or rewrites configuration is not here and never will be (the policy refuses it too).
ALLOWED = {
    ("PING",),
    ("INFO",),
    ("DBSIZE",),
    ("MEMORY", "PURGE"),
    ("MEMORY", "STATS"),
    ("SLOWLOG", "GET"),
    ("SLOWLOG", "RESET"),
    ("CLIENT", "LIST"),
}


def parse_command(parameters: dict[str, Any]) -> list[str]:
    command = parameters.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ActionError("execute needs a parameter command, e.g. 'MEMORY PURGE'")
    argv = shlex.split(command)
    # the whole command is one allow-listed entry: no arguments ride along behind it
    if tuple(part.upper() for part in argv) not in ALLOWED:
        raise ActionError(f"redis command {command.upper()!r} is not on the allow-list")
    return argv


class RedisAdapter:
    name = "redis"

    async def prepare(self, ctx: ActionContext) -> dict[str, Any]:
        return {"argv": parse_command(ctx.action.parameters)}

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        service = ctx.service
        if service is None or not service.endpoint.startswith(("redis://", "rediss://")):
            raise ActionError(
                "execute on redis needs a registered service with a redis:// endpoint"
            )
        client = aioredis.Redis.from_url(service.endpoint, socket_timeout=10)
        try:
            reply = await client.execute_command(*intent["argv"])  # type: ignore[no-untyped-call]
        except RedisError as error:
            raise ActionError(f"redis {' '.join(intent['argv'])} failed: {error}") from error
        finally:
            await client.aclose()
        return ActionOutcome(
            success=True,
            detail=f"redis {' '.join(intent['argv'])} on {service.name}",
            data={"reply": str(reply)[:2000]},
            compensation_note="allow-listed redis commands change no data; nothing to roll back",
        )

    async def reconcile(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome | None:
        return None  # every allow-listed command is safe to run again

    async def compensate(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        return ActionOutcome(success=True, detail="nothing to roll back")
