"""The miner's view of a message: words and marks, with the words that carry data as ``<*>``.

Only token classes that hold on any system are used, no list of a system's words: a word
holding a digit (numbers, hex, ids, IPs, times, sizes, durations, versions), a path or a
URL, an e-mail address, and a program literal (true, null, None) is data. Plain words stay
words; whether one is a variable is the parse tree's call, from how it varies across the
lines of one template (`aiops.fingerprint.fingerprinter`).

Runs of variables separated only by spaces or list marks collapse into one, so
"IRQs 3 4 5" and "IRQs 7", or an address and its port, have the same shape: a list's
length is data too.

This runs for every line, so it is one C-level regular expression and one pass in Python.
"""

from __future__ import annotations

import re
from typing import NamedTuple

WILDCARD = "<*>"

# marks that split words; they stay in the template as constants
_MARKS = "=,;:()\\[\\]{}\"'|<>"
# a path or a URL is one token whatever marks it holds (a query string's = and &)
_WHOLE = (
    r"(?:(?<![\w+.\-])[A-Za-z][\w+.\-]{0,31}://|(?<![\w.])(?:[A-Za-z]:\\|\.{0,2}/|\\|~/))"
    r"(?:[^\s\"'<>()\[\]{},;|:]|:(?=[^\s:]))*"
    # a call with data for arguments, LOCAL(0), pid(1234): one value
    r"|(?<!\w)\w{1,64}\([^\s()]*\d[^\s()]*\)(?![^\s=,;:()\[\]{}\"'|<>])"
)
# so is a MAC or IPv6 address, though its groups are split by colons
_COLONS = r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,31}(?![^\s=,;()\[\]{}\"'|<>])"
# a very long run without spaces is a blob (base64, a dump): one value
_MAX_WORD = 256
_WORD = rf"[^\s{_MARKS}]"
_START = rf"(?<!{_WORD})"  # at the start of a word
_END = rf"(?!{_WORD})"  # at its end
_LITERALS = ("true", "false", "True", "False", "TRUE", "FALSE", "null", "NULL", "nil", "None",
             "undefined", "NaN")  # fmt: skip
_VARIABLE = (
    rf"{_WHOLE}|{_COLONS}"
    # a word holding a digit: numbers, hex, ids, IPs, times, versions, sizes, durations
    rf"|{_START}{_WORD}*\d{_WORD}*"
    # a program's literal values (flag=true, obj=null)
    rf"|{_START}(?:{'|'.join(_LITERALS)}){_END}"
    # an e-mail address
    rf"|{_START}[\w.+\-]{{1,64}}@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{{2,}}{_END}"
    rf"|{_START}{_WORD}{{{_MAX_WORD},}}"
)
# one pass of the C engine sorts every token: group 1 data, group 2 words and marks
_TOKEN_RE = re.compile(rf"({_VARIABLE})|({_WORD}+|[{_MARKS}])")
_SPACED_RE = re.compile(rf"(\s*)(?:({_VARIABLE})|({_WORD}+|[{_MARKS}]))")
# marks that may sit inside a run of variables without making it two ("1, 2, 3", "a:80")
_LIST_MARKS = frozenset({",", ":", ";", "|"})


class Token(NamedTuple):
    """A word, a mark, or ``<*>``, and whether a space came before it (for rendering)."""

    text: str
    variable: bool
    space_before: bool


def _collapse(texts: list[str]) -> list[int]:
    """Indices of the tokens kept once runs of variables collapse."""
    kept: list[int] = []
    pending: list[int] = []  # list marks after a variable, kept only if a word follows
    last_wild = False
    for i, text in enumerate(texts):
        if text == WILDCARD:
            if last_wild:
                pending.clear()
                continue
            kept.append(i)
            last_wild = True
        elif last_wild and text in _LIST_MARKS:
            pending.append(i)
        else:
            kept.extend(pending)
            pending.clear()
            kept.append(i)
            last_wild = False
    kept.extend(pending)
    return kept


# What each whitespace-separated word splits into. A log's words repeat line after line,
# so most are sorted by one dict lookup; no pattern spans a space, so this is the same
# as sorting the whole line at once. Bounded: emptied when full.
_WORDS: dict[str, tuple[str, ...]] = {}
_MAX_WORDS = 50_000
_DATA = (WILDCARD,)
# A message's words sorted, before runs collapse, to its key: the lines of one problem
# differ in their data, which is <*> by then, so a storm collapses each shape once.
# Bounded like _WORDS.
_SHAPES: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_SHAPES = 10_000


def _parts(word: str) -> tuple[str, ...]:
    parts = tuple(WILDCARD if data else text for data, text in _TOKEN_RE.findall(word))
    if parts == _DATA:
        return _DATA  # unique values would only churn the cache
    if len(_WORDS) >= _MAX_WORDS:
        _WORDS.clear()
    _WORDS[word] = parts
    return parts


def key_of(message: str) -> tuple[str, ...]:
    """The message's shape: its tokens with variables as ``<*>`` and runs collapsed."""
    texts: list[str] = []
    known = _WORDS.get
    for word in message.split():
        parts = known(word)
        texts += _parts(word) if parts is None else parts
    if texts.count(WILDCARD) < 2:
        return tuple(texts)
    shape = tuple(texts)
    key = _SHAPES.get(shape)
    if key is None:
        key = tuple(texts[i] for i in _collapse(texts))
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[shape] = key
    return key


def tokenize(message: str) -> list[Token]:
    """The tokens of ``key_of(message)`` with their spacing, to render a template."""
    raw = [
        Token(WILDCARD, True, bool(space)) if data else Token(word, False, bool(space))
        for space, data, word in _SPACED_RE.findall(message)
    ]
    if sum(t.variable for t in raw) < 2:
        return raw
    return [raw[i] for i in _collapse([t.text for t in raw])]


def render(tokens: list[Token] | tuple[Token, ...]) -> str:
    """Join tokens back into readable text, with the spacing of the message they came from."""
    parts: list[str] = []
    for token in tokens:
        if token.space_before and parts:
            parts.append(" ")
        parts.append(token.text)
    return "".join(parts)
