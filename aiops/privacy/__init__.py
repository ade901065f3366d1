"""PII and secret masking: nothing unmasked is embedded or sent to a model."""

from aiops.privacy.masker import Masker, MaskResult, mask, mask_json, mask_with_report

__all__ = ["MaskResult", "Masker", "mask", "mask_json", "mask_with_report"]
