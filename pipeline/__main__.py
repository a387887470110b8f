"""python -m pipeline run | plan | collect | jobs | serve-local | report

Every flag (pipeline/flags.py) is a Beam PipelineOption (pipeline/options.py); Beam's own
flags (--runner, --flink_master, ...) pass straight through, and an unknown flag is a usage error
with a "did you mean" suggestion. Errors print as one line; --debug shows the trace. Ctrl-C or
SIGTERM prints one line too, what to do next (pipeline/cli/interrupts.py), and exits 130.

This module imports Beam only once the log and warning filters are set, so the lines those
filters drop (printed while Beam and the google packages load) never show.
"""
from __future__ import annotations

import argparse
import platform
import sys
import traceback
from typing import Callable

from pipeline import __version__
from pipeline import exit_codes
from pipeline.cli import interrupts
from pipeline.cli.field_flags import cli_message
from transforms.core.errors import ConfigError

COMMANDS = {
    "run": "Summarize transcripts with Bedrock batch jobs and write summaries + failures",
    "plan": "Print the shard/job plan (jobs, files, records, bytes, tokens, cost) without submitting",
    "collect": "Parse a finished batch job's output (any job, also from the console) into the sinks",
    "jobs": "List batch jobs with status and live record counts",
    "serve-local": "Run the embedded local Bedrock batch service + S3 standalone",
    "report": "Rebuild a run's report.html from the report.json in its output folder",
}
PROG = "python -m pipeline"


def version() -> str:
    """The package's version, with the Beam and Python it runs on."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        beam = installed("apache-beam")
    except PackageNotFoundError:  # a source checkout without the package installed
        beam = "not installed"
    return (f"bedrock-batch-beam {__version__} (apache-beam {beam}, "
            f"Python {platform.python_version()})")


class _HelpFormatter(argparse.HelpFormatter):
    """Lists each flag once, in its --dash-form; the description says the underscore_form works."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [s for s in action.option_strings
                 if "_" not in s or s.replace("_", "-") not in action.option_strings]
        if not shown or action.nargs == 0:
            return ", ".join(shown)
        return f"{', '.join(shown)} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The CLI's parser with one subparser per command, for --help and --version.

    A command's flags are parsed by Beam's PipelineOptions (pipeline.options.parse_options), so
    each subparser only documents them, grouped by theme.
    """
    from pipeline.flags import COMMAND_THEMES, add_command_flags

    parser = argparse.ArgumentParser(
        prog=PROG, description="Amazon Bedrock batch inference for call-center transcripts, on "
                               "Apache Beam. `COMMAND --help` lists a command's flags.")
    parser.add_argument("--version", action="version", version=version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    subparsers = {}
    for name, text in COMMANDS.items():
        sub = commands.add_parser(
            name, help=text, add_help=False, prog=f"{PROG} {name}", usage="%(prog)s [flags]",
            formatter_class=_HelpFormatter,
            description=f"{text}. Each flag can also be written in underscore_form "
                        f"(--max_records_per_job) and is a Beam PipelineOption.")
        if name in COMMAND_THEMES:
            sub.add_argument("-h", "--help", action="help", help="Show this help and exit")
            add_command_flags(sub, name)
        subparsers[name] = sub
    return parser, subparsers


def _handler(command: str) -> Callable[[list[str]], int]:
    """The function running ``command``, imported only when run (serve-local imports moto)."""
    if command == "serve-local":
        from pipeline.local.serve import main as serve_local
        return serve_local
    from pipeline.cli import commands
    return {"run": commands.run_command, "plan": commands.plan_command,
            "collect": commands.collect_command, "jobs": commands.jobs_command,
            "report": commands.report_command}[command]


def _argparse_exit(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """What argparse does for --help / --version (print, then exit): its exit code."""
    try:
        parser.parse_args(argv)
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code is one of pipeline.exit_codes.

    Args:
        argv: the arguments after the program name (default: sys.argv[1:]).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with interrupts.handled(argv[0] if argv else "", argv[1:]):
        try:
            return _dispatch(argv)
        except KeyboardInterrupt:
            return _interrupted("--debug" in argv)


def _dispatch(argv: list[str]) -> int:
    from pipeline.cli import console

    level = console.verbosity(argv)
    # serve-local prints its endpoints and logs each request: INFO lines are its output.
    console.configure_logging(max(level, 1) if argv[:1] == ["serve-local"] else level)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser, _ = build_parser()
        if not argv:
            parser.print_usage(sys.stderr)
            print(f"{PROG}: error: name a command; --help lists them", file=sys.stderr)
            return exit_codes.USAGE
        return _argparse_exit(parser, argv)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; the commands are {', '.join(COMMANDS)} "
              f"(see {PROG} --help)", file=sys.stderr)
        return exit_codes.USAGE
    # serve-local and report parse their own few flags (and --help) themselves.
    if command not in ("serve-local", "report") and ("-h" in rest or "--help" in rest):
        _, subparsers = build_parser()
        subparsers[command].print_help()
        return exit_codes.OK
    debug = "--debug" in rest
    try:  # an exception becomes one line and its exit code; the trace only with --debug
        return _handler(command)(rest)
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
        if interrupts.received():  # a library turned the KeyboardInterrupt into its own error
            return _interrupted(debug)
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (add --debug for the stack trace)", file=sys.stderr)
        return exit_codes.INTERNAL_ERROR


def _interrupted(debug: bool) -> int:
    """Ctrl-C or SIGTERM: the one line of pipeline.cli.interrupts, the trace only with --debug."""
    if debug:
        traceback.print_exc()
    interrupts.report()
    return exit_codes.INTERRUPTED


def cli() -> int:
    """The console entry point: ``main()``, and an interrupted command ends its process as soon
    as its own cleanup ran (see ``interrupts.exit_now``)."""
    code = main()
    if code == exit_codes.INTERRUPTED and interrupts.received():
        interrupts.exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(cli())
