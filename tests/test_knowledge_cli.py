"""`aiops kg ...` through the real command line app against a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from aiops.config import get_settings
from workers import cli

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "knowledge" / "seed.jsonl"

cli._register()


@pytest.fixture
def kg_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in ("AIOPS_EMBEDDING_PROVIDER", "AIOPS_EMBEDDING_MODEL", "AIOPS_EMBEDDING_DIM"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def aiops(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli.app, ["kg", *args], input=stdin)


def test_import_the_seed_twice_then_search_and_stats(kg_env: str) -> None:
    lines = SEED.read_text().splitlines()
    first = aiops("import", str(SEED))
    assert first.exit_code == 0, first.output
    assert f"imported {len(lines)} of {len(lines)} problem line(s): {len(lines)} created" in (
        first.output
    )
    # the seed document's own example: imported, and flagged as refused by the policy
    assert "FLUSHDB" in first.output and "data deletion" in first.output

    again = aiops("import", str(SEED), "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["created"] == 0 and summary["unchanged"] == len(lines)

    stats = json.loads(aiops("stats", "--json").stdout)
    assert stats["nodes"]["problem"] == len(lines)  # the second import duplicated nothing
    solutions = sum(len(json.loads(line)["solutions"]) for line in lines)
    assert stats["edges"]["solves"] == solutions
    assert stats["embeddings"]["problem"]["coverage"] == 1.0

    found = aiops("search", "our disk is completely full, writes keep failing", "--json")
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert hits[0]["problem"]["key"] == "seed-disk-full"
    assert {"id", "key", "description"} <= set(hits[0]["problem"])
    assert isinstance(hits[0]["similarity"], float)
    solution = hits[0]["solutions"][0]
    assert {"id", "description", "success_rate", "score"} <= set(solution)
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)

    table = aiops("search", "ENOSPC on the log volume", "--limit", "2")
    assert table.exit_code == 0, table.output
    assert "[seed-disk-full]" in table.output and "why:" in table.output
    assert "never tried" in table.output

    human = aiops("stats")
    assert "problem" in human.output and "solves" in human.output and "vector(384)" in human.output


def test_import_reports_bad_lines_by_number_and_keeps_the_good_ones(kg_env: str) -> None:
    good = {
        "kind": "problem",
        "key": "k1",
        "description": "Import timeout with large files",
        "category": "import",
        "error_patterns": ["timeout", "too many bookmarks"],
        "severity": "high",
        "context": {"service": "import-service"},
        "solutions": [
            {
                "description": "Batch the import",
                "actions": [
                    {
                        "action_type": "config_update",
                        "target": "import-service",
                        "parameters": {"batch_size": 500},
                        "order": 1,
                    }
                ],
            }
        ],
    }
    text = "\n".join(
        [
            json.dumps(good),
            "{not json",
            json.dumps({**good, "key": "k2", "severity": "urgent"}),
            "",
            json.dumps({**good, "key": "k3", "solution": []}),  # a typo, not silently dropped
            json.dumps({**good, "key": "k4", "description": "Import fails on duplicate URLs"}),
            json.dumps([1, 2]),
        ]
    )
    result = aiops("import", "-", stdin=text)
    assert result.exit_code == 1
    assert "imported 2 of 6 problem line(s): 2 created" in result.output
    assert "line 2: not JSON" in result.output
    assert "line 3: severity" in result.output
    assert "line 5: solution: Extra inputs are not permitted" in result.output
    assert "line 7: expected a JSON object" in result.output
    assert "4 bad line(s) skipped" in result.output

    changed = json.dumps({**good, "description": "Import times out with very large files"})
    update = aiops("import", "-", "--json", stdin=changed)
    assert update.exit_code == 0
    assert json.loads(update.stdout)["updated"] == 1
    hits = json.loads(aiops("search", "import times out with very large files", "--json").stdout)
    assert hits[0]["problem"]["key"] == "k1"
    assert hits[0]["problem"]["description"] == "Import times out with very large files"
    assert hits[0]["problem"]["occurrence_count"] == 1  # written again, not seen again

    missing = aiops("import", "/nonexistent/file.jsonl")
    assert missing.exit_code != 0 and "no such file" in str(missing.exception)


def test_patterns_and_traverse_commands(kg_env: str) -> None:
    line = {
        "kind": "problem",
        "key": "k1",
        "description": "Import timeout with large files",
        "context": {"service": "import-service"},
        "solutions": [{"description": "Batch the import"}],
    }
    assert aiops("import", "-", stdin=json.dumps(line)).exit_code == 0
    none = aiops("patterns", "--min-occurrences", "2")
    assert none.exit_code == 0 and "0 pattern(s)" in none.output
    mined = aiops("patterns", "--min-occurrences", "1", "--json")
    assert mined.exit_code == 0, mined.output
    [pattern] = json.loads(mined.stdout)["patterns"]
    assert pattern["service"] == "import-service" and pattern["solution_id"]

    walked = aiops("traverse", pattern["id"], "--max-hops", "2", "--json")
    assert walked.exit_code == 0, walked.output
    nodes = {n["node_type"]: n for n in json.loads(walked.stdout)}
    assert nodes["problem"]["hops"] == 1 and nodes["solution"]["hops"] == 1
    text = aiops("traverse", pattern["id"], "-r", "triggers")
    assert text.exit_code == 0 and "-triggers->" in text.output and "leads_to" not in text.output
    bad = aiops("traverse", pattern["id"], "-r", "fixes")
    assert bad.exit_code != 0 and "unknown relationship" in str(bad.exception)
