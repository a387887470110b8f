"""The pure SigV4 verifier, against requests signed by botocore's own signers (no server)."""
from __future__ import annotations

import datetime as dt
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from pipeline.local.sigv4 import AuthError, LocalCredentials, SignedRequest, verify

KEY = LocalCredentials("LOCALTESTKEY00000000", "local-secret")
NOW = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
SKEW = dt.timedelta(minutes=5)
URL = "http://127.0.0.1:5101/model-invocation-job/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ajob%2Fx/stop"


def sign(url: str = URL, method: str = "POST", body: bytes = b"{}", headers=None,
         signer=SigV4Auth, service: str = "bedrock", at: dt.datetime = NOW) -> SignedRequest:
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        signer(Credentials(KEY.access_key_id, KEY.secret_access_key), service, "us-east-1").add_auth(request)
    parts = urlsplit(request.url)
    received = HTTPHeaders()
    for name, value in request.headers.items():
        received[name] = value
    received["Host"] = parts.netloc
    return SignedRequest(method, parts.path, parts.query, received, body)


def check(request: SignedRequest, s3: bool = False, now: dt.datetime = NOW) -> None:
    verify(request, KEY, "us-east-1", "s3" if s3 else "bedrock", now, SKEW, s3=s3)


def reason(request: SignedRequest, match: str | None = None, **kwargs) -> str:
    with pytest.raises(AuthError, match=match) as info:
        check(request, **kwargs)
    return info.value.reason


def test_botocore_signatures_verify() -> None:
    check(sign())  # an encoded ARN in the path: signed double-encoded, as botocore does
    check(sign(URL.split("/model-")[0] + "/model-invocation-jobs?maxResults=5&nameContains=a%20b",
               method="GET", body=b""))
    check(sign("http://127.0.0.1:5100/bkt/dir/a%20b.txt?uploads", method="PUT", body=b"data",
               signer=S3SigV4Auth, service="s3"), s3=True)


def test_the_date_header_can_stand_in_for_x_amz_date() -> None:
    check(sign(headers={"Date": "Tue, 01 Dec 2026 12:00:00 GMT"}))


def test_clock_skew_window_both_ways() -> None:
    check(sign(at=NOW - dt.timedelta(minutes=4)))
    assert reason(sign(at=NOW - dt.timedelta(minutes=6))) == "skew"
    assert reason(sign(at=NOW + dt.timedelta(minutes=6))) == "skew"


def test_unsigned_amz_header_and_unsigned_host_are_malformed() -> None:
    request = sign()
    request.headers["X-Amz-Target"] = "added later"
    assert reason(request, match="not signed: x-amz-target") == "malformed"
    request = sign()
    auth = request.headers["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0]
    request.headers.replace_header("Authorization", auth.replace(
        signed, ";".join(h for h in signed.split(";") if h != "host")))
    assert reason(request, match="'Host' or ':authority' must be a 'SignedHeader'") == "malformed"


def test_s3_requires_and_checks_the_payload_hash() -> None:
    request = sign("http://127.0.0.1:5100/bkt/k", method="PUT", body=b"data", signer=S3SigV4Auth,
                   service="s3")
    assert reason(SignedRequest("PUT", request.raw_path, "", request.headers, b"evil"),
                  s3=True) == "payload_mismatch"
    del request.headers["X-Amz-Content-SHA256"]
    assert reason(request, s3=True) == "malformed"


def test_presigned_s3_urls_expire() -> None:
    request = AWSRequest(method="GET", url="http://127.0.0.1:5100/bkt/k")
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        S3SigV4QueryAuth(Credentials(KEY.access_key_id, KEY.secret_access_key), "s3", "us-east-1",
                         expires=60).add_auth(request)
    parts = urlsplit(request.url)
    headers = HTTPHeaders()
    headers["Host"] = parts.netloc
    presigned = SignedRequest("GET", parts.path, parts.query, headers, b"")
    check(presigned, s3=True, now=NOW + dt.timedelta(seconds=59))
    assert reason(presigned, s3=True, now=NOW + dt.timedelta(seconds=61)) == "expired"
    assert reason(SignedRequest("GET", "/bkt/other", parts.query, headers, b""),
                  s3=True) == "signature"
