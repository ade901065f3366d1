"""A producer's Redis ACL user: it may XADD to its own stream and nothing else.

Redis does not record who wrote a stream entry, so the stream is the identity: only the
user producer-<name> (and aiops' own user) can write events:<name>. The password is made
here, handed back once and never stored by aiops; Redis keeps only its SHA-256.
"""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

import redis.asyncio as aioredis

from aiops.events.consumer import as_text
from aiops.producers.models import Producer, ProducerError, acl_user_of

# what a producer's connection needs: authenticate, name itself, ping, publish
ALLOWED_COMMANDS: Final = ("+xadd", "+ping", "+hello", "+auth", "+client|setname")


def acl_rules(producer: Producer, password: str, *, select: bool = False) -> list[str]:
    """ACL SETUSER rules (Redis 6.2: one key pattern, no %W~ selectors)."""
    rules = [
        "reset",
        "on",
        f">{password}",
        f"~{producer.stream}",
        "resetchannels",
        "-@all",
        *ALLOWED_COMMANDS,
    ]
    if select:
        rules.append("+select")  # the URL names a database other than 0
    return rules


def new_password() -> str:
    return secrets.token_urlsafe(32)


def producer_url(base_url: str, user: str, password: str) -> str:
    """aiops' Redis URL with the producer's user and password in place of aiops' own."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _database(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


class ProducerAccounts:
    """ACL users on the Redis server aiops uses (its user needs the @admin ACL command)."""

    def __init__(self, client: aioredis.Redis, url: str) -> None:
        self.redis = client
        self.url = url

    async def create(self, producer: Producer) -> str:
        """Create (or replace, with a new password) the producer's user; its REDIS_URL."""
        password = new_password()
        rules = acl_rules(producer, password, select=_database(self.url) != 0)
        # raw, to send exactly these rules (acl_setuser composes its own)
        await self.redis.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", producer.acl_user, *rules
        )
        await self.save()
        return producer_url(self.url, producer.acl_user, password)

    async def delete(self, name: str) -> bool:
        """Remove the user (its open connections are closed by Redis); False if none."""
        deleted = int(await self.redis.acl_deluser(acl_user_of(name)))
        await self.save()
        return deleted > 0

    async def exists(self, name: str) -> bool:
        users = await self.redis.acl_users()
        return acl_user_of(name) in {as_text(u) for u in users}

    async def aclfile(self) -> str | None:
        """The server's aclfile, None when it has none (or may not tell: CONFIG refused)."""
        try:
            config = await self.redis.config_get("aclfile")
        except aioredis.ResponseError:
            return None
        value = as_text(next(iter(config.values()), b"")) if config else ""
        return value or None

    async def save(self) -> bool:
        """ACL SAVE when the server has an aclfile, so the users outlive a restart. Without
        one they live until Redis restarts (configure them in redis.conf, or set aclfile)."""
        if await self.aclfile() is None:
            return False
        try:
            await self.redis.acl_save()
        except aioredis.ResponseError as error:
            raise ProducerError(f"Redis could not save its ACL file: {error}") from None
        return True
