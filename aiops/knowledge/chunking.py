"""Long descriptions for an embedder with a short input: machine lines reduced to their
templates, then cut into overlapping windows of words.

all-MiniLM-L6-v2 reads 256 word pieces and drops the rest, and a stack trace or a log
excerpt spends that budget on addresses, paths and the same frame shape over and over.
Reduced, a machine line keeps its words and loses its values ("#3 0x7f1c in
nsDocShell::LoadURI (this=0x7f12) at /build/nsDocShell.cpp:1234" -> "#<num> <hex> in
nsDocShell::LoadURI (this=<hex>) at <path>"), and a line whose template already appeared
is dropped, so a 40-frame trace costs a few lines. Prose is left as it is: a line is a
machine line when most of its tokens hold a value (digits, hex, paths, URLs), which a
sentence never does.

Windows: the text past the first window is embedded window by window (knowledge_chunks),
and search takes the best window: a duplicate whose matching part is in the middle of a
long report is found, and the title opens every window so each one says what it is about.
"""

from __future__ import annotations

import re

# Words per window and the words two neighbouring windows share: a window of 120 words is
# ~160-200 word pieces, inside the model's 256 with room for the title.
WINDOW_WORDS = 120
OVERLAP_WORDS = 30
# At most this many windows per problem: a 20 kB paste would otherwise cost dozens of
# embeddings on every write, and its tail is rarely what a duplicate shares.
MAX_WINDOWS = 16

_VALUES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://\S+"), "<url>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@%+~\-]+){2,}[\\/]?"), "<path>"),
    (re.compile(r"(?<![A-Za-z])[-+]?\d+(?:[.:,]\d+)*"), "<num>"),
)
_VALUE_TOKEN = re.compile(r"\d|://|[\\/]\w|\b0x[0-9a-fA-F]")
# a machine line: at least this share of its tokens hold a value
MACHINE_SHARE = 0.3
_MIN_TOKENS = 3


def is_machine_line(line: str) -> bool:
    tokens = line.split()
    if len(tokens) < _MIN_TOKENS:
        return bool(tokens) and all(_VALUE_TOKEN.search(t) for t in tokens)
    valued = sum(1 for t in tokens if _VALUE_TOKEN.search(t))
    return valued / len(tokens) >= MACHINE_SHARE


def template_of(line: str) -> str:
    """A machine line with its values replaced by their kind."""
    for pattern, kind in _VALUES:
        line = pattern.sub(kind, line)
    return " ".join(line.split())


def reduce_text(text: str) -> str:
    """`text` with machine lines reduced to templates and repeated templates dropped."""
    seen: set[str] = set()
    out: list[str] = []
    for line in text.splitlines():
        if not is_machine_line(line):
            out.append(line)
            continue
        template = template_of(line)
        if template not in seen:
            seen.add(template)
            out.append(template)
    return "\n".join(out)


def windows(
    text: str, words: int = WINDOW_WORDS, overlap: int = OVERLAP_WORDS, limit: int = MAX_WINDOWS
) -> list[str]:
    """Overlapping windows of `words` words; one window when the text fits in one."""
    tokens = text.split()
    if len(tokens) <= words:
        return [" ".join(tokens)] if tokens else []
    step = max(words - overlap, 1)
    out = []
    for start in range(0, len(tokens), step):
        out.append(" ".join(tokens[start : start + words]))
        if start + words >= len(tokens) or len(out) == limit:
            break
    return out


def chunk_texts(title: str | None, body: str) -> list[str]:
    """The texts of a problem's chunks beyond the first window (which the node embedding
    covers): each is the title and one window of the reduced body. Empty for short ones."""
    parts = windows(reduce_text(body))
    head = f"{title}\n" if title else ""
    return [head + part for part in parts[1:]]
