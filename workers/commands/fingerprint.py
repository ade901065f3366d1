"""`aiops fingerprint [FILE|-]`: one JSON line per message with its problem fingerprint."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, TextIO

import typer

from aiops.errors import AiopsError
from aiops.fingerprint import Fingerprinter


class FingerprintInputError(AiopsError):
    exit_code = 2


def _lines(stream: TextIO) -> Iterable[str]:
    for line in stream:
        yield line.rstrip("\r\n")


def _emit(lines: Iterable[str], service: str | None, category: str | None) -> None:
    fingerprinter = Fingerprinter()
    out = sys.stdout
    for line in lines:
        result = fingerprinter.add(line, service=service, category=category)
        out.write(json.dumps({"fingerprint": result.fingerprint, "template": result.template}))
        out.write("\n")
    out.flush()


def fingerprint(
    file: Annotated[
        str, typer.Argument(help="file of messages, one per line; - reads standard input")
    ] = "-",
    service: Annotated[
        str | None, typer.Option(help="service the messages come from (scopes the groups)")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="problem category (scopes the groups)")
    ] = None,
) -> None:
    """Print {"fingerprint", "template"} as one JSON line per input line, in input order.

    Groups are learnt as the lines go by, so a later line can join a group an earlier one
    started; the same problem keeps the same fingerprint for the whole input.
    """
    if file == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:
            _emit(_lines(sys.stdin), service, category)
            return
        # logs are not always clean UTF-8: a stray byte must not end the stream
        stream = io.TextIOWrapper(buffer, encoding="utf-8", errors="replace", newline="")
        try:
            _emit(_lines(stream), service, category)
        finally:
            stream.detach()
        return
    path = Path(file)
    try:
        handle = path.open(encoding="utf-8", errors="replace", newline="")
    except FileNotFoundError:
        raise FingerprintInputError(f"no such file: {file}") from None
    except IsADirectoryError:
        raise FingerprintInputError(f"{file} is a directory, not a file of messages") from None
    except PermissionError:
        raise FingerprintInputError(f"cannot read {file}: permission denied") from None
    with handle:
        _emit(_lines(handle), service, category)
