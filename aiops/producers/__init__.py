"""Event producers: one Redis ACL user per producer, allowed to XADD to its own stream
only, and a registry (PostgreSQL) of the services each may speak for."""

from aiops.producers.accounts import ProducerAccounts, producer_url
from aiops.producers.models import (
    RESERVED_NAMES,
    Producer,
    ProducerError,
    acl_user_of,
    parse_services,
    stream_of,
)
from aiops.producers.store import ProducerStore

__all__ = [
    "RESERVED_NAMES",
    "Producer",
    "ProducerAccounts",
    "ProducerError",
    "ProducerStore",
    "acl_user_of",
    "parse_services",
    "producer_url",
    "stream_of",
]
