from aiops.errors import AiopsError


class StackError(AiopsError):
    """A dev-stack server could not be found, started or reached; the message says what to do."""
