"""One benchmark row: its figure beside the baseline measured in the same run, and its goal."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

RESULTS = Path(__file__).with_name("results.json")


@dataclass
class Row:
    """A benchmark's result.

    Args:
        number: The row of the benchmark table (benchmarks/README.md).
        name: What was measured.
        baseline_name: What it is compared with.
        figure: The measured figure (None: not measured).
        baseline: The baseline's figure, measured in the same run (None: the goal is no ratio).
        unit: Unit of both figures.
        goal: The goal, in words.
        holds: Whether the goal is met (None: the row reports figures only).
        ratio: The figure that the goal is about (a ratio, usually).
        note: What the figures mean, or why a goal is not met.
        details: Further figures, kept in results.json.
    """

    number: int
    name: str
    baseline_name: str
    figure: float | None
    baseline: float | None
    unit: str
    goal: str
    holds: bool | None
    ratio: float | None = None
    note: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def print_rows(rows: Iterable[Row]) -> None:
    """Print rows as a table: figure, baseline, ratio, goal and whether it holds.

    Args:
        rows: The rows to print.
    """
    for row in rows:
        verdict = {True: "HOLDS", False: "NOT MET", None: "reported"}[row.holds]
        baseline = (f" | baseline ({row.baseline_name}): {_fmt(row.baseline)} {row.unit}"
                    if row.baseline_name else "")
        ratio = f" | ratio {_fmt(row.ratio)}" if row.ratio is not None else ""
        print(f"[{row.number}] {row.name}: {_fmt(row.figure)} {row.unit}{baseline}{ratio}"
              f" | goal {row.goal}: {verdict}", flush=True)
        if row.note:
            print(f"    {row.note}", flush=True)


def machine() -> dict[str, Any]:
    """nproc, CPU model and RAM of this machine, and the Python version."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo")
                  if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version()}


def save(rows: Iterable[Row], date: str, path: Path = RESULTS) -> None:
    """Keep the rows, the machine and the date as JSON (the last run's figures).

    Args:
        rows: The rows to keep.
        date: When they were measured (ISO 8601, UTC).
        path: The JSON file.
    """
    document = {"date": date, "machine": machine(),
                "rows": [dataclasses.asdict(row) for row in rows]}
    for row in document["rows"]:
        row["details"].setdefault("measured", date)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load(path: Path = RESULTS) -> list[Row]:
    """The rows of the last run kept in ``path`` (none when there is no such file), each with
    the date it was measured in its details.

    Args:
        path: The JSON file.
    """
    if not path.is_file():
        return []
    document = json.loads(path.read_text(encoding="utf-8"))
    rows = [Row(**row) for row in document["rows"]]
    for row in rows:
        row.details.setdefault("measured", document["date"])
    return rows
