"""Duration flags take seconds in a range they name: a huge, tiny, negative or non-numeric value is
a one-line usage error (exit 2) naming the flag and the range, before anything runs. Before,
`--streaming --window-seconds 99999999999` crashed deep in the run (exit 1, a traceback), and
other values past what Python's sleep or Beam's timestamps hold did the same."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.__main__ import main
from pipeline.exit_codes import UsageError
from pipeline.flags import MAX_SECONDS
from pipeline.options import parse_options

# flag -> (least value, whether it is excluded, whole seconds only)
FLAGS = {
    "--window-seconds": (1, False, True),
    "--allowed-lateness-seconds": (0, False, False),
    "--watch-seconds": (0, False, False),
    "--watch-interval-seconds": (0.1, False, False),
    "--poll-interval-seconds": (1, False, True),
    "--bigquery-unreachable-timeout-seconds": (0, True, False),
}
VALUES = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["99999999999", "1e300", "-1e300", "1e-300", "5e-324", "inf", "-inf", "nan",
                     "0", "-0", "0.1", "1", "1.5", str(MAX_SECONDS), str(MAX_SECONDS + 1), "x"]))


def _accepted(flag: str, value: str) -> float | None:
    """The value the flag should take from ``value``, or None when it should refuse it."""
    least, excluded, whole = FLAGS[flag]
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        return None
    if math.isnan(number) or number > MAX_SECONDS or number < least or (
            excluded and number == least):
        return None
    return number


@settings(max_examples=300, deadline=None)
@given(flag=st.sampled_from(sorted(FLAGS)), value=VALUES)
def test_a_duration_flag_takes_a_value_in_its_range_or_names_the_range(flag, value):
    expected = _accepted(flag, value)
    try:
        # --flag=VALUE: argparse reads a lone -1e300 as a flag of its own.
        _, opts = parse_options([f"{flag}={value}"])
    except UsageError as err:
        message = str(err)
        assert expected is None, f"{flag} {value} refused: {message}"
        assert flag in message and f"up to {MAX_SECONDS} (ten years)" in message
        assert "\n" not in message
        return
    assert getattr(opts, flag[2:].replace("-", "_")) == expected


def test_a_window_longer_than_ten_years_is_a_usage_error_naming_the_range(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "hello"}\n')
    code = main(["run", "--streaming", "--window-seconds", "99999999999", "--watch-seconds", "1",
                 "--input", str(source), "--output", str(tmp_path / "out"), "--sink", "jsonl"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: argument --window-seconds/--window_seconds: '99999999999' is not whole seconds "
        f"from 1 up to {MAX_SECONDS} (ten years): use e.g. 86400 for daily windows"]
    assert not (tmp_path / "out").exists()
