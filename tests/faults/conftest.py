"""The fault suite's table: each fault test records what it counted, printed at the end.

`python -m pytest tests/faults -q` ends with one row per fault (events sent, lost, stored
twice, acted twice) and a summary line, so a run reads as the promise it checks: under a
kill -9 or an outage, nothing lost, nothing doubled, nothing acted on twice.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field


class FaultRow(BaseModel):
    """What one fault test counted. Counts are of events, incidents or actions as `unit` says."""

    fault: str
    unit: str = "events"
    sent: int = Field(ge=0)
    lost: int = Field(ge=0)
    duplicated: int = Field(ge=0)
    acted_twice: int = Field(default=0, ge=0)
    note: str = ""


class FaultTable:
    def __init__(self) -> None:
        self.rows: list[FaultRow] = []

    def record(self, **counts: object) -> FaultRow:
        """Record one fault's counts (the fields of FaultRow) and return the row."""
        row = FaultRow.model_validate(counts)
        self.rows.append(row)
        return row


_TABLE = FaultTable()


@pytest.fixture(scope="session")
def fault_table() -> FaultTable:
    return _TABLE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = _TABLE.rows
    if not rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault suite")
    write(f"{'fault':44} {'unit':10} {'sent':>8} {'lost':>6} {'twice':>6} {'acted 2x':>9}  note")
    for r in rows:
        write(
            f"{r.fault:44} {r.unit:10} {r.sent:>8} {r.lost:>6} {r.duplicated:>6} "
            f"{r.acted_twice:>9}  {r.note}"
        )
    lost = sum(r.lost for r in rows)
    twice = sum(r.duplicated for r in rows)
    acted = sum(r.acted_twice for r in rows)
    write(
        f"faults: {len(rows)} scenarios, {sum(r.sent for r in rows)} sent, "
        f"{lost} lost, {twice} duplicated, {acted} acted twice"
    )
