"""`aiops producers`: who may publish events for which services (placeholder, being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="event producers and the services each may speak for", no_args_is_help=True)
