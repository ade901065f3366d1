"""Mask PII and secrets before text is embedded or sent to any model.

Placeholders are typed (<EMAIL>, <IP>, <CARD>...), so masked text still reads and embeds
well; masking masked text changes nothing. Order matters: secrets inside URLs and headers
are taken before the generic patterns could split them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from aiops.privacy.luhn import luhn_valid

Replacer = Callable[[re.Match[str]], str]

_SECRET_KEYS = (
    r"pass(?:word|wd)?|pwd|secret|client[_-]?secret|token|access[_-]?token|refresh[_-]?token"
    r"|api[_-]?key|apikey|private[_-]?key|auth[_-]?token|session[_-]?id"
)
_KEY_IS_SECRET = re.compile(rf"^(?:[\w.-]*[_.-])?(?:{_SECRET_KEYS})$", re.I)

_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\b")
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.I)
_URL_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s:/@]+):([^\s@/]+)@", re.I)
_ACCESS_KEY = re.compile(
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"  # AWS access key ids
    r"|\bAIza[0-9A-Za-z_-]{35}\b"  # GCP API keys
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}\b"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}\b"  # Slack
    r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"  # Stripe
)
# key=value, key: value, "key": "value" where the key names a secret
_KV = re.compile(
    rf"""(?P<key>["']?\b[\w.-]*?(?:{_SECRET_KEYS})\b["']?)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s,;&"'}\]]+)""",
    re.I,
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.]*\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|[0-9A-Fa-f]{1,4})(?![\w:])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){0,6}:(?::|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})(?![\w:])"
)
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])"
    r"|(?<![\w(])\(\d{3}\)\s?\d{3}[ .-]\d{4}(?!\w)"
    r"|(?<![\w.:-])\d{3}[.-]\d{3}[.-]\d{4}(?![\w.:-])"
)


class MaskResult(BaseModel):
    text: str
    counts: dict[str, int]

    @property
    def masked(self) -> bool:
        return bool(self.counts)


class Masker:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def _sub(self, pattern: re.Pattern[str], text: str, repl: str | Replacer, kind: str) -> str:
        def count(match: re.Match[str]) -> str:
            out = repl(match) if callable(repl) else repl
            if out != match.group(0):
                self._counts[kind] += 1
            return out

        return pattern.sub(count, text)

    def mask(self, text: str) -> MaskResult:
        self._counts = Counter()
        if not text or not _might_hold_anything(text):
            return MaskResult(text=text, counts={})
        text = self._sub(_PRIVATE_KEY, text, "<PRIVATE_KEY>", "private_key")
        text = self._sub(_JWT, text, "<JWT>", "jwt")
        text = self._sub(_BEARER, text, lambda m: f"{m.group(1)} <TOKEN>", "token")
        text = self._sub(_URL_PASSWORD, text, lambda m: f"{m.group(1)}:<SECRET>@", "password")
        text = self._sub(_ACCESS_KEY, text, "<ACCESS_KEY>", "access_key")
        text = self._sub(_KV, text, _mask_value, "secret")
        text = self._sub(_EMAIL, text, "<EMAIL>", "email")
        text = self._sub(_CARD, text, _card, "card")
        text = self._sub(_PHONE, text, "<PHONE>", "phone")
        text = self._sub(_IPV6, text, _ipv6, "ip")
        text = self._sub(_IPV4, text, "<IP>", "ip")
        return MaskResult(text=text, counts=dict(self._counts))


# Fast path: everything maskable has a digit, one of @ : = _ - or a token's telltale.
_ANYTHING = re.compile(r"[\d@:=_-]|eyJ|BEGIN|bearer|basic|token|AKIA|ASIA|AIza", re.I)


def _might_hold_anything(text: str) -> bool:
    return _ANYTHING.search(text) is not None


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.startswith("<") and value.endswith(">"):
        return match.group(0)
    quote = value[0] if value[:1] in "\"'" else ""
    return f"{match.group('key')}{match.group('sep')}{quote}<SECRET>{quote}"


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "<CARD>" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def _ipv6(match: re.Match[str]) -> str:
    value = match.group(0)
    # times like 10:00:00 are not addresses: an address has a hex letter or a '::'
    if "::" in value or re.search(r"[A-Fa-f]", value):
        return "<IP>"
    return value


_DEFAULT = Masker()


def mask(text: str) -> str:
    return _DEFAULT.mask(text).text


def mask_with_report(text: str) -> MaskResult:
    return Masker().mask(text)


def mask_json(value: Any) -> Any:
    """Mask every string in a JSON-like structure; values under secret-named keys entirely."""
    if isinstance(value, dict):
        return {
            k: "<SECRET>" if isinstance(k, str) and _KEY_IS_SECRET.match(k) else mask_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_json(v) for v in value]
    if isinstance(value, str):
        return mask(value)
    return value
