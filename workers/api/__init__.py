"""`aiops api`: HTTP for what the CLI does, for dashboards, load balancers and scripts.

Every route but GET /health needs `Authorization: Bearer <token>`: a JWT (`aiops token
create`, or an OIDC provider's) whose roles allow the route, or the older static
AIOPS_API_TOKEN. One router per concern: health, incidents, services, events, kg.
"""

from workers.api.app import create_app
from workers.api.backends import Backends

__all__ = ["Backends", "create_app"]
