"""The local Bedrock batch service: an HTTP server speaking the real `bedrock` rest-json protocol.

Unmodified `boto3.client("bedrock", endpoint_url=...)` works against it for CreateModelInvocationJob,
GetModelInvocationJob, ListModelInvocationJobs and StopModelInvocationJob. Requests are routed and
validated from botocore's service model (validation.py), jobs live in a JobStore and run on the
JobRunner's threads, reading and writing the S3 endpoint the service is given.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.model import OperationModel

from transforms.quotas import Quotas

from pipeline.local.faults import THROTTLE_MESSAGE, FaultPlan, Faults
from pipeline.local.jobs_store import JobStore, Timing
from pipeline.local.responses import family_of
from pipeline.local.runner import JobRunner, model_name
from pipeline.local.runtime import handle_runtime, is_runtime_path
from pipeline.local.validation import ApiError, match_route, parse_request

log = logging.getLogger(__name__)


class BedrockBatchService:
    """The batch-inference control plane on a localhost port, backed by an S3 endpoint."""

    def __init__(self, s3_endpoint_url: str, quotas: Quotas, faults: Faults | None = None,
                 timing: Timing | None = None, region: str = "us-east-1", host: str = "127.0.0.1",
                 port: int = 0, log_requests: bool = False) -> None:
        self.region = region
        self.faults = FaultPlan(faults or Faults())
        self.store = JobStore(quotas, region=region, timing=timing, seed=self.faults.faults.seed)
        s3 = boto3.client("s3", endpoint_url=s3_endpoint_url, region_name=region,
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"mode": "standard", "max_attempts": 5}))
        self.runner = JobRunner(self.store, s3, self.faults)
        self._address = (host, port)
        self._log_requests = log_requests
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Bedrock batch service is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "BedrockBatchService":
        if self._server is None:
            self._server = ThreadingHTTPServer(self._address, _handler_for(self))
            self._server.daemon_threads = True
            # A short poll interval makes stop() quick; idle polling costs next to nothing.
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                            daemon=True, name="bedrock-batch-service")
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self.runner.shutdown()

    def __enter__(self) -> "BedrockBatchService":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- operations: validated params in, response dict out ------------------------------------

    def create_model_invocation_job(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            family_of(model_name(params["modelId"]))
        except ValueError as e:
            raise ApiError("ValidationException", f"The provided model identifier is invalid: {e}") from None
        job, created = self.store.create(params)
        if created:
            log.info("created batch job %s (%s) for %s", job.job_id, job.name, job.model_id)
            self.runner.start(job)
        return {"jobArn": job.arn}

    def get_model_invocation_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.store.snapshot(self.store.get(params["jobIdentifier"]))

    def list_model_invocation_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        summaries, next_token = self.store.list_jobs(params)
        out: dict[str, Any] = {"invocationJobSummaries": summaries}
        if next_token:
            out["nextToken"] = next_token
        return out

    def stop_model_invocation_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self.store.request_stop(params["jobIdentifier"])
        return {}

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request to (status, headers, body), errors as rest-json error responses."""
        request_id = str(uuid.uuid4())
        try:
            if not headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
                raise ApiError("AccessDeniedException",
                               "Missing SigV4 Authorization header: sign requests with any credentials "
                               "(for example AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing)")
            parts = urlsplit(raw_path)
            runtime = is_runtime_path(parts.path)
            if not runtime:
                op, labels = match_route(method, parts.path)
            if self.faults.throttle():
                raise ApiError("ThrottlingException", THROTTLE_MESSAGE)
            if runtime:
                extra, payload = handle_runtime(method, parts.path, body)
                status = 200
            else:
                params = parse_request(op, labels, parse_qs(parts.query, keep_blank_values=True), body)
                status, payload = int(op.http.get("responseCode", 200)), self._operation(op)(params)
                extra = {}
        except ApiError as e:
            status, payload = e.status, {"message": e.message}
            extra = {"x-amzn-ErrorType": e.code}
        data = json.dumps(payload, default=_json_default).encode()
        return status, {"Content-Type": "application/json", "x-amzn-RequestId": request_id, **extra}, data

    def _operation(self, op: OperationModel) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return {
            "CreateModelInvocationJob": self.create_model_invocation_job,
            "GetModelInvocationJob": self.get_model_invocation_job,
            "ListModelInvocationJobs": self.list_model_invocation_jobs,
            "StopModelInvocationJob": self.stop_model_invocation_job,
        }[op.name]


def _json_default(value: Any) -> str:
    """Timestamps as ISO 8601 UTC with milliseconds, the rest-json form botocore parses."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _handler_for(service: BedrockBatchService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
        # Headers and body go out in separate writes; with Nagle on, each response would wait
        # for the client's delayed ACK (about 40 ms).
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, data = service.handle(self.command, self.path, self.headers, body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            if service._log_requests:
                log.info("%s %s", self.address_string(), format % args)

    return Handler
