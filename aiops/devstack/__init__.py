"""The embedded dev stack: Temporal dev server, PostgreSQL+pgvector and Redis from PyPI packages."""

from aiops.devstack.errors import StackError
from aiops.devstack.stack import DevStack, DevStackState, ServiceName, ServiceState

__all__ = ["DevStack", "DevStackState", "ServiceName", "ServiceState", "StackError"]
