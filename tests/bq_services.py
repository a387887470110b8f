"""Session fixture that runs a local BigQuery emulator (PyPI ``bqemulator``) for the tests.

* ``bq_emulator``: the emulator's REST API on a free localhost port, started once per session
  from its own venv (``make bq-emulator``, bq/bq.mk; env ``BQEMU_VENV``, default
  ``.cache/bqemulator-venv``) through ``bq/launch_emulator.py`` (no DuckDB extension download).
* ``bq_env``: points Beam's BigQuery clients at it for one test: ``BIGQUERY_EMULATOR_HOST``
  (honoured by google-cloud-bigquery, which Beam's streaming inserts use) and
  ``GOOGLE_APPLICATION_CREDENTIALS`` naming an authorized-user file whose token never expires,
  so Application Default Credentials resolve offline and are never refreshed.
* ``bq_client``: a google-cloud-bigquery client on the emulator with anonymous credentials.

Import the fixtures into a test module (``from tests.bq_services import ...``) or list this
module in ``pytest_plugins``.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.jvm_services import REPO_ROOT, ServiceProcess, free_port

MAKE_TARGET = "make bq-emulator"
PROJECT = "emulator-project"
LAUNCHER = REPO_ROOT / "bq" / "launch_emulator.py"


def emulator_python() -> Path:
    """The emulator venv's Python; fails the test when ``make bq-emulator`` has not run."""
    configured = Path(os.environ.get("BQEMU_VENV", ".cache/bqemulator-venv"))
    venv = configured if configured.is_absolute() else REPO_ROOT / configured
    python = venv / "bin" / "python"
    # The stamp is written only after pip finished, so a half-built venv is never used.
    if not (venv / ".installed").is_file() or not python.is_file():
        pytest.fail(f"BigQuery emulator venv missing at {venv}: run `{MAKE_TARGET}`", pytrace=False)
    return python


@dataclass(frozen=True)
class BigQueryEmulator:
    rest_url: str  # e.g. http://127.0.0.1:PORT, without the /bigquery/v2 path
    project: str
    credentials_file: Path

    def env(self) -> dict[str, str]:
        """Environment that points Beam's BigQuery clients and ADC at the emulator."""
        return {"BIGQUERY_EMULATOR_HOST": self.rest_url,
                "GOOGLE_APPLICATION_CREDENTIALS": str(self.credentials_file),
                "GOOGLE_CLOUD_PROJECT": self.project,
                # Never probe the GCE metadata server (a non-local address) for credentials.
                "NO_GCE_CHECK": "true"}


def _answers(rest_url: str) -> Optional[str]:
    try:
        with urllib.request.urlopen(f"{rest_url}/bigquery/v2/projects/{PROJECT}/datasets", timeout=1) as r:
            return rest_url if r.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def write_offline_credentials(path: Path) -> Path:
    """An authorized-user ADC file with a token valid until 2999: google-auth loads it without
    network and never refreshes it (the emulator ignores the bearer token)."""
    path.write_text(json.dumps({
        "type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
        "refresh_token": "emulator", "token": "emulator", "expiry": "2999-01-01T00:00:00Z"}))
    return path


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """A running bqemulator (in-memory) on free localhost ports, killed at teardown."""
    python = emulator_python()
    work = tmp_path_factory.mktemp("bqemulator")
    rest_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "BQEMU_SPATIAL": "0", "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
           "BQEMU_LOG_LEVEL": "warning"}
    service = ServiceProcess(
        "bqemulator", [str(python), str(LAUNCHER), "start", "--ephemeral",
                       "--rest-host", "127.0.0.1", "--rest-port", str(rest_port),
                       "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
                       "--project", PROJECT],
        work / "bqemulator.log", cwd=work, env=env)
    rest_url = service.wait_until(lambda: _answers(f"http://127.0.0.1:{rest_port}"))
    try:
        yield BigQueryEmulator(rest_url, PROJECT, write_offline_credentials(work / "adc.json"))
    finally:
        service.stop()


@pytest.fixture
def bq_env(bq_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> BigQueryEmulator:
    """``bq_emulator`` with the environment pointing Beam's BigQuery clients at it."""
    for key, value in bq_emulator.env().items():
        monkeypatch.setenv(key, value)
    return bq_emulator


@pytest.fixture
def bq_client(bq_emulator: BigQueryEmulator):
    """google-cloud-bigquery client on the emulator (anonymous credentials, explicit endpoint)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(project=bq_emulator.project, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=bq_emulator.rest_url))
    yield client
    client.close()
