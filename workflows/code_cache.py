"""Compiled code of the workflow modules, kept between workflow runs.

The workflow sandbox executes a workflow's module again for every new run, so that no state
leaks from one run into the next. Executing it is cheap; compiling it is not when no
bytecode file can be read (PYTHONDONTWRITEBYTECODE, as the image sets, with an editable
install): about 13 ms of the worker's event loop per incident. This finder hands the
import system a loader that compiles each file once per content and process; every run
still gets a fresh module executed from that code (code objects are immutable).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections.abc import Sequence
from types import CodeType, ModuleType

_compiled: dict[tuple[str, int, int], CodeType] = {}
_lock = threading.Lock()


class _CachingLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)  # an edited file compiles again
        with _lock:
            code = _compiled.get(key)
        if code is None:
            code = super().get_code(fullname)
            assert code is not None
            with _lock:
                _compiled[key] = code
        return code


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.package and not fullname.startswith(self.package + "."):
            return None
        spec = None
        for finder in sys.meta_path:  # whoever finds it (an editable install has its own)
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _CachingLoader(fullname, spec.loader.path)
        return spec


def install(package: str) -> None:
    """Serve `package` and its modules through the cache (once per process)."""
    if not any(isinstance(f, _Finder) and f.package == package for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(package))


def cached_modules() -> int:
    """How many module versions are compiled and kept (for tests)."""
    return len(_compiled)
