"""The local Bedrock batch service: an HTTP server speaking the real `bedrock` rest-json protocol.

Unmodified `boto3.client("bedrock", endpoint_url=...)` works against it for CreateModelInvocationJob,
GetModelInvocationJob, ListModelInvocationJobs and StopModelInvocationJob. Requests are routed and
validated from botocore's service model (validation.py), jobs live in a JobStore and run on the
JobRunner's threads, reading and writing the S3 endpoint the service is given. Every request must
be SigV4-signed with the service's credentials, as AWS requires (sigv4.py).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.model import OperationModel

from transforms.core.quotas import Quotas

from pipeline.local.background import BackgroundServer
from pipeline.local.faults import THROTTLE_MESSAGE, FaultPlan, Faults
from pipeline.local.jobs_store import JobStore, Timing
from pipeline.local.responses import family_of
from pipeline.local.runner import JobRunner, model_name
from pipeline.local.runtime import handle_runtime, is_runtime_path
from pipeline.local.sigv4 import AuthError, LocalCredentials, SignedRequest, verify
from pipeline.local.validation import ApiError, match_route, parse_request

log = logging.getLogger(__name__)

# Bedrock's signing name, for the control plane and bedrock-runtime alike.
SIGNING_NAME = "bedrock"
MAX_SKEW = dt.timedelta(minutes=5)  # AWS's SigV4 clock-skew window
# InvokeModel's request body may be up to 25,000,000 bytes (botocore's bedrock-runtime model);
# Converse shares the limit here. The control plane has no documented limit: 1 MiB is far above
# its largest valid request (CreateModelInvocationJob with every field at its maximum length).
MAX_RUNTIME_BODY_BYTES = 25_000_000
MAX_CONTROL_BODY_BYTES = 1024 * 1024
# A client that stops sending mid-request is dropped after this long instead of holding a thread.
IDLE_TIMEOUT_SECONDS = 60

# AuthError reason -> (the error type AWS answers with, the message, or None for the AuthError's).
_AUTH_ERRORS = {
    "missing": ("MissingAuthenticationTokenException", "Missing Authentication Token"),
    "malformed": ("IncompleteSignatureException", None),
    "unknown_key": ("UnrecognizedClientException", None),
    "token": ("UnrecognizedClientException", None),
    "unsupported_payload": ("IncompleteSignatureException", None),
}


class BedrockBatchService(BackgroundServer):
    """The batch-inference control plane on a localhost port, backed by an S3 endpoint."""

    name = "Bedrock batch service"

    def __init__(self, s3_endpoint_url: str, quotas: Quotas, faults: Faults | None = None,
                 timing: Timing | None = None, region: str = "us-east-1", host: str = "127.0.0.1",
                 port: int = 0, log_requests: bool = False,
                 credentials: LocalCredentials | None = None) -> None:
        """``credentials`` are the only ones the service accepts, and the ones it uses on
        ``s3_endpoint_url`` (a LocalS3's); a fresh random pair when not given."""
        super().__init__()
        self.region = region
        self.credentials = credentials or LocalCredentials.generate()
        self.faults = FaultPlan(faults or Faults())
        self.store = JobStore(quotas, region=region, timing=timing, seed=self.faults.faults.seed)
        s3 = boto3.client("s3", endpoint_url=s3_endpoint_url, region_name=region,
                          **self.credentials.boto3_kwargs(),
                          config=Config(retries={"mode": "standard", "max_attempts": 5}))
        self.runner = JobRunner(self.store, s3, self.faults)
        self._address = (host, port)
        self._log_requests = log_requests

    def _make_server(self) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(self._address, _handler_for(self))
        server.daemon_threads = True
        return server

    def _after_stop(self) -> None:
        self.runner.shutdown()

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
            if self.faults.lose_create_answer():
                raise ApiError("InternalServerException", "The system encountered an unexpected "
                               "error during processing. Try your request again.")
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
            parts = urlsplit(raw_path)
            self._authenticate(SignedRequest(method, parts.path, parts.query, headers, body))
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

    def _authenticate(self, request: SignedRequest) -> None:
        try:
            verify(request, self.credentials, self.region, SIGNING_NAME,
                   dt.datetime.now(dt.timezone.utc), MAX_SKEW)
        except AuthError as e:
            code, message = _AUTH_ERRORS.get(e.reason, ("InvalidSignatureException", None))
            raise ApiError(code, message or e.message, status=403) from None

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
        timeout = IDLE_TIMEOUT_SECONDS

        def _serve(self) -> None:
            try:
                length = _content_length(self.headers, _body_limit(self.path))
            except ApiError as e:
                # The body's end is unknown, so the connection cannot be reused.
                self.close_connection = True
                self._send(e.status, {"Content-Type": "application/json", "Connection": "close",
                                      "x-amzn-ErrorType": e.code},
                           json.dumps({"message": e.message}).encode())
                return
            body = self.rfile.read(length) if length else b""
            self._send(*service.handle(self.command, self.path, self.headers, body))

        def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
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


def _body_limit(raw_path: str) -> int:
    return MAX_RUNTIME_BODY_BYTES if is_runtime_path(urlsplit(raw_path).path) else MAX_CONTROL_BODY_BYTES


def _content_length(headers: Any, limit: int) -> int:
    """The declared body length; ApiError (400/411/413) when it is unusable or over ``limit``."""
    if headers.get("Transfer-Encoding"):
        raise ApiError("ValidationException", "Transfer-Encoding is not supported: send the body "
                                              "with a Content-Length", status=411)
    text = (headers.get("Content-Length") or "0").strip()
    if not re.fullmatch(r"\d+", text):
        raise ApiError("ValidationException",
                       f"Content-Length {text!r} is not a whole number of bytes", status=400)
    if int(text) > limit:
        raise ApiError("ValidationException", f"Request body of {int(text)} bytes exceeds this "
                                              f"operation's limit of {limit} bytes", status=413)
    return int(text)
