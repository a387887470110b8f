"""A strict CLI: unknown flags are usage errors with a suggestion, Beam's own flags pass, and every
flag that a message, hint or the README names is a real flag."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from pipeline.__main__ import build_parser, main
from pipeline.options import known_flags
from pipeline.local.serve import build_parser as serve_local_parser

ROOT = Path(__file__).resolve().parent.parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")

# Flags of other programs that the code or README shows on purpose, with where they belong.
OTHER_PROGRAMS = {
    "--endpoint-url": "the AWS CLI, in serve-local's instructions",
    "--count": "the sample generator, python -m pipeline.samples.generate",
    "--seed": "the sample generator, python -m pipeline.samples.generate",
    "--rows": "the demo's table printer, python -m pipeline.samples.show",
    "--checkpointing_interval": "Flink's Java pipeline options, handed to the job server",
    "--shutdown_sources_after_idle_ms": "Flink's Java pipeline options, handed to the job server",
    "--finish_bundle_before_checkpointing": "Flink's Java pipeline options, handed to the job "
                                            "server",
    "--service_port": "Beam's worker_pool_main, in the README's Flink section",
    "--dash-form": "the README's and flags.py's description of flag spelling",
    "--underscore_form": "the README's and flags.py's description of flag spelling",
}


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err
    return line


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "Customer: hi. Agent: hello."}) + "\n")
    return path


@pytest.mark.parametrize("argv, suggestion", [
    (["--min-records-per-jobs", "1"], "did you mean --min-records-per-job?"),
    (["--max_records_per_jobs", "5"], "did you mean --max_records_per_job?"),
    (["--flink-master", "x"], "did you mean --flink_master?"),
    (["--outptu=out/"], "did you mean --output?"),
])
def test_a_typo_is_a_usage_error_with_a_suggestion(argv, suggestion, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--input", str(_input(tmp_path)), "--output", str(out), *argv]) == 2
    line = _error_line(capsys)
    assert f"unknown flag {argv[0].split('=')[0]}" in line and suggestion in line
    assert not out.exists()  # refused before anything ran


@pytest.mark.parametrize("argv", [
    ["calls.jsonl"],
    ["calls.jsonl", "--runner", "FlinkRunner"],
    # A pass-through flag written with "=" takes no value from the next token.
    ["--runner", "FlinkRunner", "--checkpointing_interval=5", "calls.jsonl"],
])
def test_a_stray_argument_is_a_usage_error(argv, capsys):
    assert main(["plan", *argv]) == 2
    assert "unexpected argument 'calls.jsonl'" in _error_line(capsys)


def test_a_java_option_passes_only_to_a_portable_runner(tmp_path, capsys):
    """The FlinkRunner hands flags Python does not know to its Java job server; the local runners
    (the FnApiRunner, Prism) have no such server, so there the same flag is a mistake."""
    argv = ["plan", "--input", str(_input(tmp_path)), "--min-records-per-job", "1",
            "--checkpointing_interval", "60000"]
    for local in ([], ["--runner", "PrismRunner"], ["--runner", "FnApiRunner"]):
        assert main([*argv, *local]) == 2
        assert "unknown flag --checkpointing_interval" in _error_line(capsys)
    assert main([*argv, "--runner", "FlinkRunner"]) == 0
    capsys.readouterr()
    # A near miss of this CLI's own flags is refused even there.
    assert main([*argv, "--runner", "FlinkRunner", "--max_records_per_jobs", "5"]) == 2
    assert "did you mean --max_records_per_job?" in _error_line(capsys)


@pytest.mark.parametrize("argv, message", [
    (["--sink", "csv"], "argument --sink: invalid choice: 'csv'"),
    (["--tags", "team=cx"], """argument --tags: 'team=cx' is not a JSON object; write e.g. '{"team":"cx"}'"""),
    (["--max-records-per-job", "many"],
     "argument --max-records-per-job/--max_records_per_job: invalid int value: 'many'"),
])
def test_a_bad_flag_value_is_one_line(argv, message, capsys):
    assert main(["plan", "--input", "x", *argv]) == 2
    assert message in _error_line(capsys)


def test_beam_flags_pass_through(tmp_path, capsys):
    """Flags of Beam's own option classes are accepted (plan builds no pipeline, so the runner
    settings are parsed but not used)."""
    assert main(["plan", "--input", str(_input(tmp_path)), "--runner", "FlinkRunner",
                 "--flink_master", "[local]", "--streaming", "--parallelism", "2",
                 "--environment_type", "LOOPBACK", "--job_endpoint", "localhost:8099",
                 "--s3_region_name", "eu-west-1",
                 "--min-records-per-job", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 1


def test_max_text_chars_turns_long_texts_into_failures(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "short", "text": "Customer: hi."}) + "\n"
                    + json.dumps({"id": "long", "text": "Customer: " + "words " * 50}) + "\n")
    assert main(["plan", "--input", str(path), "--max-text-chars", "100",
                 "--min-records-per-job", "1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["records"], plan["invalid_records"]) == (1, 1)


def _literal_strings(path: Path) -> list[str]:
    """Every string constant in a module, f-string pieces included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _mentioned_flags() -> dict[str, set[str]]:
    mentions: dict[str, set[str]] = {}
    sources = [p for folder in ("transforms", "pipeline") for p in (ROOT / folder).rglob("*.py")]
    for path in sources:
        for text in _literal_strings(path):
            for flag in FLAG.findall(text):
                mentions.setdefault(flag, set()).add(str(path.relative_to(ROOT)))
    for flag in FLAG.findall((ROOT / "README.md").read_text()):
        mentions.setdefault(flag, set()).add("README.md")
    return mentions


def _real_flags() -> set[str]:
    top_level = build_parser()[0]  # --version
    return (known_flags() | {f for a in serve_local_parser()._actions for f in a.option_strings}
            | {f for a in top_level._actions for f in a.option_strings})


def test_every_flag_that_messages_and_readme_name_exists():
    mentions = _mentioned_flags()
    assert "--max-text-chars" in mentions  # the hint of TextTooLong failures
    real = _real_flags()
    missing = {flag: sorted(where) for flag, where in mentions.items()
               if flag not in real and flag not in OTHER_PROGRAMS}
    assert not missing, f"flags named but not defined: {missing}"
