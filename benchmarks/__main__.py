"""`make bench`: every row of the scale benchmark table (benchmarks/README.md), each beside its baseline and goal.

Prints the rows as they finish and keeps them, with the machine and the date, in
benchmarks/results.json. Sizes can be lowered for a quick look (the goals are about the defaults).

    .venv/bin/python -m benchmarks [--records 200000] [--small 20000] [--flink-records 20000]
                                   [--end-to-end 20000] [--runner-sizes 20000,200000]
                                   [--cluster-records 20000]
                                   [--million 1000000] [--million-cap-mib 8192]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from benchmarks import codec, flink_cluster, runners, scale, scheduling
from benchmarks.report import RESULTS, Row, load, machine, print_rows, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec-records", type=int, default=20_000)
    parser.add_argument("--parse-lines", type=int, default=5_000)
    parser.add_argument("--model-records", type=int, default=2_000,
                        help="records of each of the five families for row 8")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--flink-records", type=int, default=20_000)
    parser.add_argument("--end-to-end", type=int, default=20_000)
    parser.add_argument("--million", type=int, default=1_000_000,
                        help="rows 11-13's large size (their mid size is --records)")
    parser.add_argument("--million-cap-mib", type=float, default=8192,
                        help="rows 11-13 stop the large run once its processes hold this much")
    parser.add_argument("--runner-sizes", type=lambda text: [int(n) for n in text.split(",")],
                        default=[20_000, 200_000], help="row 9's bounded sizes, e.g. 2000,20000")
    parser.add_argument("--cluster-records", type=int, default=20_000,
                        help="row 10's input: one TaskManager against two")
    parser.add_argument("--rows", type=lambda text: {int(n) for n in text.split(",")},
                        default=set(range(1, 14)),
                        help="only these rows (e.g. 4,7); the others keep their last figures")
    args = parser.parse_args()
    # The child processes (CLI runs, serve-local) would print Google client deprecation notices.
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    started = time.perf_counter()
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    print(f"machine: {machine()}  date: {date}", flush=True)
    rows: list[Row] = []

    def add(numbers: tuple[int, ...], measure: Callable[[], list[Row]]) -> None:
        if not args.rows & set(numbers):
            return
        # A benchmark that fails is reported as not measured, and the others still run.
        try:
            new = measure()
        except Exception as exc:  # noqa: BLE001 - the run goes on and says what failed
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            new = [Row(n, "not measured", "", None, None, "", "", False,
                       note=f"NOT MEASURED: {type(exc).__name__}: {message}") for n in numbers]
        print_rows(new)
        rows.extend(new)

    add((1, 2), lambda: [codec.encode_row(args.codec_records), codec.parse_row(args.parse_lines)])
    add((8,), lambda: [codec.model_row(args.model_records)])
    add((6,), lambda: [scheduling.scheduling_row()])
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        kept: dict[int, scale.Prepared] = {}  # row 3's run, which rows 11-13 compare with
        add((3, 5), lambda: scale.shards_rows(args.records, args.small, Path(tmp), kept))
        add((4,), lambda: [scale.flink_row(args.flink_records, Path(tmp))])
        add((7,), lambda: [scale.end_to_end_row(args.end_to_end, Path(tmp))])
        add((9,), lambda: [runners.runners_row(args.runner_sizes, 3, 10, Path(tmp))])
        add((10,), lambda: [flink_cluster.taskmanagers_row(args.cluster_records, Path(tmp))])
        add((11, 12, 13), lambda: scale.million_rows(args.million, args.records, Path(tmp), kept,
                                                     args.million_cap_mib))
    measured = {row.number for row in rows}
    rows += [row for row in load() if row.number not in measured]
    rows.sort(key=lambda row: row.number)
    save(rows, date)
    print(f"\nall rows in {time.perf_counter() - started:.0f} s; kept in {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
