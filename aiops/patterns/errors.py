"""Errors a user of the pattern library can hit, each with a message that says what to fix."""

from __future__ import annotations

from aiops.errors import AiopsError


class PatternError(AiopsError):
    """A pattern that cannot be compiled: an unknown path, an operator given a value it
    cannot compare with, an invalid regex, or a pattern that would match every event."""

    exit_code = 2


class PatternNotFound(AiopsError):
    """No pattern with that id."""


class PatternFileError(AiopsError):
    """A patterns file that cannot be read or does not hold valid patterns."""

    exit_code = 2
