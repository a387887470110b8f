"""The fault matrix's results as one table at the end of the test report (a pytest plugin,
registered in conftest.py); tests/test_fault_matrix.py adds a row per case it runs."""
from __future__ import annotations

from typing import Any

import pytest

COLUMNS = ("case", "runner", "inputs", "summaries", "failures", "jobs created", "duplicate jobs", "lost",
           "exit code")
ROWS: list[dict[str, Any]] = []
# Set by tests/test_fault_matrix.py at collection: how many (case, runner) pairs there are, how
# many run, and how they were chosen.
SELECTION: dict[str, Any] = {}


def add_row(row: dict[str, Any]) -> None:
    """Record one case's row; every column of COLUMNS must be there."""
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"fault matrix row lacks {missing}")
    ROWS.append(row)


def render(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS,
           left: int = 1) -> list[str]:
    """The rows as text lines under a header; the first ``left`` columns left-aligned, the
    others (numbers) right-aligned."""
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    line = lambda values: "  ".join(  # noqa: E731
        str(v).ljust(w) if i < left else str(v).rjust(w)
        for i, (v, w) in enumerate(zip(values, widths)))
    return [line(columns), line("-" * w for w in widths)] + [line(r[c] for c in columns)
                                                             for r in rows]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not ROWS:
        return
    title = "fault matrix (local backend)"
    if SELECTION:
        title += f" ({SELECTION['ran']} of {SELECTION['total']} runs: {SELECTION['how']})"
    terminalreporter.write_sep("=", title)
    for text in render(ROWS, left=2):
        terminalreporter.write_line(text)
