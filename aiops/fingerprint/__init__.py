"""Problem fingerprints: a stable id and a readable template for each kind of error message.

from aiops.fingerprint import Fingerprinter
fp = Fingerprinter()
fp.add("connection refused to 10.0.0.7:5432", service="checkout").fingerprint

`SharedTemplates` (aiops.fingerprint.store) keeps the templates in PostgreSQL, so every
listener, and one restarted, gives a line the same fingerprint.
"""

from aiops.fingerprint.fingerprinter import Fingerprinter
from aiops.fingerprint.masking import mask_variables
from aiops.fingerprint.models import FingerprintConfig, FingerprintResult, FingerprintState

__all__ = [
    "FingerprintConfig",
    "FingerprintResult",
    "FingerprintState",
    "Fingerprinter",
    "mask_variables",
]
