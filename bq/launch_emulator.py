"""Start bqemulator (``bqemulator start ...`` arguments) with DuckDB's spatial extension optional.

Run with the emulator venv's Python. bqemulator refuses to start unless it can INSTALL DuckDB's
``spatial`` extension, a download from DuckDB's extension site; offline that fails. GEOGRAPHY is
the only feature that needs it, so with ``BQEMU_SPATIAL=0`` (the default here) the extension is
not even tried, and with ``BQEMU_SPATIAL=1`` it is loaded as bqemulator does.
"""
import os
import sys

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _skip_spatial(self: DuckDBEngine) -> None:
    print("launch_emulator: DuckDB spatial extension not loaded (GEOGRAPHY unsupported); "
          "BQEMU_SPATIAL=1 loads it", file=sys.stderr)


if os.environ.get("BQEMU_SPATIAL", "0") != "1":
    DuckDBEngine._load_spatial = _skip_spatial

if __name__ == "__main__":
    sys.exit(main())
