"""Every check comes before `run` claims its output folder: a refused command (a bad flag, an
input that matches nothing) exits 2 with one line and leaves the folder unclaimed, so the
corrected command runs. Every command refuses this CLI's flags it does not use."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.flags import COMMAND_THEMES, command_flags
from tests.pipelines import read_rows

RUNS = ["--min-records-per-job", "1", "--sink", "jsonl", "-q"]


def _input(tmp_path: Path, count: int = 3) -> Path:
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "text": f"Customer: call {i}. Agent: ok."})
                            + "\n" for i in range(count)))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def _unclaimed(out: Path) -> bool:
    """Nothing of a run is in ``out``: no claim marker, no staging folder."""
    return not out.exists() or not any(out.iterdir())


def _symlink_loop(tmp_path: Path) -> str:
    loop = tmp_path / "loop.jsonl"
    os.symlink(loop, loop)
    return str(loop)


def _folder(tmp_path: Path) -> str:
    _input(tmp_path)
    return str(tmp_path)


# (how the --input is made, what the one error line says)
BAD_INPUTS = {
    "typo": (lambda t: str(t / "calsl.jsonl"), "matches no files; check the path"),
    "stdin": (lambda t: "-", "--input reads files, not standard input"),
    "comma list": (lambda t: f"{_input(t)},{_input(t)}", "not a comma-separated list"),
    "symlink loop": (_symlink_loop, "is a symbolic link that leads to no file"),
    "missing folder": (lambda t: str(t / "nope" / "*.jsonl"), f"the folder "),
    "a folder": (_folder, "names a folder, not files: give a glob of its files"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_an_input_that_cannot_be_read_is_refused_before_the_claim(case, tmp_path, capsys):
    make, message = BAD_INPUTS[case]
    pattern = make(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--input", pattern, "--output", str(out), *RUNS]) == 2
    line = _error_line(capsys)
    assert message in line and f"--input {pattern!r}" in line
    assert _unclaimed(out)
    # plan reads the input the same way and says the same.
    assert main(["plan", "--input", pattern]) == 2
    assert _error_line(capsys) == line


def test_input_problem_names_the_input_and_the_fix(tmp_path):
    """The pure check under both commands: what a pattern matched, and why it cannot be read."""
    from pipeline.cli.inputs import input_problem

    good = str(_input(tmp_path))
    assert input_problem(good, [good]) is None
    assert input_problem(str(tmp_path / "*"), [good, str(tmp_path)]) is None  # a glob's folders
    assert input_problem("s3://bucket/calls/*", ["s3://bucket/calls/a.jsonl"]) is None
    assert input_problem("s3://bucket/calls/*", []) == (
        "--input 's3://bucket/calls/*' matches no files; check the path, or give a glob such as "
        "'calls/*.jsonl'")
    assert input_problem(str(tmp_path), [str(tmp_path)]) == (
        f"--input {str(tmp_path)!r} names a folder, not files: give a glob of its files, e.g. "
        f"{str(tmp_path / '*')!r}")
    assert "not a comma-separated list" in input_problem("a.jsonl,b.jsonl", [])


def test_an_unreadable_input_file_is_refused_before_the_claim(tmp_path, capsys, monkeypatch):
    """A file its owner made unreadable. Root reads any file whatever its mode, and the suite
    may run as root, so here os.access answers as it does for another user of a mode 000 file
    (a fake: the only one in this module)."""
    import pipeline.cli.inputs

    good, locked = _input(tmp_path), tmp_path / "locked.jsonl"
    locked.write_text(good.read_text())
    real_access = os.access
    monkeypatch.setattr(pipeline.cli.inputs.os, "access",
                        lambda path, mode: path != str(locked) and real_access(path, mode))
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "*.jsonl"), "--output", str(out), *RUNS]) == 2
    assert (f"{locked} cannot be read (permission denied); make it readable, or narrow --input "
            f"to leave it out") in _error_line(capsys)
    assert _unclaimed(out)


def test_the_corrected_input_then_runs(tmp_path, capsys):
    out = tmp_path / "out"
    good = _input(tmp_path)
    assert main(["run", "--input", str(tmp_path / "calsl.jsonl"), "--output", str(out),
                 *RUNS]) == 2
    capsys.readouterr()
    assert main(["run", "--input", str(good), "--output", str(out), *RUNS]) == 0
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == ["c0", "c1", "c2"]


def test_a_watched_folder_may_start_empty(tmp_path, capsys):
    """--streaming watches for files to come: an empty match at the start is no error."""
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(out),
                 "--streaming", "--window-seconds", "5", "--watch-seconds", "1",
                 "--watch-interval-seconds", "0.5", *RUNS]) == 0
    assert "records in      0" in capsys.readouterr().out


# Each flag with a value that cannot work, and what the one error line names. Before, the
# first group was refused only after --output was claimed (exit 1, then the corrected command
# refused with exit 2).
BAD_FLAGS = [
    (["--window-seconds", "-10"], "--window-seconds"),
    (["--max-text-chars", "0"], "--max-text-chars must be positive"),
    (["--input-format", "xml"], "--input-format 'xml' is not supported"),
    (["--id-field", ""], "--id-field must be a non-empty field name"),
    (["--text-field", ""], "--text-field must be a non-empty field name"),
    (["--streaming", "--window-seconds", "5", "--watch-seconds", "1",
      "--watch-interval-seconds", "0"], "--watch-interval-seconds/--watch_interval_seconds: '0' is not seconds from 0.1 up to"),
    (["--streaming", "--window-seconds", "-5", "--watch-seconds", "1"],
     "--window-seconds/--window_seconds: '-5' is not whole seconds from 1 up to"),
    (["--streaming", "--window-seconds", "5", "--watch-seconds", "-5"],
     "--watch-seconds/--watch_seconds: '-5' is not seconds from 0 up to"),
    # NaN passes every comparison with a limit: --max-cost-usd nan never refused a run.
    (["--max-cost-usd", "nan"], "argument --max-cost-usd/--max_cost_usd: 'nan' is not a number"),
    (["--allowed-lateness-seconds", "nan"], "'nan' is not seconds from 0 up to"),
    (["--on-demand-rps", "nan"], "'nan' is not a number"),
    (["--local-speed", "0"], "argument --local-speed/--local_speed: '0' is not a positive number"),
    (["--local-speed", "nan"], "argument --local-speed/--local_speed: 'nan' is not a number"),
    # Refused before the claim already; kept so that every flag's check stays there.
    (["--allowed-lateness-seconds", "-1"], "--allowed-lateness-seconds/--allowed_lateness_seconds: '-1' is not seconds from 0"),
    (["--max-failure-rate", "2"], "--max-failure-rate 2 is not a fraction"),
    (["--max-tokens", "0"], "--max-tokens must be >= 1"),
    (["--temperature", "3"], "--temperature must be between 0 and 1"),
    (["--max-record-retries", "-1"], "--max-record-retries -1 must be >= 0"),
    (["--on-demand-rps", "0"], "--on-demand-rps 0.0 must be > 0"),
    (["--on-demand-concurrency", "0"], "--on-demand-concurrency 0 must be >= 1"),
    (["--job-timeout-hours", "3"], "24 to 168"),
    (["--run-id", "Bad_Id"], "--run-id 'Bad_Id'"),
    (["--max-records-per-file", "0"], "--max-records-per-file must be >= 1"),
    (["--prompt-template", "/nonexistent/prompt.txt"],
     "--prompt-template /nonexistent/prompt.txt cannot be read"),
    (["--system-prompt-file", "/nonexistent/system.txt"],
     "--system-prompt-file /nonexistent/system.txt cannot be read"),
    (["--model-id", "acme.model-v1"], "--model-id: model id 'acme.model-v1'"),
    (["--redactor", "no_such_module:redact"], "--redactor 'no_such_module:redact' cannot be loaded"),
    (["--vpc-subnet-ids", "subnet-1"], "--vpc-subnet-ids and --vpc-security-group-ids go together"),
    (["--streaming", "--window-seconds", "5", "--watch-seconds", "1", "--max-cost-usd", "5"],
     "--max-cost-usd needs a bounded --input"),
    (["--max-cost-usd", "0.0000001"], "exceeds --max-cost-usd 1e-07"),
    (["--sink", "kafka"], "--sink kafka needs --kafka-bootstrap-servers"),
    (["--sink", "kafka", "--kafka-bootstrap-servers", "localhost:1",
      "--kafka-summaries-topic", "s", "--kafka-failures-topic", "f",
      "--kafka-delivery-timeout-seconds", "0"], "--kafka-delivery-timeout-seconds 0 is out of range"),
    (["--status", "Completed"], "run does not use --status"),
    # A flag of another sink or source mode did nothing, silently.
    (["--watch-seconds", "5"], "--watch-seconds does nothing without --streaming or --kafka-topic"),
    (["--watch_interval_seconds", "5"],
     "--watch-interval-seconds does nothing without --streaming over a watched --input"),
    (["--allowed-lateness-seconds", "60"], "--allowed-lateness-seconds does nothing without "
                                           "--window-seconds, --streaming or --kafka-topic"),
    (["--kafka-format", "avro", "--kafka-summaries-topic", "s"],
     "--kafka-summaries-topic, --kafka-format do nothing without --sink kafka"),
    (["--bigquery-summaries-table", "p:d.t"],
     "--bigquery-summaries-table does nothing without --sink bigquery"),
    (["--kafka-bootstrap-servers", "localhost:1"],
     "--kafka-bootstrap-servers does nothing without --kafka-topic or --sink kafka"),
    (["--sink", "kafka", "--kafka-bootstrap-servers", "localhost:1", "--kafka-summaries-topic",
      "s", "--kafka-failures-topic", "f", "--overwrite"],
     "--overwrite does nothing without a file --sink"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_a_bad_flag_is_refused_before_the_output_is_claimed(flags, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--input", str(_input(tmp_path)), "--output", str(out), *RUNS,
                 *flags]) == 2
    assert message in _error_line(capsys)
    assert _unclaimed(out)


def test_the_corrected_flag_then_runs(tmp_path, capsys):
    """The issue's case: the rerun without the bad flag used to be refused, the folder being
    claimed by the refused run."""
    out = tmp_path / "out"
    argv = ["run", "--input", str(_input(tmp_path)), "--output", str(out), *RUNS]
    assert main([*argv, "--window-seconds", "-10"]) == 2
    capsys.readouterr()
    assert main(argv) == 0
    assert len(read_rows(out / "summaries")) == 3


def test_a_flag_error_while_the_pipeline_is_built_leaves_another_runs_folder_alone(
        tmp_path, capsys):
    """A finished run's folder keeps its rows and markers when a later command is refused."""
    out = tmp_path / "out"
    argv = ["run", "--input", str(_input(tmp_path)), "--output", str(out), *RUNS]
    assert main([*argv, "--run-id", "first"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*argv, "--run-id", "second", "--overwrite", "--max-text-chars", "0"]) == 2
    capsys.readouterr()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("flags, unused", [
    (["--max-cost-usd", "5", "--sink", "kafka"], "--sink"),
    (["--output", "out"], "--output"),
    (["--run-id", "Bad_Id"], "--run-id"),
    (["--window-seconds", "60"], "--window-seconds"),
    (["--redact"], "--redact"),
    (["--backend", "aws"], "--backend"),
    (["--on_demand_rps", "3"], "--on_demand_rps"),
    (["--output=out", "--overwrite"], "--output, --overwrite"),
])
def test_plan_refuses_flags_it_does_not_use(flags, unused, tmp_path, capsys):
    assert main(["plan", "--input", str(_input(tmp_path)), *flags]) == 2
    assert f"error: plan does not use {unused}: drop" in _error_line(capsys)


def test_plan_applies_max_cost_usd(tmp_path, capsys):
    argv = ["plan", "--input", str(_input(tmp_path)), "--min-records-per-job", "1"]
    assert main([*argv, "--max-cost-usd", "100"]) == 0
    estimate = json.loads(capsys.readouterr().out)["estimate"]["max_cost_usd"]
    assert 0 < estimate < 100
    assert main([*argv, "--max-cost-usd", "0.0000001"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["estimate"]["max_cost_usd"] == estimate  # the plan, first
    [line] = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert f"estimated cost ${estimate:.4f} for 3 records" in line
    assert "exceeds --max-cost-usd 1e-07" in line


@pytest.mark.parametrize("flags, message", [
    (["--model-id", "acme.model-v1"], "--model-id: model id 'acme.model-v1'"),
    (["--max-tokens", "0"], "--max-tokens must be >= 1"),
    (["--temperature", "-1"], "--temperature must be between 0 and 1"),
    (["--input-format", "xml"], "--input-format 'xml' is not supported"),
    (["--max-text-chars", "0"], "--max-text-chars must be positive"),
    (["--id-field", ""], "--id-field must be a non-empty field name"),
    (["--prompt-template", "/nonexistent/p.txt"], "--prompt-template /nonexistent/p.txt cannot"),
])
def test_plan_checks_the_flags_it_uses(flags, message, tmp_path, capsys):
    assert main(["plan", "--input", str(_input(tmp_path)), *flags]) == 2
    assert message in _error_line(capsys)


@pytest.mark.parametrize("argv, message", [
    (["jobs", "--status", "Bogus"], "argument --status: invalid choice: 'Bogus'"),
    (["jobs", "--output", "x"], "jobs does not use --output"),
    (["collect", "--job-output", "j", "--output", "o", "--window-seconds", "5"],
     "collect does not use --window-seconds"),
    (["collect", "--job-output", "j", "--output", "o", "--sink", "kafka"],
     "collect writes files: --sink kafka is for `run`"),
    (["run", "--input", "x", "--output", "o", "--job-output", "j"], "run does not use --job-output"),
])
def test_other_commands_refuse_what_they_cannot_use(argv, message, capsys):
    assert main(argv) == 2
    assert message in _error_line(capsys)


def test_every_command_uses_the_flags_its_help_lists():
    """The flags a command accepts are the ones its --help shows (both spellings)."""
    for command in COMMAND_THEMES:
        flags = command_flags(command)
        assert "--debug" in flags
        for flag in [f for f in flags if f.startswith("--") and "-" in f[2:]]:
            assert flag.replace("-", "_").replace("__", "--", 1) in flags, (command, flag)
    assert "--max-cost-usd" in command_flags("plan") and "--sink" not in command_flags("plan")
    assert "--status" in command_flags("jobs") and "--status" not in command_flags("run")


def test_a_kafka_topic_that_does_not_exist_is_refused_before_the_claim(kafka_bootstrap,
                                                                       tmp_path, capsys):
    """Before, the source found the topic missing once the pipeline ran: exit 1, with --output
    claimed."""
    out = tmp_path / "out"
    assert main(["run", "--streaming", "--kafka-bootstrap-servers", kafka_bootstrap,
                 "--kafka-topic", "no-such-calls", "--output", str(out), "--window-seconds", "60",
                 "--watch-seconds", "5", *RUNS]) == 2
    assert (f"error: --kafka-topic no-such-calls does not exist on {kafka_bootstrap}: create it, "
            f"or fix --kafka-topic") == _error_line(capsys)
    assert _unclaimed(out)
