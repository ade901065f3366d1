"""`aiops token`: bearer tokens for the shared-secret setup (placeholder, being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="bearer tokens (JWT) for the API and the CLI", no_args_is_help=True)
