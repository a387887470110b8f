"""python -m pipeline run | plan | collect | jobs | serve-local | report

Every flag is a Beam PipelineOption (pipeline/options.py); Beam's own flags (--runner,
--flink_master, ...) pass straight through, and an unknown flag is a usage error with a "did you
mean" suggestion. Errors print as one line; --debug shows the trace.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable


from pipeline import exit_codes
from pipeline.field_flags import cli_message
from pipeline.options import BedrockBatchOptions
from transforms.errors import ConfigError

COMMANDS = {
    "run": "Summarize transcripts with Bedrock batch jobs and write summaries + failures",
    "plan": "Print the shard/job plan (jobs, files, records, bytes, tokens, cost) without submitting",
    "collect": "Parse a finished batch job's output (any job, also from the console) into the sinks",
    "jobs": "List batch jobs with status and live record counts",
    "serve-local": "Run the embedded local Bedrock batch service + S3 standalone",
    "report": "Rebuild a run's report.html from the report.json in its output folder",
}


def _usage() -> str:
    lines = ["usage: python -m pipeline COMMAND [flags]   (COMMAND --help for its flags)", "",
             "commands:"]
    lines += [f"  {name:<12} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def _help(command: str) -> str:
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {command}",
                                     description=COMMANDS[command] + ". Beam pipeline flags "
                                     "(--runner, --flink_master, --streaming, ...) are accepted too.")
    BedrockBatchOptions._add_argparse_args(parser)
    return parser.format_help()


def _handlers() -> dict[str, Callable[[list[str]], int]]:
    from pipeline import commands
    from pipeline.local.serve import main as serve_local
    return {"run": commands.run_command, "plan": commands.plan_command,
            "collect": commands.collect_command, "jobs": commands.jobs_command,
            "serve-local": serve_local, "report": commands.report_command}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n{_usage()}", file=sys.stderr)
        return 2
    # serve-local and report parse their own few flags (and --help) themselves.
    if command not in ("serve-local", "report") and ("-h" in rest or "--help" in rest):
        print(_help(command))
        return 0
    debug = "--debug" in rest
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    for noisy in ("botocore", "urllib3", "apache_beam", "werkzeug", "moto", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _handlers()[command](rest)
    except exit_codes.UsageError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except ConfigError as exc:  # a library setting, refused while the pipeline was built
        if debug:
            raise
        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return exit_codes.USAGE
    except Exception as exc:  # one clear line for users; the trace only when asked
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (add --debug for the stack trace)", file=sys.stderr)
        return exit_codes.INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
