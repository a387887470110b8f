"""One run per output folder at a time: the lock's rules, the lock on local disk and on S3, two
CLI runs started at once, a killed run's rerun, `collect` into a run's folder, and an --output
inside the --input pattern."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline import exit_codes
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from pipeline.local.jobs_store import Timing
from tests.pipelines import read_rows, transcripts
from transforms.core.quotas import Quotas
from transforms.sinks import commit, lease, lock
from transforms.sinks.lease import Holder

ROOT = Path(__file__).resolve().parent.parent
HOST = "host-a"
QUICK = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=10.0)
QUOTAS = Quotas(max_records_per_job=15, min_records_per_job=5)


def holder(**changes) -> Holder:
    base = dict(run_id="r1", token="t", host=HOST, pid=100, since=1000.0, expires=1120.0)
    return Holder(**{**base, **changes})


def alive_pids(*pids: int):
    return lambda pid: pid in pids


# The rules: which generation to create, given the folder's locks.

def test_an_unlocked_folder_is_taken_with_generation_1():
    assert lease.next_generation({}, 1000.0, HOST, alive_pids()) == (1, None)


def test_a_live_holder_keeps_the_folder_whoever_asks():
    current = holder()
    locks = {1: holder(released=True), 2: current}
    assert lease.next_generation(locks, 1100.0, HOST, alive_pids(100)) == (None, current)
    other_host = holder(host="host-b")
    assert lease.next_generation({4: other_host}, 1100.0, HOST, alive_pids()) == \
        (None, other_host), "a process on another host cannot be seen: its lease counts"


def test_released_lapsed_or_dead_holders_free_the_folder():
    assert lease.next_generation({3: holder(released=True)}, 1001.0, HOST, alive_pids(100)) \
        == (4, None)
    assert lease.next_generation({3: holder(host="host-b")}, 1120.0, HOST, alive_pids()) \
        == (4, None), "a lease that lapsed frees the folder, wherever its holder ran"
    assert lease.next_generation({3: holder()}, 1001.0, HOST, alive_pids()) == (4, None), \
        "a killed run on this host frees it at once"
    assert lease.next_generation({1: holder(), 3: None}, 1001.0, HOST, alive_pids(100)) \
        == (4, None), "a lock file this code did not write guards nothing"


def test_only_the_highest_generation_wins():
    assert lease.won(3, [2, 3])
    assert not lease.won(3, [3, 5]), "a stale taker that recreated a pruned generation backs off"


def test_lock_names_and_contents_round_trip():
    assert [lease.generation(n) for n in ("_LOCK.12", "_LOCK.0", "_LOCK.x", "_RUN_ID")] == \
        [12, None, None, None]
    assert Holder.from_json(holder().to_json()) == holder()
    assert Holder.from_json("{not json") is None and Holder.from_json('{"pid": 1}') is None


def test_the_refusal_names_the_holder_and_what_to_do():
    message = lease.held_message("out", holder(since=0.0, expires=120.0))
    assert message == ("--output out is in use by run r1 (pid 100 on host-a, since "
                       "1970-01-01 00:00:00 UTC; its claim is renewed while it runs and lapses "
                       "at 1970-01-01 00:02:00 UTC if it stops): wait for that run to end and run "
                       "again, or choose another --output")


# The lock through commit.hold, as a user's own pipeline calls it.

def _lock_files(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in folder.glob("_LOCK.*")}


def test_hold_is_exclusive_even_for_the_same_run_id_and_released_on_any_exit(tmp_path):
    out = str(tmp_path / "out")
    with commit.hold(out, "r1", overwrite=False) as held:
        assert held.run_id == "r1"
        with pytest.raises(commit.OutputInUse, match=r"is in use by run r1 \(pid \d+"):
            with commit.hold(out, "r1", overwrite=False):
                pass
        [(name, content)] = _lock_files(tmp_path / "out").items()
        assert name == "_LOCK.1" and content["pid"] == os.getpid() and not content["released"]
    assert _lock_files(tmp_path / "out")["_LOCK.1"]["released"]

    with pytest.raises(KeyboardInterrupt):
        with commit.hold(out, "r1", overwrite=False):
            raise KeyboardInterrupt
    assert list(_lock_files(tmp_path / "out")) == ["_LOCK.2"], "older generations are pruned"
    assert _lock_files(tmp_path / "out")["_LOCK.2"]["released"], "released on Ctrl-C too"


def test_a_create_whose_answer_was_lost_is_still_ours(tmp_path, monkeypatch):
    """S3 may apply a PutObject whose answer is lost; botocore's retry then gets 412. Simulated
    on the local store, whose create does its real work and then reports the name as taken."""
    real_create = lock._LocalLocks.create
    monkeypatch.setattr(lock._LocalLocks, "create",
                        lambda self, gen, text: real_create(self, gen, text) and False)
    out = tmp_path / "out"
    with commit.hold(str(out), "r1", overwrite=False):
        [(name, content)] = _lock_files(out).items()
        assert name == "_LOCK.1" and content["pid"] == os.getpid()


def test_the_holder_renews_its_lease_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "RENEW_SECONDS", 0.05)
    out = tmp_path / "out"
    with commit.hold(str(out), "r1", overwrite=False):
        first = _lock_files(out)["_LOCK.1"]["expires"]
        deadline = time.monotonic() + 60
        while _lock_files(out)["_LOCK.1"]["expires"] == first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)


def test_a_lapsed_claim_taken_by_another_run_is_not_published(tmp_path, monkeypatch):
    """The other process's lock is written by hand: it is what a run on another host writes
    when it takes a folder whose lease lapsed (this process was paused meanwhile)."""
    out = tmp_path / "out"
    with commit.hold(str(out), "r1", overwrite=False):
        (out / "_LOCK.2").write_text(holder(run_id="r2", expires=time.time() + 120).to_json())
        with pytest.raises(commit.ClaimLost, match="another run took --output"):
            commit.publish(str(out), "r1")
    assert not (out / "_SUCCESS").exists()
    assert not _lock_files(out)["_LOCK.2"]["released"], "the taker's lock is left alone"


def test_hold_on_s3_uses_conditional_writes(local_backend):
    """moto's S3 server answers a PutObject with If-None-Match: * on an existing key with 412."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions([f"--s3_endpoint_url={local_backend.s3_endpoint_url}",
                               f"--s3_region_name={local_backend.region}"])
    FileSystems.set_options(options)
    s3 = local_backend.boto3_client("s3")
    bucket = f"claim-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    out = f"s3://{bucket}/out"
    with commit.hold(out, "r1", overwrite=False, options=options):
        with pytest.raises(commit.OutputInUse, match="is in use by run r1"):
            with commit.hold(out, "r2", overwrite=False, options=options):
                pass
        # A taker whose listing missed generation 1 creates it again: S3 refuses.
        store = lock._S3Locks(out, s3)
        assert not store.create(1, holder().to_json())
    with commit.hold(out, "r1", overwrite=False, options=options):
        pass
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["out/_LOCK.2", "out/_RUN_ID"]


def test_other_filesystems_check_then_write_through_beam(tmp_path):
    """The store for gs://, hdfs:// and the like uses only Beam's FileSystems API; it runs here
    on a local folder, as no other filesystem is at hand (so its non-atomic create is not
    raced)."""
    store = lock._BeamLocks(str(tmp_path))
    assert store.list() == {}
    assert store.create(1, "one") and not store.create(1, "again")
    store.put(2, "two")
    assert store.list() == {1: "one", 2: "two"}
    store.delete(1)
    assert store.list() == {2: "two"}


def test_a_killed_holder_not_yet_waited_for_frees_the_folder(tmp_path):
    """A killed run whose parent has not reaped it yet (a zombie) still answers kill(pid, 0)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.05)
        out = tmp_path / "out"
        out.mkdir()
        (out / "_LOCK.1").write_text(holder(pid=child.pid, host=socket.gethostname(),
                                            expires=time.time() + 120).to_json())
        with commit.hold(str(out), "r1", overwrite=False):
            assert list(_lock_files(out)) == ["_LOCK.2"]
    finally:
        child.wait()


# Two CLI runs at once, and a killed run's rerun.

# Holds the CLI inside `run` (the folder claimed, no job created yet) until the test creates the
# gate file, after noting that it got there; only the moment comes from the hook.
GATED = textwrap.dedent("""
    import os, sys, time
    import pipeline.running.execute
    real_run = pipeline.running.execute.run

    def gated(*args, **kwargs):
        open(os.environ["CLAIMED_NOTE"], "w").close()
        while not os.path.exists(os.environ["GATE"]):
            time.sleep(0.1)
        return real_run(*args, **kwargs)

    pipeline.running.execute.run = gated
    from pipeline.__main__ import main
    sys.exit(main(sys.argv[1:]))
""")


def _argv(backend, input_path: Path, output: Path, run_id: str) -> list[str]:
    return ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--run-id", run_id, "--input", str(input_path),
            "--output", str(output), "--sink", "jsonl", "--poll-interval-seconds", "1",
            "--max-records-per-job", "15", "--min-records-per-job", "5"]


def _input(tmp_path: Path, count: int = 20) -> tuple[Path, list[str]]:
    items = transcripts(count)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    return path, sorted(t.id for t in items)


def _job_names(backend, run_id: str) -> list[str]:
    client = backend.boto3_client("bedrock")
    pages = client.get_paginator("list_model_invocation_jobs").paginate(nameContains=run_id)
    return [j["jobName"] for page in pages for j in page["invocationJobSummaries"]]


def _start(argv: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GATE": str(tmp_path / "gate"),
           "CLAIMED_NOTE": str(tmp_path / f"claimed-{name}")}
    return subprocess.Popen([sys.executable, "-c", GATED, *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("same_run_id", [True, False])
def test_two_runs_started_at_once_on_one_folder(same_run_id, local_backend_factory, tmp_path):
    """Both CLIs start together; the one that claims the folder waits at the gate until the
    other has exited, so the second always meets a held folder, however the processes are
    scheduled."""
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    out = tmp_path / "out"
    run_ids = ["same", "same"] if same_run_id else ["first", "second"]
    procs = {name: _start(_argv(backend, input_path, out, run_id), tmp_path, name)
             for name, run_id in zip("ab", run_ids)}
    try:
        deadline = time.monotonic() + 300
        while all(p.poll() is None for p in procs.values()):
            assert time.monotonic() < deadline, "neither run was refused"
            time.sleep(0.2)
        [refused] = [name for name, p in procs.items() if p.poll() is not None]
        [winner] = [name for name in procs if name != refused]
        _, err = procs[refused].communicate()
        assert procs[refused].returncode == exit_codes.USAGE, err
        [line] = [line for line in err.splitlines() if line.startswith("error:")]
        holder_run = run_ids["ab".index(winner)]
        assert f"is in use by run {holder_run} (pid {procs[winner].pid} on" in line
        assert "Traceback" not in err
        assert not (tmp_path / f"claimed-{refused}").exists()
        if not same_run_id:
            assert _job_names(backend, run_ids["ab".index(refused)]) == [], \
                "the refused run created no job"
        (tmp_path / "gate").touch()
        out_text, err = procs[winner].communicate(timeout=300)
        assert procs[winner].returncode == exit_codes.OK, err
    finally:
        (tmp_path / "gate").touch()
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == ids
    assert (out / "_SUCCESS").read_text() == holder_run
    assert not list(out.glob(".staging-*"))


@pytest.mark.timeout(600)
def test_a_killed_runs_rerun_takes_the_folder_over_at_once(local_backend_factory, tmp_path,
                                                           capsys):
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    out = tmp_path / "out"
    argv = _argv(backend, input_path, out, "killed")
    proc = _start(argv, tmp_path, "killed")
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "claimed-killed").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run never claimed its folder"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert not _lock_files(out)["_LOCK.1"]["released"], "a killed run releases nothing"

    assert main(argv) == exit_codes.OK, capsys.readouterr().err
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == ids
    assert list(_lock_files(out)) == ["_LOCK.2"]


@pytest.mark.timeout(600)
def test_ctrl_c_releases_the_folder(local_backend_factory, tmp_path):
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, _ = _input(tmp_path)
    out = tmp_path / "out"
    proc = _start(_argv(backend, input_path, out, "interrupted"), tmp_path, "interrupted")
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "claimed-interrupted").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run never claimed its folder"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert _lock_files(out)["_LOCK.1"]["released"], "released on Ctrl-C"


# collect

def _job_dir(tmp_path: Path, name: str = "abcdefghijkl") -> Path:
    from pipeline.local.responses import invoke
    from transforms.prepare.families import family_for

    model = "anthropic.claude-3-haiku-20240307-v1:0"
    job_dir = tmp_path / name
    job_dir.mkdir()
    lines = []
    for i in range(3):
        body = family_for(model).build_request(f"Customer: order {i} is late. Agent: refunded.",
                                               None, 100, 0.2)
        lines.append(json.dumps({"recordId": f"REC{i}", "modelInput": body,
                                 "modelOutput": invoke(model, "InvokeModel", body).body}))
    (job_dir / "shard-00000.jsonl.out").write_text("\n".join(lines) + "\n")
    return job_dir


def _collect(job_dir: Path, out: Path, *extra: str) -> int:
    return main(["collect", "--job-output", str(job_dir), "--output", str(out), "--sink", "jsonl",
                 "--model-id", "anthropic.claude-3-haiku-20240307-v1:0", *extra])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_collect_into_a_finished_runs_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    input_path, ids = _input(tmp_path, 3)
    assert main(["run", "--input", str(input_path), "--output", str(out), "--sink", "jsonl",
                 "--min-records-per-job", "1", "--run-id", "the-run"]) == exit_codes.OK
    before = _snapshot(out)
    capsys.readouterr()

    # collect has no --overwrite: it never replaces another run's rows.
    for extra, refusal in (((), "choose an empty --output"),
                           (("--overwrite",), "collect does not use --overwrite")):
        assert _collect(_job_dir(tmp_path, f"job{len(extra)}"), out, *extra) == exit_codes.USAGE
        [line] = [line for line in capsys.readouterr().err.splitlines()
                  if line.startswith("error:")]
        assert refusal in line
        assert _snapshot(out) == before, "the run's rows and markers are untouched"
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == ids


def test_collect_claims_a_new_folder_and_may_collect_the_same_job_again(tmp_path, capsys):
    out = tmp_path / "out"
    job_dir = _job_dir(tmp_path)
    for _ in range(2):
        assert _collect(job_dir, out) == exit_codes.OK
        assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == \
            ["REC0", "REC1", "REC2"], "collected again, the rows are replaced, not added"
    assert (out / "_RUN_ID").read_text() == (out / "_SUCCESS").read_text() == \
        "collect-abcdefghijkl"
    assert not list(out.glob(".staging-*"))

    assert _collect(_job_dir(tmp_path, "otherjob"), out) == exit_codes.USAGE
    assert "already holds the output of run collect-abcdefghijkl" in capsys.readouterr().err


# An --output inside the --input pattern.

def test_an_output_inside_the_input_pattern_is_refused_before_anything_starts(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    input_path, _ = _input(work, 3)
    out = work / "out"
    # Before the check, this first run read its own _RUN_ID back as an UnknownFormat row.
    assert main(["run", "--input", str(work / "**"), "--output", str(out), "--sink", "jsonl",
                 "--min-records-per-job", "1"]) == exit_codes.USAGE
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert f"--input {work / '**'} matches {out}/" in line
    assert "choose a --output outside the --input pattern, or narrow --input" in line
    assert not out.exists(), "refused before the folder was claimed"


def test_a_rerun_whose_input_pattern_covers_its_output_is_refused(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    input_path, ids = _input(work, 3)
    out = work / "out"
    argv = ["run", "--output", str(out), "--sink", "jsonl", "--min-records-per-job", "1",
            "--run-id", "again"]
    assert main([*argv, "--input", str(input_path)]) == exit_codes.OK
    before = _snapshot(out)
    capsys.readouterr()
    # Before the check, this rerun read its own summaries back as 3 more records (exit 3).
    relative = os.path.relpath(work, Path.cwd()) + "/**.jsonl"
    assert main([*argv, "--input", relative]) == exit_codes.USAGE
    assert f"matches {out}/summaries/part-00000-of-00001.jsonl" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == ids


def test_a_report_dir_inside_the_input_pattern_is_refused(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    _input(tmp_path / "in", 3)
    assert main(["run", "--input", str(tmp_path / "in" / "**"), "--output", str(tmp_path / "o"),
                 "--report-dir", str(tmp_path / "in" / "reports"), "--sink", "jsonl"]) \
        == exit_codes.USAGE
    assert "choose a --report-dir outside" in capsys.readouterr().err


def test_an_output_beside_the_input_is_accepted():
    assert commit.output_in_input("data/*.jsonl", "data/out", "r1", ".jsonl") is None
    assert commit.output_in_input("data/", "data/out", "r1", ".jsonl") is None
    assert commit.output_in_input("data/*/*", "data/out", "r1", ".jsonl") is not None
    assert commit.output_in_input("data/*/*.json", "data/out", "r1", ".jsonl") is not None
    assert commit.output_in_input("data/*/*.json", "data/out", "r1", ".jsonl", "reports") \
        is None, "with --report-dir, no report.json is written under --output"
    assert commit.output_in_input("s3://b/in/**", "s3://b/out", "r1", ".parquet") is None
    assert commit.output_in_input("s3://b/**.parquet", "s3://b/out", "r1", ".parquet") \
        .startswith("--input s3://b/**.parquet matches s3://b/out/summaries/part-00000")
