"""PII redaction: the pure patterns (hypothesis), the Beam stage, and the CLI's --redact end to end."""
from __future__ import annotations

import json
import pickle
import random
import uuid
from pathlib import Path

import apache_beam as beam
import boto3
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings, strategies as st

from pipeline.__main__ import main
from pipeline.exit_codes import UsageError
from pipeline.options import BedrockBatchOptions, resolve_redactor
from pipeline.local.backend import DEFAULT_BUCKET
from pipeline.local.s3 import LocalS3
from pipeline.running.outcome import Report, redaction_line
from tests.pipelines import read_rows
from transforms.core.model import Transcript, Turn
from transforms.prepare.redact import RedactTranscripts
from transforms.prepare.redaction import (CARD_NUMBERS, EMAILS, MASKS, PHONE_NUMBERS, SSNS,
                                          checked_counts, luhn_valid, redact_pii)

# ---- generators ------------------------------------------------------------------------------


def luhn_digit(body: str) -> str:
    """The check digit that makes body + digit pass the Luhn check."""
    return next(d for d in "0123456789" if luhn_valid(body + d))


@st.composite
def card_numbers(draw, valid: bool = True) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("3456")) + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=length - 2, max_size=length - 2)))
    check = luhn_digit(body)
    if not valid:
        check = draw(st.sampled_from([d for d in "0123456789" if d != check]))
    digits = body + check
    style = draw(st.sampled_from(["plain", "space4", "dash4", "single"]))
    if style == "plain":
        return digits
    if style == "single":  # how speech-to-text writes a number read out digit by digit
        return " ".join(digits)
    groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    return (" " if style == "space4" else "-").join(groups)


emails = st.builds(lambda user, host, tld: f"{user}@{host}.{tld}",
                   st.from_regex(r"[a-z][a-z0-9._+-]{0,10}[a-z0-9]", fullmatch=True),
                   st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True),
                   st.sampled_from(["com", "org", "co.uk", "io", "example"]))


@st.composite
def phone_numbers(draw) -> str:
    area = str(draw(st.integers(200, 999)))
    exchange = f"{draw(st.integers(0, 999)):03d}"
    line = f"{draw(st.integers(0, 9999)):04d}"
    return draw(st.sampled_from([
        f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"{area}.{exchange}.{line}",
        f"+1 {area} {exchange} {line}", f"1-{area}-{exchange}-{line}", f"{area}{exchange}{line}",
        f"+44 20 {exchange} {line}"]))


@st.composite
def ssns(draw) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    sep = draw(st.sampled_from(["-", " "]))
    return f"{area:03d}{sep}{draw(st.integers(1, 99)):02d}{sep}{draw(st.integers(1, 9999)):04d}"


words = st.lists(st.sampled_from(["the", "customer", "asked", "about", "refund", "agent", "said",
                                  "thanks", "order", "delivery", "is", "late", "my"]),
                 min_size=1, max_size=6).map(" ".join)

# ---- the pure patterns -------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(before=words, after=words, card=card_numbers(), email=emails, phone=phone_numbers(),
       ssn=ssns())
def test_planted_pii_is_masked_and_counted(before, after, card, email, phone, ssn) -> None:
    text = (f"{before} card {card}, email {email} and phone {phone}. My SSN is {ssn}. {after}")
    redacted, counts = redact_pii(text)
    for planted in (card, email, phone, ssn):
        assert planted not in redacted
    assert counts == {CARD_NUMBERS: 1, EMAILS: 1, PHONE_NUMBERS: 1, SSNS: 1}
    assert redacted == (f"{before} card {MASKS[CARD_NUMBERS]}, email {MASKS[EMAILS]} and phone "
                        f"{MASKS[PHONE_NUMBERS]}. My SSN is {MASKS[SSNS]}. {after}")


@settings(max_examples=50, deadline=None)
@given(before=words, after=words, card=card_numbers(valid=False))
def test_card_like_numbers_failing_luhn_are_kept(before, after, card) -> None:
    digits = card.replace(" ", "").replace("-", "")
    # A 13-19 digit number may hold a shorter Luhn-valid card number; only test clean misses.
    if any(luhn_valid(digits[i:j]) for i in range(len(digits))
           for j in range(i + 13, len(digits) + 1)):
        return
    text = f"{before} reference {card} {after}"
    assert redact_pii(text) == (text, {CARD_NUMBERS: 0, EMAILS: 0, PHONE_NUMBERS: 0, SSNS: 0})


@settings(max_examples=50, deadline=None)
@given(before=words, after=words, number=st.integers(0, 10**9 - 1),
       prefix=st.sampled_from(["order", "order #", "ticket", "case", "R", "invoice no. "]))
def test_order_numbers_are_not_pii(before, after, number, prefix) -> None:
    text = f"{before} {prefix}{number} {after} on 2024-01-15 at 10:30, total $1,299.99"
    assert redact_pii(text) == (text, {CARD_NUMBERS: 0, EMAILS: 0, PHONE_NUMBERS: 0, SSNS: 0})


def test_examples() -> None:
    assert redact_pii("order 12345 shipped")[0] == "order 12345 shipped"
    assert redact_pii("card 4111 1111 1111 1111 and 2 items")[0] == "card [CARD_NUMBER] and 2 items"
    assert redact_pii("4111 1111 1111 1112")[1][CARD_NUMBERS] == 0  # Luhn fails
    assert redact_pii("write to jo@example.com.")[0] == "write to [EMAIL]."
    assert redact_pii("SSN 666-12-3456 or 000-12-3456")[1][SSNS] == 0  # never issued
    assert redact_pii("call (212) 555-0199 now")[0] == "call [PHONE_NUMBER] now"


def test_checked_counts_names_kinds_for_counters_and_refuses_non_counts() -> None:
    assert checked_counts({"CREDIT_DEBIT_NUMBER": 2, "Name": 1, "name": 1}) == {
        "credit_debit_number": 2, "name": 2}
    for bad in ({"x": -1}, {"x": 1.5}, {"x": True}, {3: 1}):
        with pytest.raises(ValueError, match="counts"):
            checked_counts(bad)


# ---- the Beam stage ---------------------------------------------------------------------------

class NameRedactor:
    """A user's own redactor (stands in for one calling Amazon Comprehend): masks one name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, text: str) -> tuple[str, dict[str, int]]:
        if "explode" in text:
            raise RuntimeError("redaction service unavailable")
        return text.replace(self.name, "[NAME]"), {"NAME": text.count(self.name)}


def test_stage_redacts_text_and_turns_and_fails_loudly(tmp_path: Path) -> None:
    redactor = NameRedactor("Alice")
    pickle.loads(pickle.dumps(redactor))  # it travels to the workers
    items = [
        Transcript("t1", "Alice called. Alice was upset."),
        Transcript("t2", "Agent: hi\nCustomer: I am Alice",
                   turns=(Turn("Agent", "hi"), Turn("Customer", "I am Alice"))),
        Transcript("t3", "please explode", origin="calls.jsonl:3"),
    ]
    with beam.Pipeline() as p:
        out = p | beam.Create(items) | RedactTranscripts(redactor)
        assert_that(out["transcripts"] | beam.Map(lambda t: (t.id, t.text, [u.text for u in t.turns])),
                    equal_to([("t1", "[NAME] called. [NAME] was upset.", []),
                              ("t2", "Agent: hi\nCustomer: I am [NAME]", ["hi", "I am [NAME]"])]),
                    label="redacted")
        assert_that(out["failures"] | beam.Map(
            lambda f: (f.transcript_id, f.stage, f.error_code, f.error_message, f.raw, f.origin)),
            equal_to([("t3", "validate", "RedactionFailed",
                       "RuntimeError: redaction service unavailable", None, "calls.jsonl:3")]),
            label="failures")
    counters = {c.key.metric.name: c.committed
                for c in p.result.metrics().query()["counters"]}
    # t2's text and turns hold the same words: the name counts once
    assert counters["redacted_name"] == 3 and counters["redaction_transcripts"] == 2


def upper_redactor(text: str) -> tuple[str, dict[str, int]]:
    """A module-level redactor, as --redactor MODULE:FUNCTION names one."""
    return text.upper(), {}


def test_redactor_flags() -> None:
    def resolved(*argv: str):
        return resolve_redactor(PipelineOptions(list(argv)).view_as(BedrockBatchOptions))

    assert resolved() is None
    assert resolved("--redact") is redact_pii
    assert resolved("--redactor", "tests.test_redaction:upper_redactor") is upper_redactor
    for bad in ("tests.test_redaction:missing", "no_such_module:f", "tests.test_redaction",
                "tests.test_redaction:MASKS"):
        with pytest.raises(UsageError, match="--redactor"):
            resolved("--redactor", bad)


def test_report_line_only_when_redaction_ran() -> None:
    assert redaction_line({"summaries_written": 3}) is None
    line = redaction_line({"redaction_transcripts": 3, "redacted_card_numbers": 2,
                           "redacted_ssns": 1, "redacted_emails": 0})
    assert line == ("redacted        2 card numbers, 0 emails, 1 SSNs in 3 transcripts "
                    "(best-effort)")
    report = Report("r", {"redaction_transcripts": 2, "summaries_written": 2})
    assert "redacted        nothing in 2 transcripts (best-effort)" in report.lines("m")
    assert not any(line.startswith("redacted") for line in Report("r", {}).lines("m"))


# ---- end to end through the CLI ----------------------------------------------------------------

def test_cli_redact_keeps_planted_pii_out_of_everything_sent(tmp_path: Path, capsys) -> None:
    """The shards on (local) S3 that the batch service reads, the model's answers and the summaries
    hold none of the planted PII."""
    rng = random.Random(7)
    planted: list[str] = []
    lines = []
    for i in range(12):
        card = "4" + "".join(rng.choice("0123456789") for _ in range(14))
        card = " ".join((card + luhn_digit(card))[k:k + 4] for k in range(0, 16, 4))
        email, phone, ssn = f"caller{i}@example.com", f"(415) 555-{1000 + i}", f"123-45-{6000 + i}"
        planted += [card, email, phone, ssn]
        text = (f"Customer: Hi, my card number is {card} and it was charged twice. "
                f"Agent: I can help. Is your email {email}? Customer: Yes, and call me on {phone}. "
                f"Agent: For verification, your SSN is {ssn}? Customer: Correct, order {1000 + i}.")
        lines.append(json.dumps({"id": f"call-{i}", "text": text}))
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(lines) + "\n")
    run_id = f"redact-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out"
    assert main(["run", "--input", str(path), "--output", str(out), "--sink", "jsonl",
                 "--run-id", run_id, "--min-records-per-job", "1", "--local-speed", "1000",
                 "--redact"]) == 0
    report = capsys.readouterr().out
    assert ("redacted        12 card numbers, 12 emails, 12 phone numbers, 12 SSNs in 12 "
            "transcripts") in report

    # moto's state outlives the run's servers in this process: look at what the service read.
    with LocalS3() as s3:
        client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                              **s3.credentials.boto3_kwargs())
        keys = [o["Key"] for o in client.list_objects_v2(
            Bucket=DEFAULT_BUCKET, Prefix=f"runs/{run_id}/")["Contents"]]
        sent = {key: client.get_object(Bucket=DEFAULT_BUCKET, Key=key)["Body"].read().decode()
                for key in keys}
    shards = [text for key, text in sent.items() if "/input/" in key]
    outputs = [text for key, text in sent.items() if key.endswith(".jsonl.out")]
    assert shards and outputs
    assert sum(text.count(MASKS[CARD_NUMBERS]) for text in shards) == 12
    summaries = read_rows(out / "summaries")
    assert sorted(s["transcript_id"] for s in summaries) == sorted(f"call-{i}" for i in range(12))
    everything = "\n".join([*sent.values(), json.dumps(summaries)])
    leaked = [value for value in planted if value in everything]
    assert not leaked
    assert "order 1003" in "\n".join(shards)  # order numbers are left alone
