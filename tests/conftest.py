"""Shared fixtures: the embedded local backend (real moto S3 + the local Bedrock batch service)."""
from __future__ import annotations

import logging
import os
from typing import Callable, Iterator

import pytest

from pipeline.local.backend import DEFAULT_BUCKET, LocalBackend
from pipeline.local.jobs_store import Timing

# Real Kafka broker, Flink job server, SDK worker pool and BigQuery emulator (session fixtures,
# started on first use); the fault matrix's table at the end of the report.
pytest_plugins = ["tests.jvm_services", "tests.bq_services", "tests.fault_table"]

# Fast simulated clock: a job's phases take a few hundred milliseconds in real time.
FAST = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=10.0)


@pytest.fixture
def local_backend_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LocalBackend]]:
    """Start LocalBackends with custom quotas/faults/timing; env points boto3 at the last one."""
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
