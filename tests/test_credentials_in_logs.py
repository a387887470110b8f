"""Credentials never appear in logs or reports: the CLI with everything logged at DEBUG, and serve-local.

Both run as real subprocesses, so everything they print, from any library, is captured.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3

from pipeline.__main__ import main
from tests.test_local_service_serve import read_banner

ROOT = Path(__file__).resolve().parents[1]
ENV_SECRET = "envSecretKey/ShouldNeverBePrinted0123456789"
ENV_TOKEN = "envSessionToken/ShouldNeverBePrinted9876543210"

# The CLI quiets botocore, urllib3, Beam and moto to WARNING. This wrapper makes every logger log
# everything at DEBUG instead (botocore then logs each request's headers), and records the local
# backend's secret key, which is random per run, so the test knows what to look for: a spy on
# LocalBackend's constructor, the one thing a real component cannot tell the test.
WRAPPER = textwrap.dedent("""
    import logging, sys
    logging.Logger.setLevel = lambda self, level: None
    logging.root.level = logging.DEBUG
    from pipeline.local import backend
    init = backend.LocalBackend.__init__
    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        with open(sys.argv[1], "a") as f:
            f.write(self.credentials.access_key_id + " " + self.credentials.secret_access_key + "\\n")
    backend.LocalBackend.__init__ = spy
    from pipeline.__main__ import main
    sys.exit(main(sys.argv[2:]))
""")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(ROOT), AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, **extra)
    return env


def test_cli_run_at_debug_level_never_prints_a_secret(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps({"id": f"c{i}", "text": f"Customer: my parcel {i} is "
                                          f"late. Agent: I will resend it today."}) + "\n"
                             for i in range(3)))
    seen = tmp_path / "local-credentials.txt"
    env = clean_env(AWS_ACCESS_KEY_ID="AKIAENVKEYSHOWNOK000", AWS_SECRET_ACCESS_KEY=ENV_SECRET,
                    AWS_SESSION_TOKEN=ENV_TOKEN, AWS_DEFAULT_REGION="us-east-1")
    run = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(seen), "run", "--input", str(calls), "--output",
         str(tmp_path / "out"), "--sink", "jsonl", "--min-records-per-job", "1",
         "--local-speed", "1000", "--debug", "-vv"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert "summaries       3" in run.stdout
    key_id, local_secret = seen.read_text().split()
    # botocore logged the signed requests at DEBUG: the test would see what they carried.
    assert re.search(r"DEBUG botocore\.\S+: Sending http request", output)
    assert f"Credential={key_id}/" in output
    for secret in (local_secret, ENV_SECRET, ENV_TOKEN):
        assert secret not in output


def test_serve_local_shows_its_key_once_to_its_user_and_never_logs_it() -> None:
    """The banner is how the user gets the key (see pipeline/local/serve.py); the request log
    (--verbose) carries no secret."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve-local", "--s3-port", "0", "--bedrock-port", "0",
         "--bucket", "creds-in-logs", "--verbose"],
        cwd=ROOT, env=clean_env(AWS_SECRET_ACCESS_KEY=ENV_SECRET, AWS_SESSION_TOKEN=ENV_TOKEN),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = read_banner(proc)
        exports = dict(re.findall(r"export (\w+)=(\S+)", banner))
        secret = exports["AWS_SECRET_ACCESS_KEY"]
        assert secret != ENV_SECRET and len(secret) >= 40
        assert "unset AWS_SESSION_TOKEN" in banner
        for service in ("s3", "bedrock"):
            client = boto3.client(service, endpoint_url=exports[f"AWS_ENDPOINT_URL_{service.upper()}"],
                                  region_name="us-east-1",
                                  aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=secret)
            if service == "s3":
                client.put_object(Bucket="creds-in-logs", Key="k", Body=b"v")
            else:
                client.list_model_invocation_jobs()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # stopped by Ctrl-C
    printed = banner + out
    # Exactly twice, both meant for the user: the export line and Beam's S3 flag.
    assert printed.count(secret) == 2
    assert f"export AWS_SECRET_ACCESS_KEY={secret}" in printed
    assert f"--s3_secret_access_key={secret}" in printed
    assert "list-model-invocation-jobs" in err or "GET" in err  # the request log was on
    for value in (secret, ENV_SECRET, ENV_TOKEN):
        assert value not in err
    assert ENV_SECRET not in printed and ENV_TOKEN not in printed


def test_a_foreign_session_token_does_not_reach_the_local_backend(monkeypatch, tmp_path, capsys):
    """A user's AWS_SESSION_TOKEN stays in the environment, but every client of a local run,
    Beam's S3 filesystem included (the output probe and the s3:// sink), is given the local key
    explicitly and so never sends that token, which the local endpoints would refuse."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", ENV_TOKEN)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "text": "Customer: hello. Agent: hi."})
                            + "\n" for i in range(3)))
    output = f"s3://bedrock-batch-local/out-{tmp_path.name}"
    assert main(["run", "--input", str(path), "--output", output, "--sink", "jsonl",
                 "--min-records-per-job", "1"]) == 0
    assert "summaries       3" in capsys.readouterr().out
    assert os.environ["AWS_SESSION_TOKEN"] == ENV_TOKEN
