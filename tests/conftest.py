"""Shared fixtures: the embedded local backend (real moto S3 + the local Bedrock batch service)."""
from __future__ import annotations

import logging
import os
from typing import Callable, Iterator

import botocore.loaders
import botocore.session
import pytest
from moto.core.base_backend import BackendDict

from pipeline.local.backend import DEFAULT_BUCKET, LocalBackend
from pipeline.local.jobs_store import Timing

# Real Kafka broker, Flink job server, SDK worker pool and BigQuery emulator (session fixtures,
# started on first use); the fault matrix's and the combination matrix's tables at the end of the
# report.
pytest_plugins = ["tests.jvm_services", "tests.bq_services", "tests.fault_table", "tests.combo_table"]

# Fast simulated clock: a job's phases take a few hundred milliseconds in real time.
FAST = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=10.0)


class _PathsOnce(list):
    """A loader's search paths where appending a path already there does nothing: boto3 appends
    its own data folder to the loader of every Session it makes."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader() -> Iterator[None]:
    """Every boto3 Session in the test process shares one botocore data loader per data path, so
    the service models and endpoint rules (megabytes of JSON) are parsed once instead of for each
    of the ~20 clients a pipeline run builds in its DoFns' setup() (~0.15 s of CPU each, about
    half the CPU of a small run). The clients are still built by the code under test, as in
    production; only the parsed files are reused. CLI runs in subprocesses are unaffected."""
    create = botocore.session.create_loader
    loaders: dict[str | None, botocore.loaders.Loader] = {}

    def shared(search_path_string: str | None = None) -> botocore.loaders.Loader:
        if search_path_string not in loaders:
            loader = create(search_path_string)
            loader._search_paths = _PathsOnce(loader.search_paths)
            loaders[search_path_string] = loader
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture
def local_backend_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LocalBackend]]:
    """Start LocalBackends with custom quotas/faults/timing; env points boto3 at the last one.

    The test's backends start with no S3 object in them. Moto keeps S3 in process-wide state, so
    without the reset a test would see what an earlier test left under the same bucket and run
    id: a source ledger entry for that test's input file, counted as a second file of the run.
    """
    BackendDict.reset()
    started: list[LocalBackend] = []

    def start(**kwargs) -> LocalBackend:
        kwargs.setdefault("bucket", DEFAULT_BUCKET)
        kwargs.setdefault("timing", FAST)
        backend = LocalBackend(**kwargs).start()
        started.append(backend)
        for key, value in backend.env().items():
            monkeypatch.setenv(key, value)
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def local_backend(local_backend_factory) -> LocalBackend:
    return local_backend_factory()


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach AWS: no profile or credentials from the developer's machine leak in."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Beam's job-server log thread may still print a Flink shutdown line after pytest closed its
    output streams; that is noise, not a test outcome."""
    logging.raiseExceptions = False
