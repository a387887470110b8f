"""The combination matrix's results as one table at the end of the test report (a pytest plugin,
registered in conftest.py); tests/test_combos.py adds a row per case it runs."""
from __future__ import annotations

from typing import Any

import pytest

from tests.fault_table import render

COLUMNS = ("case", "flags", "inputs", "summaries", "failures", "exit")
ROWS: list[dict[str, Any]] = []
# Set by tests/test_combos.py at collection: how many cases the generator made, how many run.
SELECTION: dict[str, Any] = {}


def add_row(row: dict[str, Any]) -> None:
    """Record one case's row; every column of COLUMNS must be there."""
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"combination matrix row lacks {missing}")
    ROWS.append(row)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not ROWS:
        return
    title = "combination matrix"
    if SELECTION:
        title += f" ({SELECTION['ran']} of {SELECTION['total']} cases: {SELECTION['how']})"
    terminalreporter.write_sep("=", title)
    for text in render(sorted(ROWS, key=lambda r: r["case"]), COLUMNS, left=2):
        terminalreporter.write_line(text)
