"""Logging from settings: a root level plus per-module levels (AIOPS_LOG_LEVELS)."""

from __future__ import annotations

import logging

from aiops.config import Settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for module, level in settings.log_levels.items():
        logging.getLogger(module).setLevel(level)
