"""Mask PII and secrets before text is embedded or sent to any model.

Placeholders are typed (<EMAIL>, <IP>, <CARD>...), so masked text still reads and embeds
well; masking masked text changes nothing. Order matters: secrets inside URLs and headers
are taken before the generic patterns could split them. A pattern the line cannot hold is
not run at all (`_mask`): the router masks every problem text of a storm.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

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

    def mask(self, text: str) -> MaskResult:
        self._counts = Counter()
        masked = _mask(text, self._counts)
        return MaskResult(text=masked, counts=dict(self._counts))


# Fast path: everything maskable has a digit, one of @ : = _ - or a token's telltale.
_ANYTHING = re.compile(r"[\d@:=_-]|eyJ|BEGIN|bearer|basic|token|AKIA|ASIA|AIza", re.I)


def _might_hold_anything(text: str) -> bool:
    return _ANYTHING.search(text) is not None


def _mask(text: str, counts: Counter[str]) -> str:
    """Every pattern in turn, each on the text the ones before it left (secrets inside URLs
    and headers before the generic patterns could split them).

    Most lines hold none of most patterns, and a regular expression's pass over a line
    that cannot match still costs a scan per pattern: on ASCII text each pass first asks
    for something its pattern cannot match without (a literal, a digit count), a test on
    the current text, so the output is exactly that of running every pass. Other text
    runs every pass: case-insensitive and Unicode classes (the Kelvin sign matches k,
    Arabic-Indic digits match \\d) make such tests unsound there."""
    if not text:
        return text
    if not text.isascii():
        if _might_hold_anything(text):
            for step in _STEPS:
                text = step(text, counts)
        return text
    if "-----BEGIN " in text:
        text = _sub_constant(_PRIVATE_KEY, text, "<PRIVATE_KEY>", "private_key", counts)
    if "eyJ" in text:
        text = _sub_constant(_JWT, text, "<JWT>", "jwt", counts)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered or "token" in lowered:
        text = _sub_constant(_BEARER, text, r"\1 <TOKEN>", "token", counts)
    if "@" in text and "://" in text:
        text = _sub(_URL_PASSWORD, text, _url_password, "password", counts)
    if "_" in text or "AKIA" in text or "ASIA" in text or "AIza" in text or "xox" in text:
        text = _sub_constant(_ACCESS_KEY, text, "<ACCESS_KEY>", "access_key", counts)
    if ("=" in text or ":" in text) and _names_a_secret(text.lower()):
        text = _sub(_KV, text, _mask_value, "secret", counts)
    if "@" in text:
        text = _sub_constant(_EMAIL, text, "<EMAIL>", "email", counts)
    digits = _digits(text)
    if digits >= _CARD_MIN_DIGITS:
        text = _sub(_CARD, text, _card, "card", counts)
        digits = _digits(text)
    if "+" in text or "(" in text or digits >= _PHONE_MIN_DIGITS:
        text = _sub_constant(_PHONE, text, "<PHONE>", "phone", counts)
    if _may_hold_ipv6(text):
        text = _sub(_IPV6, text, _ipv6, "ip", counts)
    if text.count(".") >= 3:
        text = _sub_constant(_IPV4, text, "<IP>", "ip", counts)
    return text


# a card number has 13 digits at least; a phone number without + or ( has 10
_CARD_MIN_DIGITS: Final = 13
_PHONE_MIN_DIGITS: Final = 10
_NOT_DIGITS: Final = bytes(c for c in range(256) if not ord("0") <= c <= ord("9"))


def _names_a_secret(lowered: str) -> bool:
    # each alternative of _SECRET_KEYS holds one of these (password, client_secret...)
    return (
        "pass" in lowered
        or "pwd" in lowered
        or "secret" in lowered
        or "token" in lowered
        or "api" in lowered
        or "private" in lowered
        or "session" in lowered
    )


def _digits(ascii_text: str) -> int:
    return len(ascii_text.encode("ascii").translate(None, _NOT_DIGITS))


def _may_hold_ipv6(ascii_text: str) -> bool:
    """Every address _IPV6 matches has two colons, but ':ab' (one colon, after neither a
    word character nor a colon, or at the start): a port after a host ('db-1:5432') or a
    'key: value' cannot be one."""
    colons = ascii_text.count(":")
    if colons >= 2:
        return True
    if colons == 0:
        return False
    at = ascii_text.index(":")
    return at == 0 or not (ascii_text[at - 1].isalnum() or ascii_text[at - 1] == "_")


def _sub(
    pattern: re.Pattern[str], text: str, repl: Replacer, kind: str, counts: Counter[str]
) -> str:
    """Substitute, counting the matches the replacement changed."""

    def count(match: re.Match[str]) -> str:
        out = repl(match)
        if out != match.group(0):
            counts[kind] += 1
        return out

    return pattern.sub(count, text)


def _sub_constant(
    pattern: re.Pattern[str], text: str, repl: str, kind: str, counts: Counter[str]
) -> str:
    """Substitute a placeholder none of the pattern's matches can equal (each match holds a
    character the placeholder lacks), so every match counts."""
    text, found = pattern.subn(repl, text)
    if found:
        counts[kind] += found
    return text


def _url_password(match: re.Match[str]) -> str:
    return f"{match.group(1)}:<SECRET>@"


_STEPS: Final[tuple[Callable[[str, Counter[str]], str], ...]] = (
    lambda t, c: _sub_constant(_PRIVATE_KEY, t, "<PRIVATE_KEY>", "private_key", c),
    lambda t, c: _sub_constant(_JWT, t, "<JWT>", "jwt", c),
    lambda t, c: _sub_constant(_BEARER, t, r"\1 <TOKEN>", "token", c),
    lambda t, c: _sub(_URL_PASSWORD, t, _url_password, "password", c),
    lambda t, c: _sub_constant(_ACCESS_KEY, t, "<ACCESS_KEY>", "access_key", c),
    lambda t, c: _sub(_KV, t, _mask_value, "secret", c),
    lambda t, c: _sub_constant(_EMAIL, t, "<EMAIL>", "email", c),
    lambda t, c: _sub(_CARD, t, _card, "card", c),
    lambda t, c: _sub_constant(_PHONE, t, "<PHONE>", "phone", c),
    lambda t, c: _sub(_IPV6, t, _ipv6, "ip", c),
    lambda t, c: _sub_constant(_IPV4, t, "<IP>", "ip", c),
)


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


def mask(text: str) -> str:
    return _mask(text, Counter())


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
