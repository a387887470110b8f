"""A window's records into quota-sized JSONL shards on S3 and the jobs that will read them:
the pure planner (``planning``, ``bucket_plan``) and writer (``shard_writer``), the Beam stages
(``write_shards``), and the undersized policies that are not padding: tails carried across
windows (``carry``) and records sent one by one (``invoke_on_demand``).

Imports ``core``, ``prepare``, ``jobs`` (the shard index that harvest reads back) and
``transforms.config`` only.

Until the next release, the names of the old module ``transforms.shards`` (now
``transforms.shards.write_shards``) are forwarded from here with a DeprecationWarning.
"""
from typing import Any

from transforms import _moved

_SUBMODULES = ("bucket_plan", "carry", "invoke_on_demand", "planning", "shard_writer",
               "write_shards")


def __getattr__(name: str) -> Any:
    return _moved.forward(__name__, name, _SUBMODULES)
