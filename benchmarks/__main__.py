"""`make bench`: every row of issue 10's benchmark table, each beside its baseline and goal.

Prints the rows as they finish and keeps them, with the machine and the date, in
benchmarks/results.json. Sizes can be lowered for a quick look (the goals are about the defaults).

    .venv/bin/python -m benchmarks [--records 200000] [--small 20000] [--flink-records 20000]
                                   [--end-to-end 20000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

from benchmarks import codec, scale, scheduling
from benchmarks.report import RESULTS, Row, machine, print_rows, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec-records", type=int, default=20_000)
    parser.add_argument("--parse-lines", type=int, default=5_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--flink-records", type=int, default=20_000)
    parser.add_argument("--end-to-end", type=int, default=20_000)
    args = parser.parse_args()
    # The child processes (CLI runs, serve-local) would print Google client deprecation notices.
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    started = time.perf_counter()
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    print(f"machine: {machine()}  date: {date}", flush=True)
    rows: list[Row] = []

    def add(*new: Row) -> None:
        print_rows(new)
        rows.extend(new)

    add(codec.encode_row(args.codec_records), codec.parse_row(args.parse_lines))
    add(scheduling.scheduling_row())
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        row3, row5 = scale.shards_rows(args.records, args.small, Path(tmp))
        add(row3, row5)
        add(scale.flink_row(args.flink_records, Path(tmp)))
        add(scale.end_to_end_row(args.end_to_end, Path(tmp)))
    rows.sort(key=lambda row: row.number)
    save(rows, date)
    print(f"\nall rows in {time.perf_counter() - started:.0f} s; kept in {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
