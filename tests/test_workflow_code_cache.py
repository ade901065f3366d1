"""The workflow sandbox imports a workflow's module afresh for every run; the package imports
only that module, and its code is compiled once per process (workflows.code_cache), while
every run still gets a module of its own."""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path
from typing import Any

import pytest
import temporalio.workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import workflows
from workflows import code_cache
from workflows.diagnosis import DiagnosisWorkflow
from workflows.incident import IncidentWorkflow


def _count_compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    compiled: list[str] = []
    original = importlib.machinery.SourceFileLoader.source_to_code

    def counting(self: Any, data: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(path))
        return original(self, data, path, *args, **kwargs)

    monkeypatch.setattr(importlib.machinery.SourceFileLoader, "source_to_code", counting)
    return compiled


async def test_a_new_run_compiles_nothing_and_imports_only_its_workflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = SandboxedWorkflowRunner()
    defn = temporalio.workflow._Definition.must_from_class(DiagnosisWorkflow)
    runner.prepare_workflow(defn)  # the first run of the process may compile
    compiled = _count_compiles(monkeypatch)
    seen: list[list[str]] = []
    original = code_cache._CachingLoader.exec_module

    def recording(self: Any, module: Any) -> None:
        seen[-1].append(module.__name__)
        original(self, module)

    monkeypatch.setattr(code_cache._CachingLoader, "exec_module", recording)
    for _ in range(3):
        seen.append([])
        runner.prepare_workflow(defn)
    assert compiled == []
    # each run executes the package and its own module again (isolation), and nothing else
    assert seen == [["workflows", "workflows.diagnosis"]] * 3


async def test_an_edited_workflow_file_is_compiled_again(tmp_path: Path) -> None:
    package = tmp_path / "cachedpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        code_cache.install("cachedpkg")
        import cachedpkg.mod as first  # type: ignore[import-not-found]

        assert first.VALUE == 1
        before = code_cache.cached_modules()
        (package / "mod.py").write_text("VALUE = 22\n")  # another size: another key
        del sys.modules["cachedpkg.mod"]
        import cachedpkg.mod as second

        assert second.VALUE == 22
        assert code_cache.cached_modules() == before + 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cachedpkg.mod", None)
        sys.modules.pop("cachedpkg", None)
        sys.meta_path[:] = [
            f
            for f in sys.meta_path
            if not (isinstance(f, code_cache._Finder) and f.package == "cachedpkg")
        ]


def test_the_package_still_names_every_workflow() -> None:
    assert workflows.IncidentWorkflow is IncidentWorkflow
    assert [w.__name__ for w in workflows.ALL_WORKFLOWS] == [
        "IncidentWorkflow",
        "DiagnosisWorkflow",
        "HealingWorkflow",
        "LearningWorkflow",
        "ProbeServiceWorkflow",
    ]
    with pytest.raises(AttributeError):
        _ = workflows.NoSuchWorkflow  # type: ignore[attr-defined]
