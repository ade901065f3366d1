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
    # an attack (not a fault): what it removed or forged is the attacker's doing; the
    # promise is that it is detected
    detected: bool | None = None
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
    width = max(len(r.fault) for r in rows)
    write(
        f"{'fault':{width}} {'unit':10} {'sent':>8} {'lost':>6} {'twice':>6} {'acted 2x':>9}  note"
    )
    for r in rows:
        write(
            f"{r.fault:{width}} {r.unit:10} {r.sent:>8} {r.lost:>6} {r.duplicated:>6} "
            f"{r.acted_twice:>9}  {'detected: ' if r.detected else ''}{r.note}"
        )
    faults = [r for r in rows if r.detected is None]
    attacks = [r for r in rows if r.detected is not None]
    lost = sum(r.lost for r in faults)
    twice = sum(r.duplicated for r in faults)
    acted = sum(r.acted_twice for r in faults)
    write(
        f"faults: {len(faults)} scenarios, {sum(r.sent for r in faults)} sent, "
        f"{lost} lost, {twice} duplicated, {acted} acted twice; "
        f"attacks: {sum(1 for r in attacks if r.detected)} of {len(attacks)} detected"
    )
