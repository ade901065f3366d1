"""The service registry: what aiops may act on, and how (argv, admin endpoints, health)."""

from aiops.registry.models import ServiceDefinition, ServiceRecord
from aiops.registry.store import ServiceRegistry

__all__ = ["ServiceDefinition", "ServiceRecord", "ServiceRegistry"]
