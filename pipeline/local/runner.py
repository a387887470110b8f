"""Executes one local batch job: validate its S3 input, run the model per record, write the output.

Walks Submitted -> Validating -> Scheduled -> InProgress -> terminal on the job's own thread, with
progress visible through the JobStore while it runs. Input problems and quota violations fail the
job at Validating (as AWS does) instead of rejecting the create call.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import string
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from pipeline.local.faults import FaultPlan, JobFaults
from pipeline.local.jobs_store import STOPPED_MESSAGE, TERMINAL, Job, JobStore, utcnow
from pipeline.local.responses import InvalidModelInput, invoke
from transforms.core.model import loads_json

log = logging.getLogger(__name__)

# Real seconds of record processing time slept at once (see JobRunner._process).
SLEEP_STEP = 0.02


class InputProblem(Exception):
    """The job's input cannot be used; the message becomes the Failed job's message."""


@dataclass
class InputFile:
    uri: str
    name: str  # output file is <name>.out
    size: int
    lines: list[str] = field(default_factory=list)


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def model_name(model_id: str) -> str:
    """The foundation model / profile id inside a model ARN (the id itself otherwise)."""
    return model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id


def record_id_for(job_id: str, file_name: str, line_no: int) -> str:
    """An 11-character alphanumeric recordId for a record that has none (AWS assigns one too)."""
    digest = hashlib.sha256(f"{job_id}/{file_name}/{line_no}".encode()).digest()
    alphabet = string.ascii_uppercase + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in digest[:11])


class JobRunner:
    """Runs jobs of one service instance on background threads."""

    def __init__(self, store: JobStore, s3: Any, faults: FaultPlan) -> None:
        self.store = store
        self.s3 = s3
        self.faults = faults
        self._shutdown = threading.Event()
        self._running: list[tuple[threading.Thread, Job]] = []

    def start(self, job: Job) -> None:
        thread = threading.Thread(target=self._run_safely, args=(job,), daemon=True,
                                  name=f"bedrock-job-{job.job_id}")
        self._running.append((thread, job))
        thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """End the job threads without changing their jobs' status, and join them."""
        self._shutdown.set()
        for _, job in self._running:
            job.stop_requested.set()  # wakes the thread, which sees the shutdown and leaves
        for thread, _ in self._running:
            thread.join(timeout)

    def _run_safely(self, job: Job) -> None:
        try:
            self._run(job, self.faults.for_job(job.seq))
        except _Shutdown:
            pass  # the service is going away; the job stays where it was
        except Exception as e:  # a job must end in a status, never hang in an active one
            log.exception("local batch job %s crashed", job.job_id)
            if job.status not in TERMINAL:
                self.store.transition(job, "Failed", f"Internal error while running the job: {e}")

    def _wait(self, job: Job, seconds: float, slowdown: float, real: bool = False) -> bool:
        """Sleep a simulated duration (``real``: ``seconds`` are real ones already); True when
        the job was asked to stop meanwhile."""
        stop = job.stop_requested.wait(seconds * slowdown if real
                                       else self.store.timing.real(seconds * slowdown))
        if self._shutdown.is_set():
            raise _Shutdown
        return stop

    def _run(self, job: Job, jf: JobFaults) -> None:
        timing = self.store.timing
        if self._wait(job, timing.submitted, jf.slowdown):
            return self._stopped(job)
        if not self.store.transition(job, "Validating"):
            return
        if self._wait(job, timing.validating, jf.slowdown):
            return self._stopped(job)
        try:
            files = self._read_input(job)
            self._check_quotas(files)
        except InputProblem as e:
            return self._end(job, "Failed", str(e))
        if jf.fail:
            return self._end(job, "Failed", f"Amazon Bedrock could not read the input data in "
                             f"{self._input_uri(job)}: Access Denied. Check that the service role "
                             f"{job.params['roleArn']} allows s3:GetObject and s3:ListBucket on it.")
        self.store.set_total(job, sum(len(f.lines) for f in files))
        if not self.store.transition(job, "Scheduled"):
            return
        if self._wait(job, timing.scheduled, jf.slowdown):
            return self._stopped(job)
        if jf.expire or utcnow() >= job.expiration_time:
            hours = job.to_api()["timeoutDurationInHours"]
            return self._end(job, "Expired", f"The job was scheduled but did not begin before its "
                                             f"timeout of {hours} hours; submit it again")
        if self.store.transition(job, "InProgress"):
            self._process(job, jf, files)

    def _process(self, job: Job, jf: JobFaults, files: list[InputFile]) -> None:
        total = sum(len(f.lines) for f in files)
        cutoff = self.faults.unprocessed_from(total) if jf.partial else total
        stop_at = total // 2 if jf.stop else None  # as if someone stopped the job halfway
        outputs: dict[str, list[dict[str, Any]]] = {f.name: [] for f in files}
        tokens = [0, 0]
        index, stopped, timed_out = 0, False, False
        per_record = self.store.timing.real(self.store.timing.per_record * jf.slowdown)
        owed = 0.0  # simulated record time not slept yet
        for f, line_no, line in ((src, n, ln) for src in files for n, ln in enumerate(src.lines, 1)):
            if index >= cutoff:
                break
            if index == stop_at and not job.stop_requested.is_set():  # unless a user stopped it
                self.faults.count("stop")
                self.store.request_stop(job.arn)
            # Record time is slept once it adds up to SLEEP_STEP: a sleep per record of a fast
            # clock costs more than the record (the timer's resolution), and caps the rate.
            owed += per_record
            if owed >= SLEEP_STEP:
                stopped, owed = self._wait(job, owed, 1.0, real=True), 0.0
            else:
                stopped = job.stop_requested.is_set()
                if self._shutdown.is_set():
                    raise _Shutdown
            timed_out = utcnow() >= job.expiration_time
            if stopped or timed_out:
                break
            out, ok = self._answer(job, f, line_no, line, index, tokens)
            outputs[f.name].append(out)
            self.store.count_record(job, ok)
            index += 1
        # Stopped, expired and partial jobs still deliver what they processed, as on AWS.
        self._write_output(job, outputs, tokens, total, jf.damage)
        if stopped:
            return self._stopped(job)
        if index < total:
            why = (f"the job reached its timeout of {job.to_api()['timeoutDurationInHours']} hours"
                   if timed_out else "not every record could be processed in time")
            return self._end(job, "PartiallyCompleted",
                             f"Processed {index} of {total} records: {why}. Resubmit the records "
                             f"missing from the output in a new job.")
        self._end(job, "Completed")

    def _answer(self, job: Job, f: InputFile, line_no: int, line: str, index: int,
                tokens: list[int]) -> tuple[dict[str, Any], bool]:
        """The output line for one input line, and whether it carries a modelOutput."""
        try:
            record = loads_json(line)  # orjson, about half the cost of json.loads per record
        except ValueError as e:
            return self._error_line(record_id_for(job.job_id, f.name, line_no), line, 400,
                                    f"Malformed input record on line {line_no} of {f.uri}: not valid "
                                    f"JSON ({e})"), False
        if not isinstance(record, dict) or not isinstance(record.get("modelInput"), dict):
            model_input = record.get("modelInput") if isinstance(record, dict) else record
            rid = record.get("recordId") if isinstance(record, dict) else None
            return self._error_line(str(rid or record_id_for(job.job_id, f.name, line_no)), model_input,
                                    400, f"Malformed input record on line {line_no} of {f.uri}: "
                                    f"expected a JSON object with a 'modelInput' object"), False
        rid = str(record.get("recordId") or record_id_for(job.job_id, f.name, line_no))
        injected = self.faults.record_error(job.seq, index)
        if injected is not None:
            return {"recordId": rid, "modelInput": record["modelInput"], "error": injected}, False
        try:
            result = invoke(model_name(job.model_id), job.invocation_type, record["modelInput"])
        except InvalidModelInput as e:
            return self._error_line(rid, record["modelInput"], 400, str(e)), False
        tokens[0] += result.input_tokens
        tokens[1] += result.output_tokens
        return {"recordId": rid, "modelInput": record["modelInput"], "modelOutput": result.body}, True

    @staticmethod
    def _error_line(rid: str, model_input: Any, code: int, message: str) -> dict[str, Any]:
        return {"recordId": rid, "modelInput": model_input,
                "error": {"errorCode": code, "errorMessage": message}}

    # ---- S3 ------------------------------------------------------------------------------------

    @staticmethod
    def _input_uri(job: Job) -> str:
        return job.params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]

    def _read_input(self, job: Job) -> list[InputFile]:
        """The input .jsonl objects: the one the URI names, or every .jsonl under it as a prefix."""
        uri = self._input_uri(job)
        bucket, key = split_s3_uri(uri)
        try:
            if key.endswith(".jsonl"):
                keys = [(key, key.rsplit("/", 1)[-1])]
            else:
                prefix = key if not key or key.endswith("/") else key + "/"
                keys = [(k, k[len(prefix):]) for k in self._list_keys(bucket, prefix) if k.endswith(".jsonl")]
                if not keys:
                    raise InputProblem(f"No .jsonl input files found at {uri}; upload JSONL records "
                                       f"there or point s3InputDataConfig.s3Uri at a .jsonl object")
            files = []
            for k, name in keys:
                body = self.s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                text = body.decode("utf-8", errors="replace")
                files.append(InputFile(f"s3://{bucket}/{k}", name, len(body),
                                       [ln for ln in text.splitlines() if ln.strip()]))
            return files
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            raise InputProblem(f"The input S3 location {uri} could not be read ({code}): "
                               f"{'it does not exist' if code in ('NoSuchKey', 'NoSuchBucket', '404') else e}"
                               ) from None

    def _list_keys(self, bucket: str, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def _check_quotas(self, files: list[InputFile]) -> None:
        q = self.store.quotas
        for f in files:
            if len(f.lines) > q.max_records_per_file:
                raise InputProblem(f"Input file {f.uri} has {len(f.lines)} records, above the quota of "
                                   f"{q.max_records_per_file} records per input file "
                                   f"(max_records_per_file); split it into more files")
            if f.size > q.max_file_bytes:
                raise InputProblem(f"Input file {f.uri} is {f.size} bytes, above the quota of "
                                   f"{q.max_file_bytes} bytes per input file (max_file_bytes)")
        records, size = sum(len(f.lines) for f in files), sum(f.size for f in files)
        if records > q.max_records_per_job:
            raise InputProblem(f"The job has {records} records, above the quota of {q.max_records_per_job} "
                               f"records per batch inference job (max_records_per_job)")
        if records < q.min_records_per_job:
            raise InputProblem(f"The job has {records} records, below the quota minimum of "
                               f"{q.min_records_per_job} records per batch inference job "
                               f"(min_records_per_job); add records or merge jobs")
        if size > q.max_job_bytes:
            raise InputProblem(f"The job input is {size} bytes, above the quota of {q.max_job_bytes} "
                               f"bytes per batch inference job (max_job_bytes)")

    def _write_output(self, job: Job, outputs: dict[str, list[dict[str, Any]]], tokens: list[int],
                      total: int, damage: str | None = None) -> None:
        """<output>/<job id>/<file>.out per input file, in shuffled order, plus manifest.json.out.

        ``damage`` (a fault) spoils what is delivered: the last output file that has lines ends
        in a line cut in half ("torn_line") or is not written ("missing_file"), or the manifest
        counts one success that no output file holds ("manifest").
        """
        bucket, prefix = split_s3_uri(job.params["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
        base = f"{prefix.rstrip('/')}/{job.job_id}/" if prefix.strip("/") else f"{job.job_id}/"
        rng = random.Random(f"{self.faults.faults.seed}:shuffle:{job.seq}")
        damaged = max((name for name, lines in outputs.items() if lines), default=None)
        for name, lines in outputs.items():
            shuffled = list(lines)
            rng.shuffle(shuffled)  # AWS gives no order guarantee; consumers must join on recordId
            body = "".join(json.dumps(line) + "\n" for line in shuffled)
            if name == damaged and damage == "missing_file":
                self.faults.count(damage)
                log.info("fault: job %s writes no %s.out", job.job_id, name)
                continue
            if name == damaged and damage == "torn_line":
                self.faults.count(damage)
                last = json.dumps(shuffled[-1])
                body = body[: len(body) - len(last) - 1] + last[: len(last) // 2]
                log.info("fault: job %s tears the last line of %s.out", job.job_id, name)
            self.s3.put_object(Bucket=bucket, Key=f"{base}{name}.out", Body=body.encode())
        processed = sum(len(lines) for lines in outputs.values())
        success = sum(1 for lines in outputs.values() for line in lines if "modelOutput" in line)
        manifest = {"totalRecordCount": total, "processedRecordCount": processed,
                    "successRecordCount": success, "errorRecordCount": processed - success,
                    "inputTokenCount": tokens[0], "outputTokenCount": tokens[1]}
        if damage == "manifest":
            self.faults.count(damage)
            manifest["processedRecordCount"] += 1
            manifest["successRecordCount"] += 1
            log.info("fault: job %s counts one success too many in its manifest", job.job_id)
        self.s3.put_object(Bucket=bucket, Key=f"{base}manifest.json.out",
                           Body=json.dumps(manifest).encode())

    # ---- endings -------------------------------------------------------------------------------

    def _end(self, job: Job, status: str, message: str | None = None) -> None:
        self.store.transition(job, status, message)

    def _stopped(self, job: Job) -> None:
        self.store.transition(job, "Stopped", STOPPED_MESSAGE)


class _Shutdown(Exception):
    """Raised inside a job thread when its service stops."""
