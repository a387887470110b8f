"""Cancelling a run's job on a Flink cluster by name (``pipeline.running.flink_rest``): the
decision, against a stand-in for Flink's REST API (the real cluster is exercised by the Flink
session-cluster tests, whose runs end with no job of theirs left running)."""
from __future__ import annotations

import urllib.error

import pytest

from pipeline.running.flink_rest import cancel_named, rest_base


@pytest.mark.parametrize("master, base", [
    ("127.0.0.1:8081", "http://127.0.0.1:8081"), ("http://jm:8081/", "http://jm:8081"),
    ("[local]", None), ("[auto]", None), (None, None), ("", None)])
def test_only_a_cluster_has_a_rest_address(master, base):
    assert rest_base(master) == base


class Cluster:
    """Flink's /jobs/overview and PATCH /jobs/<id>?mode=cancel; a cancelled job ends after
    ``polls`` more overviews."""

    def __init__(self, jobs: dict[str, tuple[str, str]], polls: int = 1) -> None:
        self.jobs = dict(jobs)  # jid -> (name, state)
        self.cancelled: list[str] = []
        self.polls = polls

    def __call__(self, url: str, method: str = "GET"):
        if method == "PATCH":
            jid = url.rsplit("/", 1)[1].split("?")[0]
            if jid not in self.jobs:
                raise urllib.error.HTTPError(url, 404, "not found", None, None)
            self.cancelled.append(jid)
            return None
        for jid in self.cancelled:
            name, state = self.jobs[jid]
            if state != "CANCELED":
                self.jobs[jid] = (name, "CANCELED" if self.polls <= 0 else "CANCELLING")
        self.polls -= 1
        return {"jobs": [{"jid": jid, "name": name, "state": state}
                         for jid, (name, state) in self.jobs.items()]}


def test_the_runs_own_jobs_that_have_not_ended_are_cancelled_and_awaited():
    cluster = Cluster({"a": ("run-1", "RUNNING"), "b": ("run-1", "RESTARTING"),
                       "c": ("run-1", "FINISHED"), "d": ("other", "RUNNING")})
    assert cancel_named("http://jm", "run-1", request=cluster, sleep=lambda s: None) == []
    assert sorted(cluster.cancelled) == ["a", "b"]
    assert cluster.jobs["d"] == ("other", "RUNNING")


def test_jobs_still_running_after_the_wait_are_named():
    cluster = Cluster({"a": ("run-1", "RUNNING")}, polls=10**9)
    assert cancel_named("http://jm", "run-1", wait_s=0, request=cluster,
                        sleep=lambda s: None) == ["a"]
