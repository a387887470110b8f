"""Stopping a run's job on a Flink cluster through Flink's REST API. No Beam here.

Beam's cancel (``PipelineResult.cancel``, or its job server stopping on Ctrl-C) only ends the
job server's own client when the job runs on a cluster (``--flink_master host:port``): the
Flink job runs on, measured on the session cluster, where a job whose CLI had ended kept its
slots, failed over and over on its closed LOOPBACK workers and held the next run's tasks back.
(With an embedded cluster, ``[local]`` or ``[auto]``, the job ends with its job server.) The
CLI therefore names each Flink job it submits (``--job_name``) and cancels the jobs of that name
here.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

# States in which a Flink job holds no slots any more.
ENDED = frozenset({"CANCELED", "FAILED", "FINISHED"})
_EMBEDDED = ("[local]", "[auto]", "[collection]")


def rest_base(flink_master: str | None) -> str | None:
    """The REST address of the cluster ``--flink_master`` names, or None for an embedded one.

    Args:
        flink_master: ``--flink_master`` (``host:port``, with or without ``http://``).
    """
    if not flink_master or flink_master in _EMBEDDED:
        return None
    return flink_master.rstrip("/") if "://" in flink_master else f"http://{flink_master}"


def _request(url: str, method: str = "GET", timeout_s: float = 10) -> Any:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 - http(s)
        body = answer.read()
    return json.loads(body) if body else None


def cancel_named(base: str, name: str, wait_s: float = 60.0,
                 request: Callable[..., Any] = _request,
                 sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Cancel every job named ``name`` that has not ended, and wait until each has.

    Args:
        base: The cluster's REST address (``rest_base``).
        name: The Flink job's name (the run's ``--job_name``).
        wait_s: How long to wait for the jobs to end.
        request: Sends one REST call (a parameter for tests).
        sleep: Waits (a parameter for tests).

    Returns:
        The ids of the jobs still not ended after ``wait_s`` (empty: none holds slots).

    Raises:
        OSError: The cluster did not answer (``urllib.error.URLError`` is one).
    """
    def running() -> list[str]:
        jobs = request(f"{base}/jobs/overview")["jobs"]
        return [job["jid"] for job in jobs if job["name"] == name and job["state"] not in ENDED]

    for jid in running():
        try:
            request(f"{base}/jobs/{jid}?mode=cancel", method="PATCH")
        except urllib.error.HTTPError as err:
            if err.code != 404:  # gone meanwhile
                raise
    deadline = time.monotonic() + wait_s
    left = running()
    while left and time.monotonic() < deadline:
        sleep(1.0)
        left = running()
    return left
