"""The local backend keeps strangers out as AWS would: SigV4 on every endpoint, sane bodies, loopback.

Hostile requests go out as raw HTTP (http.client / socket); the good path is unmodified boto3.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import socket
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from pipeline.local.backend import LocalBackend, is_loopback
from pipeline.local.sigv4 import LocalCredentials
from tests.test_local_support import (  # noqa: F401  (fixtures)
    MODEL, REGION, SERVICE_ROLE_ARN, bucket, claude_input, local_s3, s3_client, service,
    signed_headers, unique)

CREATE_PATH = "/model-invocation-job"
INVOKE_PATH = f"/model/{MODEL}/invoke"


def create_body(bucket_name: str = "b") -> bytes:
    return json.dumps({
        "jobName": unique("stranger"), "roleArn": SERVICE_ROLE_ARN, "modelId": MODEL,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{bucket_name}/in/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{bucket_name}/out/"}},
    }).encode()


def raw(url: str, method: str, path: str, body: bytes = b"",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request exactly as given (only Host, and Content-Length for a body, are added)."""
    headers = dict(headers or {})
    if body and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def signed(url: str, creds: LocalCredentials, method: str, path: str, body: bytes = b"",
           service_name: str = "bedrock", **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", **extra}
    return signed_headers(creds, method, url + path, body, headers, service=service_name)


def error_type(headers: dict[str, str]) -> str:
    return headers.get("x-amzn-ErrorType", "")


# ---- Bedrock control plane and runtime ------------------------------------------------------

@pytest.mark.parametrize("path, body", [(CREATE_PATH, create_body()),
                                        (INVOKE_PATH, json.dumps(claude_input()).encode())])
def test_bare_algorithm_header_is_not_a_signature(service, path: str, body: bytes) -> None:
    status, headers, data = raw(service.endpoint_url, "POST", path, body,
                                {"Authorization": "AWS4-HMAC-SHA256", "Content-Length": str(len(body))})
    assert (status, error_type(headers)) == (403, "IncompleteSignatureException")
    assert "requires 'Credential' parameter" in json.loads(data)["message"]


def test_unsigned_request_is_missing_its_token(service) -> None:
    body = create_body()
    status, headers, data = raw(service.endpoint_url, "POST", CREATE_PATH, body,
                                {"Content-Length": str(len(body))})
    assert (status, error_type(headers)) == (403, "MissingAuthenticationTokenException")
    assert json.loads(data) == {"message": "Missing Authentication Token"}


@pytest.mark.parametrize("path", [CREATE_PATH, INVOKE_PATH])
def test_signature_by_another_secret_is_refused(service, path: str) -> None:
    body = create_body() if path == CREATE_PATH else json.dumps(claude_input()).encode()
    forged = LocalCredentials(service.credentials.access_key_id, "not-the-secret")
    status, headers, data = raw(service.endpoint_url, "POST", path, body,
                                signed(service.endpoint_url, forged, "POST", path, body))
    assert (status, error_type(headers)) == (403, "InvalidSignatureException")
    assert "signature we calculated does not match" in json.loads(data)["message"]


def test_unknown_key_and_foreign_session_token_are_unrecognized(service) -> None:
    stranger = LocalCredentials("AKIASTRANGER00000000", "whatever")
    status, headers, _ = raw(service.endpoint_url, "GET", "/model-invocation-jobs", b"",
                             signed(service.endpoint_url, stranger, "GET", "/model-invocation-jobs"))
    assert (status, error_type(headers)) == (403, "UnrecognizedClientException")
    with_token = signed(service.endpoint_url, service.credentials, "GET", "/model-invocation-jobs",
                        **{"X-Amz-Security-Token": "FwoGZXIvYXdzEXAMPLE"})
    status, headers, _ = raw(service.endpoint_url, "GET", "/model-invocation-jobs", b"", with_token)
    assert (status, error_type(headers)) == (403, "UnrecognizedClientException")


def test_tampered_body_or_path_breaks_the_signature(service) -> None:
    body = json.dumps(claude_input("short text")).encode()
    headers = signed(service.endpoint_url, service.credentials, "POST", INVOKE_PATH, body)
    other = json.dumps(claude_input("other text")).encode()
    status, got, _ = raw(service.endpoint_url, "POST", INVOKE_PATH, other,
                         {**headers, "Content-Length": str(len(other))})
    assert (status, error_type(got)) == (403, "InvalidSignatureException")
    status, got, _ = raw(service.endpoint_url, "POST", "/model/amazon.titan-text-express-v1/invoke",
                         body, headers)
    assert (status, error_type(got)) == (403, "InvalidSignatureException")
    status, _, _ = raw(service.endpoint_url, "POST", INVOKE_PATH, body, headers)
    assert status == 200  # the untampered request itself is fine


def test_signature_outside_the_clock_skew_window_has_expired(service) -> None:
    body = create_body()
    then = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=6)
    with mock.patch("botocore.auth.get_current_datetime", return_value=then.replace(tzinfo=None)):
        headers = signed(service.endpoint_url, service.credentials, "POST", CREATE_PATH, body)
    status, got, data = raw(service.endpoint_url, "POST", CREATE_PATH, body, headers)
    assert (status, error_type(got)) == (403, "InvalidSignatureException")
    assert json.loads(data)["message"].startswith("Signature expired: ")


def test_credential_scoped_to_another_region_or_service_is_refused(service) -> None:
    path = "/model-invocation-jobs"
    for kwargs in ({"region": "eu-west-1"}, {"service": "s3"}):
        headers = signed_headers(service.credentials, "GET", service.endpoint_url + path, **kwargs)
        status, got, data = raw(service.endpoint_url, "GET", path, b"", headers)
        assert (status, error_type(got)) == (403, "InvalidSignatureException")
        assert "Credential should be scoped" in json.loads(data)["message"]


def test_boto3_with_the_wrong_secret_gets_the_real_error(service) -> None:
    client = boto3.client("bedrock", endpoint_url=service.endpoint_url, region_name=REGION,
                          aws_access_key_id=service.credentials.access_key_id,
                          aws_secret_access_key="wrong", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as info:
        client.list_model_invocation_jobs()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_bad_content_length_is_a_400_and_the_server_lives_on(service, length: str) -> None:
    status, headers, data = raw(service.endpoint_url, "POST", CREATE_PATH, b"",
                                {"Content-Length": length, "Authorization": "AWS4-HMAC-SHA256"})
    assert status == 400 and "Content-Length" in json.loads(data)["message"]
    # the next request on a fresh connection is served normally
    assert raw(service.endpoint_url, "GET", "/model-invocation-jobs", b"",
               signed(service.endpoint_url, service.credentials, "GET",
                      "/model-invocation-jobs"))[0] == 200


@pytest.mark.parametrize("path, declared", [(CREATE_PATH, 1024 * 1024 + 1),
                                            (CREATE_PATH, 10 * 1024**3),
                                            (INVOKE_PATH, 25_000_001)])
def test_oversized_body_is_refused_before_it_is_read(service, path: str, declared: int) -> None:
    """The client declares a huge body and sends none: the answer comes at once, unread."""
    status, headers, data = raw(service.endpoint_url, "POST", path, b"",
                                {"Content-Length": str(declared)})
    assert status == 413 and error_type(headers) == "ValidationException"
    assert f"{declared} bytes exceeds" in json.loads(data)["message"]


def test_invoke_model_takes_bodies_larger_than_the_control_plane_limit(service) -> None:
    body = b"x" * (2 * 1024 * 1024)  # over the control plane's 1 MiB, under InvokeModel's 25 MB
    headers = signed(service.endpoint_url, service.credentials, "POST", INVOKE_PATH, body)
    status, got, data = raw(service.endpoint_url, "POST", INVOKE_PATH, body, headers)
    # Past the size check and authentication: only the model rejects it, as it is not JSON.
    assert (status, error_type(got)) == (400, "ValidationException")
    assert "Malformed input request" in json.loads(data)["message"]


def test_chunked_body_needs_a_content_length(service) -> None:
    status, _, data = raw(service.endpoint_url, "POST", CREATE_PATH, b"0\r\n\r\n",
                          {"Transfer-Encoding": "chunked"})
    assert status == 411 and "Content-Length" in json.loads(data)["message"]


# ---- S3 --------------------------------------------------------------------------------------

def s3_error(data: bytes) -> str:
    return data.decode().split("<Code>")[1].split("</Code>")[0]


def test_unsigned_s3_put_is_denied_and_writes_nothing(local_s3, s3_client, bucket) -> None:
    status, _, data = raw(local_s3.endpoint_url, "PUT", f"/{bucket}/planted.txt", b"hello",
                          {"Content-Length": "5"})
    assert (status, s3_error(data)) == (403, "AccessDenied")
    anonymous = boto3.client("s3", endpoint_url=local_s3.endpoint_url, region_name=REGION,
                             config=Config(signature_version=botocore.UNSIGNED))
    with pytest.raises(ClientError) as info:
        anonymous.put_object(Bucket=bucket, Key="planted.txt", Body=b"hello")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        s3_client.head_object(Bucket=bucket, Key="planted.txt")


def test_s3_signature_by_another_secret_is_refused(local_s3, bucket) -> None:
    forged = boto3.client("s3", endpoint_url=local_s3.endpoint_url, region_name=REGION,
                          aws_access_key_id=local_s3.credentials.access_key_id,
                          aws_secret_access_key="wrong", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as info:
        forged.put_object(Bucket=bucket, Key="forged.txt", Body=b"x")
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    stranger = boto3.client("s3", endpoint_url=local_s3.endpoint_url, region_name=REGION,
                            aws_access_key_id="AKIASTRANGER00000000", aws_secret_access_key="x",
                            config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as info:
        stranger.list_buckets()
    assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_s3_body_swapped_after_signing_is_refused(local_s3, s3_client, bucket) -> None:
    path = f"/{bucket}/swapped.txt"
    headers = signed(local_s3.endpoint_url, local_s3.credentials, "PUT", path, b"good",
                     service_name="s3")
    status, _, data = raw(local_s3.endpoint_url, "PUT", path, b"evil", headers)
    assert (status, s3_error(data)) == (400, "XAmzContentSHA256Mismatch")
    status, _, _ = raw(local_s3.endpoint_url, "PUT", path, b"good", headers)
    assert status == 200
    assert s3_client.get_object(Bucket=bucket, Key="swapped.txt")["Body"].read() == b"good"


@pytest.mark.parametrize("length, code", [("abc", "InvalidArgument"), ("-1", "InvalidArgument"),
                                          (str(10 * 1024**3), "EntityTooLarge")])
def test_s3_bad_or_huge_content_length_is_a_400(local_s3, bucket, length: str, code: str) -> None:
    status, _, data = raw(local_s3.endpoint_url, "PUT", f"/{bucket}/big.bin", b"",
                          {"Content-Length": length})
    assert (status, s3_error(data)) == (400, code)


def test_presigned_urls_work_until_tampered_with(local_s3, s3_client, bucket) -> None:
    """SigV4 presigned URLs work; boto3's default SigV2 ones do not (only SigV4 is verified)."""
    s3_client.put_object(Bucket=bucket, Key="shared.txt", Body=b"shared")
    presigner = boto3.client("s3", endpoint_url=local_s3.endpoint_url, region_name=REGION,
                             config=Config(signature_version="s3v4"),
                             **local_s3.credentials.boto3_kwargs())
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                  "Key": "shared.txt"})
    assert requests.get(url, timeout=30).content == b"shared"
    sigv2 = s3_client.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                    "Key": "shared.txt"})
    assert "Signature=" in sigv2 and requests.get(sigv2, timeout=30).status_code == 403
    tampered = requests.get(url.replace("shared.txt", "other.txt"), timeout=30)
    assert tampered.status_code == 403 and s3_error(tampered.content) == "SignatureDoesNotMatch"


def test_s3_client_in_another_region_is_redirected_like_real_s3(local_s3, bucket) -> None:
    """botocore reads the expected region from S3's error and re-signs, as against AWS."""
    elsewhere = boto3.client("s3", endpoint_url=local_s3.endpoint_url, region_name="eu-west-1",
                             **local_s3.credentials.boto3_kwargs())
    elsewhere.put_object(Bucket=bucket, Key="redirected.txt", Body=b"x")
    assert elsewhere.get_object(Bucket=bucket, Key="redirected.txt")["Body"].read() == b"x"


# ---- binding and the banner ---------------------------------------------------------------------

def test_default_binding_is_loopback_and_other_hosts_are_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    caplog.set_level(logging.WARNING, logger="pipeline.local.backend")
    with LocalBackend() as backend:
        assert urlsplit(backend.s3_endpoint_url).hostname == "127.0.0.1"
        assert urlsplit(backend.bedrock_endpoint_url).hostname == "127.0.0.1"
    assert not caplog.records
    with LocalBackend(host="0.0.0.0"):
        pass
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "0.0.0.0, reachable from other machines" in warnings[0]


def test_each_backend_has_its_own_random_key() -> None:
    first, second = LocalCredentials.generate(), LocalCredentials.generate()
    assert first.access_key_id != second.access_key_id
    assert first.secret_access_key != second.secret_access_key
    assert first.secret_access_key not in repr(first)


def test_a_client_that_stalls_mid_body_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declares 100 bytes, sends 10, then waits: the server lets go instead of waiting forever
    (the idle timeout is cut from 60 s to 1 s here)."""
    import pipeline.local.s3 as local_s3_module
    import pipeline.local.service as service_module

    monkeypatch.setattr(local_s3_module, "IDLE_TIMEOUT_SECONDS", 1)
    monkeypatch.setattr(service_module, "IDLE_TIMEOUT_SECONDS", 1)
    with LocalBackend() as backend:
        for url in (backend.s3_endpoint_url, backend.bedrock_endpoint_url):
            parts = urlsplit(url)
            with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
                conn.sendall(b"PUT /bkt/key HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                             b"0123456789")
                answer = b""
                while chunk := conn.recv(65536):  # until the server closes the connection
                    answer += chunk
            if url == backend.s3_endpoint_url:  # S3 answers with its error first
                assert b"<Code>RequestTimeout</Code>" in answer
            else:  # the Bedrock service just closes
                assert answer == b""
