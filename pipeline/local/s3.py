"""Local S3: moto's S3 on a free localhost port behind a SigV4 check, started and stopped by code."""
from __future__ import annotations

import datetime as dt
import io
import logging
import re
import uuid
from typing import Any, Callable, Iterable
from xml.sax.saxutils import escape

from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                           create_backend_app)
from werkzeug.datastructures import EnvironHeaders
from werkzeug.serving import BaseWSGIServer, make_server

from pipeline.local.background import BackgroundServer
from pipeline.local.faults import FaultPlan, Faults
from pipeline.local.sigv4 import AuthError, LocalCredentials, SignedRequest, verify

log = logging.getLogger(__name__)

# S3's documented limit for one PUT; larger objects need a multipart upload.
MAX_BODY_BYTES = 5 * 1024**3
# S3 refuses requests whose clock is more than 15 minutes off.
MAX_SKEW = dt.timedelta(minutes=15)
# A client that stops sending mid-request is dropped after this long instead of holding a thread.
IDLE_TIMEOUT_SECONDS = 60

# (HTTP status, S3 error code, message or None to use the AuthError's message).
_S3_AUTH_ERRORS = {
    "missing": (403, "AccessDenied", "Access Denied"),
    "malformed": (400, "AuthorizationHeaderMalformed", None),
    "unknown_key": (403, "InvalidAccessKeyId",
                    "The AWS Access Key Id you provided does not exist in our records."),
    "token": (400, "InvalidToken", "The provided token is malformed or otherwise invalid."),
    "scope": (400, "AuthorizationHeaderMalformed", None),
    "region": (400, "AuthorizationHeaderMalformed", None),
    "skew": (403, "RequestTimeTooSkewed",
             "The difference between the request time and the current time is too large."),
    "expired": (403, "AccessDenied", None),
    "signature": (403, "SignatureDoesNotMatch",
                  "The request signature we calculated does not match the signature you "
                  "provided. Check your key and signing method."),
    "payload_mismatch": (400, "XAmzContentSHA256Mismatch", None),
    "unsupported_payload": (501, "NotImplemented", None),
}


def _error(start_response: Callable, status: int, code: str, message: str,
           extra: str = "") -> Iterable[bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message>{extra}"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>").encode()
    reason = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error",
              501: "Not Implemented", 503: "Service Unavailable"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "application/xml"),
                                          ("Content-Length", str(len(body)))])
    return [body]


class SigV4Guard:
    """WSGI middleware: only requests signed with the local credentials reach moto.

    It also reads the body itself, so a bad or oversized Content-Length is answered with a 400
    before moto (or a stalled client) can hold the request. With ``faults``, a share of the
    signed requests gets a 500 or 503 instead, before moto sees them (so a retry is safe).
    """

    def __init__(self, app: Callable, credentials: LocalCredentials, region: str,
                 faults: FaultPlan | None = None) -> None:
        self._app = app
        self._credentials = credentials
        self._region = region
        self._faults = faults

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        length_text = environ.get("CONTENT_LENGTH") or ""
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        if length_text and not re.fullmatch(r"\d+", length_text):
            return _error(start_response, 400, "InvalidArgument",
                          f"Content-Length {length_text!r} is not a whole number of bytes")
        length = int(length_text or 0)
        if length > MAX_BODY_BYTES:
            return _error(start_response, 400, "EntityTooLarge",
                          f"Your proposed upload of {length} bytes exceeds the maximum allowed "
                          f"object size of {MAX_BODY_BYTES} bytes for one PUT")
        stream = environ["wsgi.input"]
        try:
            if chunked:  # werkzeug has de-chunked it; one byte past the limit shows excess
                body = stream.read(MAX_BODY_BYTES + 1)
                if len(body) > MAX_BODY_BYTES:
                    return _error(start_response, 400, "EntityTooLarge",
                                  f"Your upload exceeds the maximum allowed object size of "
                                  f"{MAX_BODY_BYTES} bytes for one PUT")
            else:
                body = stream.read(length) if length else b""
        except TimeoutError:  # the client stopped sending before the end of its body
            return _error(start_response, 400, "RequestTimeout",
                          "Your socket connection to the server was not read from or written to "
                          "within the timeout period.")
        raw_path, _, raw_query = environ.get("RAW_URI", environ.get("PATH_INFO", "/")).partition("?")
        request = SignedRequest(environ["REQUEST_METHOD"], raw_path, raw_query,
                                EnvironHeaders(environ), body)
        try:
            verify(request, self._credentials, self._region, "s3",
                   dt.datetime.now(dt.timezone.utc), MAX_SKEW, s3=True)
        except AuthError as e:
            status, code, message = _S3_AUTH_ERRORS[e.reason]
            extra = ""
            if e.reason == "region":  # botocore reads <Region> and re-signs for that region
                message, extra = (f"The authorization header is malformed; {e.message}",
                                  f"<Region>{escape(e.detail)}</Region>")
            return _error(start_response, status, code, message or e.message, extra)
        injected = (self._faults.s3_error(environ["REQUEST_METHOD"], raw_path) if self._faults
                    else None)
        if injected is not None:
            return _error(start_response, *injected)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        return self._app(environ, start_response)


class LocalS3(BackgroundServer):
    """A real S3-compatible HTTP endpoint (moto) for boto3, the AWS CLI and Beam's S3 filesystem.

    Every request must be SigV4-signed with ``credentials`` for ``region`` (a fresh random
    pair when none is given). Moto keeps its data in process-wide state, so two LocalS3
    instances in one process see the same buckets; use distinct bucket names when that matters.
    ``faults`` injects S3 errors (its ``s3_error_rate`` and ``s3_denied_keys``).
    """

    name = "local S3"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                 credentials: LocalCredentials | None = None, region: str = "us-east-1",
                 faults: Faults | None = None) -> None:
        self.faults = (FaultPlan(faults) if faults and (faults.s3_error_rate > 0
                                                        or faults.s3_denied_keys) else None)
        super().__init__()
        self._host = host
        self._quiet = quiet
        self._port = port
        self.credentials = credentials or LocalCredentials.generate()
        self.region = region

    def _make_server(self) -> BaseWSGIServer:
        if self._quiet:
            # Moto serves through werkzeug, which logs every request at INFO on its own logger.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = SigV4Guard(DomainDispatcherApplication(create_backend_app), self.credentials,
                         self.region, self.faults)
        handler = type("Handler", (MotoRequestHandler,), {"timeout": IDLE_TIMEOUT_SECONDS})
        return make_server(self._host, self._port, app, threaded=True, request_handler=handler)
