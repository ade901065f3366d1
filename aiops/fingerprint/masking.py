"""Variable masking and tokenization: what in a message is data, and what is the event.

Typed regular expressions run first over the raw text (URLs, UUIDs, e-mail addresses,
timestamps, IPv4/IPv6/MAC addresses, host names, paths, hex, quantities with units, quoted
identifiers); the text between them is split into words and punctuation, and a remaining
word holding a digit, a literal (true, null) or the name after "user" is a variable too.
Runs of adjacent variables, and units of a list repeated back to back, collapse into one,
so "IRQs 3 4 5 6" and "IRQs 7 10" share a template: the token count depends less on how
many values a line happens to carry. Plain words are left alone: they name the event.

All patterns are anchored and bounded, so masking stays linear in the message length.
"""

from __future__ import annotations

import re
from typing import NamedTuple

WILDCARD = "<*>"

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*"
_ZONE = r"(?:[A-Z]{1,3}T|UTC|Z)"
_H16 = r"[0-9a-fA-F]{1,4}"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_UNIT = r"(?:[KMGTPE]i?B|[kKMG]b|bytes?|B|ns|us|µs|ms|secs?|seconds?|mins?|minutes?|hours?|days?)"

# Order matters: at one position the first kind that matches wins (a URL before the
# path inside it, an IPv6 address before the times its groups resemble).
_KINDS: tuple[tuple[str, str], ...] = (
    ("URL", r"(?<![\w+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s\"'<>()\[\]{}]+"),
    ("UUID", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("EMAIL", r"(?<![\w.+\-])[\w.+\-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")*\.[A-Za-z]{2,}\b"),
    (
        "TS",
        r"\b\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
        r"(?:\s?(?:Z|[+\-]\d{2}:?\d{2}))?(?![\w:])",
    ),
    (
        "TS",
        rf"\b(?:{_WEEKDAY},?\s+)?{_MONTH}\s+\d{{1,2}}(?:,?\s+\d{{4}})?\s+\d{{1,2}}:\d{{2}}"
        rf"(?::\d{{2}}(?:[.,]\d+)?)?(?:\s+{_ZONE})?(?:\s+\d{{4}})?(?![\w:])",
    ),
    (
        "TS",
        rf"\b{_WEEKDAY},?\s+\d{{1,2}}\s+{_MONTH}\s+\d{{4}}\s+\d{{1,2}}:\d{{2}}(?::\d{{2}})?"
        rf"(?:\s+{_ZONE})?(?![\w:])",
    ),
    (
        "IP",
        rf"(?<![0-9a-zA-Z:])(?:(?:{_H16}:){{7}}{_H16}|(?:{_H16}:){{1,6}}(?::{_H16}){{1,6}}"
        rf"|(?:{_H16}:){{1,7}}:|::(?:{_H16}:){{0,6}}{_H16})(?:%\w+)?(?![\w:])",
    ),
    ("MAC", r"(?<![0-9a-zA-Z:])[0-9a-fA-F]{2}(?:[:\-][0-9a-fA-F]{2}){5,}(?![\w:])"),
    ("IP", r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?(?::\d{1,5})?(?![\w]|\.\d)"),
    ("TS", r"\b\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}\b"),
    ("TS", r"(?<![\w:])\d{1,2}:\d{2}(?::\d{2})?(?:[.,:]\d+)?(?![\w:])"),
    (
        "HOST",
        rf"(?<![\w.\-])(?:{_LABEL}\.){{1,16}}"
        r"(?:com|net|org|edu|gov|mil|local|localdomain|internal|lan|arpa)(?::\d{1,5})?(?![.\w\-])",
    ),
    ("HOST", rf"(?<![\w.\-])(?:{_LABEL}\.){{2,16}}[a-z]{{2}}(?::\d{{1,5}})?(?![.\w\-])"),
    (
        "PATH",
        r"(?<![\w./~])(?:[A-Za-z]:|\.{1,2}|~)?(?:[\\/]+[\w.@%+~\-{}$]+)+[\\/]*(?:\?[^\s\"'<>]*)?",
    ),
    ("HEX", r"\b0[xX][0-9a-fA-F]+\b"),
    ("NUM", rf"(?<![\w.])(?:[<>]=?|[-+~])?\d+(?:[.,]\d+)?\s?{_UNIT}(?![\w])"),
    # a quoted value with a digit or an identifier's punctuation ('user_id', "db.orders",
    # '0x03f2'); a quoted plain word ('Active') often names the event, so it stays
    ("QUOTED", r"(?<![\w\\])(?P<quote>[\"'])(?=[^\s\"']*[^A-Za-z\s\"'])[^\s\"']+(?P=quote)"),
)
_MASK_RE = re.compile("|".join(f"(?P<{kind}{i}>{rx})" for i, (kind, rx) in enumerate(_KINDS)))
_BLOB_RE = re.compile(r"\S{512,}")
_SPLIT_RE = re.compile(r"\s+|\.{2,}|[=:,;()\[\]{}<>\"'|]")
_NUMBER_RE = re.compile(r"[-+]?\d+(?:[.,]\d+)*%?")
_HEXWORD_RE = re.compile(r"[0-9a-fA-F]{6,}")
# a program's literal values, as logged by code (flag=true, obj=null, retry=None)
_LITERALS = {"true": "BOOL", "false": "BOOL", "True": "BOOL", "False": "BOOL",
             "null": "NULL", "nil": "NULL", "None": "NULL"}  # fmt: skip
_ANY_CASE = frozenset({"true", "false", "null", "nil"})
_USER_KEYS = frozenset({"user", "username", "user_name", "userid", "login"})
# words that follow "user" without naming one: prepositions, verbs, and the user's things
_NOT_A_USER = frozenset(
    {"from", "by", "for", "to", "at", "in", "on", "with", "of", "and", "or", "as", "is",
     "was", "are", "were", "be", "been", "has", "had", "have", "does", "did", "do", "not",
     "can", "cannot", "could", "will", "would", "should", "must", "may", "exists", "the",
     "a", "an", "name", "id", "unknown", "request", "requests", "session", "sessions",
     "authentication", "data", "agent", "list", "mode", "level", "space", "account",
     "accounts", "quota", "input", "info", "profile", "group", "groups", "role", "roles",
     "password", "permission", "permissions", "interface", "context", "code", "process"}
)  # fmt: skip
_VERB_ENDINGS = ("ed", "ing")
_USER_RE = re.compile(r"[A-Za-z_][\w.\-@$]*")


class Token(NamedTuple):
    """A word, a punctuation mark, or a variable shown as its kind (``<IP>``)."""

    text: str
    variable: bool
    space_before: bool


def _word_kind(word: str) -> str | None:
    """The kind of a word that carries data, or None when it is part of the event."""
    if not any(ch.isdigit() for ch in word):
        return _LITERALS.get(word.lower() if word.lower() in _ANY_CASE else word)
    if _NUMBER_RE.fullmatch(word):
        return "NUM"
    if _HEXWORD_RE.fullmatch(word):
        return "HEX"
    return "ID"


def _split_constant(text: str, space: bool, out: list[Token]) -> bool:
    start = 0
    for found in _SPLIT_RE.finditer(text):
        if found.start() > start:
            space = _append_word(text[start : found.start()], space, out)
        mark = found.group()
        if mark.isspace():
            space = True
        else:
            out.append(Token(mark, False, space))
            space = False
        start = found.end()
    if start < len(text):
        space = _append_word(text[start:], space, out)
    return space


def _append_word(word: str, space: bool, out: list[Token]) -> bool:
    kind = _word_kind(word)
    if kind is None:
        out.append(Token(word, False, space))
        return False
    stop = ""
    if len(word) > 1 and word[-1] in ".!?":
        # "port 6379." ends a sentence: the full stop is not part of the number
        stop = word[-1]
        kind = _word_kind(word[:-1]) or kind
    out.append(Token(f"<{kind}>", True, space))
    if stop:
        out.append(Token(stop, False, False))
    return False


def _mask_users(tokens: list[Token]) -> None:
    """Mask the name after "user" (user root, user=root): an identity, never the event."""
    for i, token in enumerate(tokens[:-1]):
        if token.variable or token.text.lower() not in _USER_KEYS:
            continue
        j = i + 1
        if tokens[j].text in ("=", ":") and j + 1 < len(tokens):
            j += 1
        value = tokens[j]
        if (
            not value.variable
            and value.text.lower() not in _NOT_A_USER
            and not (len(value.text) > 4 and value.text.lower().endswith(_VERB_ENDINGS))
            and _USER_RE.fullmatch(value.text)
        ):
            tokens[j] = Token("<USER>", True, value.space_before)


def _collapse(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    for token in tokens:
        if token.variable and out and out[-1].variable:
            if out[-1].text != token.text:
                out[-1] = Token(WILDCARD, True, out[-1].space_before)
            continue
        out.append(token)
    return out


_MAX_UNIT = 12
_SEPARATORS = frozenset({",", ";", "|"})


def _collapse_repeats(tokens: list[Token]) -> list[Token]:
    """Keep one copy of a data-carrying unit repeated back to back ("a=1, a=2, a=3").

    A list's length is data too: "node-1 <ok> node-2 <ok>" and "node-7 <ok>" are one
    event. Only units holding a variable collapse, so repeated words ("very very") stay.
    """
    if sum(t.variable for t in tokens) < 2:
        return tokens
    out = list(tokens)
    texts = [t.text for t in out]
    i = 0
    while i < len(out):
        if not _collapse_at(i, out, texts):
            i += 1
    return out


def _collapse_at(i: int, out: list[Token], texts: list[str]) -> bool:
    """Drop one repeat of a unit starting at i; False when there is none to drop."""
    first_variable = next(
        (k for k in range(i, min(len(out), i + _MAX_UNIT)) if out[k].variable), -1
    )
    if first_variable < 0:
        return False
    for size in range(first_variable - i + 1, _MAX_UNIT + 1):
        end = i + size
        if end + size - 1 > len(out):
            return False
        if texts[i:end] == texts[end : end + size]:
            del out[end : end + size], texts[end : end + size]
            return True
        # the last item of a separated list has no separator after it
        if (
            size > 1
            and texts[end - 1] in _SEPARATORS
            and texts[i : end - 1] == texts[end : end + size - 1]
        ):
            del out[end - 1 : end + size - 1], texts[end - 1 : end + size - 1]
            return True
    return False


def _mask_segment(text: str, space: bool, tokens: list[Token]) -> bool:
    position = 0
    for found in _MASK_RE.finditer(text):
        space = _split_constant(text[position : found.start()], space, tokens)
        kind = (found.lastgroup or "VAR").rstrip("0123456789")
        if kind == "QUOTED":
            quote = found.group()[0]
            tokens.append(Token(quote, False, space))
            tokens.append(Token(WILDCARD, True, False))
            tokens.append(Token(quote, False, False))
        else:
            tokens.append(Token(f"<{kind}>", True, space))
        space = False
        position = found.end()
    return _split_constant(text[position:], space, tokens)


def tokenize(message: str) -> list[Token]:
    """Split a message into tokens with its variables masked and adjacent ones merged."""
    tokens: list[Token] = []
    space = False
    position = 0
    # a very long run without spaces is a blob (base64, a dump): one variable, and it keeps
    # the regular expressions' work per message linear
    for blob in _BLOB_RE.finditer(message):
        space = _mask_segment(message[position : blob.start()], space, tokens)
        tokens.append(Token(WILDCARD, True, space))
        space = False
        position = blob.end()
    _mask_segment(message[position:], space, tokens)
    _mask_users(tokens)
    return _collapse_repeats(_collapse(tokens))


def render(tokens: list[Token] | tuple[Token, ...]) -> str:
    """Join tokens back into readable text, with the spacing of the message they came from."""
    parts: list[str] = []
    for token in tokens:
        if token.space_before and parts:
            parts.append(" ")
        parts.append(token.text)
    return "".join(parts)


def mask_variables(message: str) -> str:
    """The message with its variable parts replaced by their kind, e.g. ``<IP>``, ``<NUM>``."""
    return render(tokenize(message))
