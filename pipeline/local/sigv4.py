"""AWS Signature Version 4 verification for the local endpoints (pure logic, no HTTP server).

The server rebuilds the canonical request from what arrived (method, raw path, query, the headers
the client says it signed, the payload hash), derives the signing key from the local secret and
compares signatures, as AWS does. Each failure has a reason; the Bedrock service and the S3
front end map reasons to their own real error codes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Mapping
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOADS = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
_SIGNED_PARAMS = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]+)")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class LocalCredentials:
    """The one key pair the local endpoints accept. The secret never shows in a repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> "LocalCredentials":
        """A fresh random pair: a key that leaks opens nothing once this backend has stopped."""
        alphabet = string.ascii_uppercase + string.digits
        key_id = "LOCAL" + "".join(secrets.choice(alphabet) for _ in range(15))
        return cls(key_id, secrets.token_urlsafe(30))

    def boto3_kwargs(self) -> dict[str, str]:
        return {"aws_access_key_id": self.access_key_id,
                "aws_secret_access_key": self.secret_access_key}


class AuthError(Exception):
    """Why a request is not authenticated. ``reason`` is one of REASONS."""

    REASONS = ("missing", "malformed", "unknown_key", "token", "scope", "region", "skew",
               "expired", "signature", "payload_mismatch", "unsupported_payload")

    def __init__(self, reason: str, message: str, detail: str = "") -> None:
        assert reason in self.REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail  # e.g. the expected region, for S3's redirect hint


@dataclass(frozen=True)
class SignedRequest:
    """What arrived: the raw (still percent-encoded) path and query, headers, body."""

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]  # case-insensitive lookups (http.client / werkzeug headers)
    body: bytes


def verify(request: SignedRequest, credentials: LocalCredentials, region: str, service: str,
           now: dt.datetime, max_skew: dt.timedelta, s3: bool = False) -> None:
    """Raise AuthError unless ``request`` carries a valid SigV4 signature by ``credentials``.

    ``s3`` selects S3's variant: the path is signed as sent (no normalization, no double
    encoding) and the x-amz-content-sha256 header is required. Query-string (presigned)
    signatures are accepted for S3 only.
    """
    query = _query_pairs(request.raw_query)
    presigned = s3 and any(k == "X-Amz-Algorithm" for k, _ in query)
    if presigned:
        auth = _presigned_fields(query)
        date_text = auth["date"]
    else:
        auth = _header_fields(request.headers.get("Authorization"))
        date_text = request.headers.get("X-Amz-Date") or ""
        if not date_text and request.headers.get("Date"):
            date_text = _from_http_date(request.headers["Date"])
    signed_at = _parse_amz_date(date_text)
    scope = _check_scope(request, query, auth["credential"], date_text, credentials, region,
                         service)
    signed_headers = _check_signed_headers(request, auth["signed_headers"], presigned)
    _check_time(signed_at, date_text, now, max_skew, auth.get("expires") if presigned else None)
    canonical = "\n".join([
        request.method.upper(),
        _canonical_path(request.raw_path, s3),
        _canonical_query(q for q in query if not (presigned and q[0] == "X-Amz-Signature")),
        _canonical_headers(request.headers, signed_headers) + "\n",
        ";".join(signed_headers),
        _payload_hash(request, s3, presigned),
    ])
    string_to_sign = "\n".join([ALGORITHM, date_text, "/".join(scope),
                                hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = f"AWS4{credentials.secret_access_key}".encode()
    for part in scope:  # date, region, service, "aws4_request"
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), auth["signature"].encode("utf-8")):
        raise AuthError("signature", "The request signature we calculated does not match the "
                                     "signature you provided. Check your AWS Secret Access Key "
                                     "and signing method. Consult the service documentation for "
                                     "details.")


def _check_scope(request: SignedRequest, query: list[tuple[str, str]], credential: str,
                 date_text: str, credentials: LocalCredentials, region: str,
                 service: str) -> list[str]:
    """The credential scope (date, region, service, terminator) once it is the expected one."""
    key_id, scope_date, scope_region, scope_service, terminator = _scope_parts(credential)
    if key_id != credentials.access_key_id:
        raise AuthError("unknown_key", "The security token included in the request is invalid.")
    if request.headers.get("X-Amz-Security-Token") is not None or any(
            k == "X-Amz-Security-Token" for k, _ in query):
        # The local key pair is a long-term key: a session token belongs to other credentials.
        raise AuthError("token", "The security token included in the request is invalid.")
    if scope_date != date_text[:8]:
        raise AuthError("scope", f"Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                                 f"version of date from HTTP: '{scope_date}' != '{date_text[:8]}', "
                                 f"from '{date_text}'.")
    if scope_region != region:
        raise AuthError("region", f"Credential should be scoped to a valid region. The region "
                                  f"'{scope_region}' is wrong; expecting '{region}'", detail=region)
    if scope_service != service or terminator != "aws4_request":
        raise AuthError("scope", f"Credential should be scoped to correct service: '{service}'.")
    return [scope_date, scope_region, scope_service, terminator]


def _check_signed_headers(request: SignedRequest, listed: str, presigned: bool) -> list[str]:
    signed_headers = listed.split(";")
    if "host" not in signed_headers:
        raise AuthError("malformed", "'Host' or ':authority' must be a 'SignedHeader' in the "
                                     "AWS Authorization.")
    unsigned_amz = sorted(name.lower() for name in request.headers.keys()
                          if name.lower().startswith("x-amz-") and name.lower() not in signed_headers)
    if unsigned_amz and not presigned:
        raise AuthError("malformed", f"There were headers present in the request which were not "
                                     f"signed: {', '.join(unsigned_amz)}")
    return signed_headers


def _check_time(signed_at: dt.datetime, date_text: str, now: dt.datetime,
                max_skew: dt.timedelta, expires: int | None) -> None:
    """Within the clock-skew window; a presigned URL (``expires`` seconds) also not expired."""
    if expires is not None:
        if now > signed_at + dt.timedelta(seconds=expires):
            raise AuthError("expired", "Request has expired")
        if signed_at - now > max_skew:
            raise AuthError("skew", "Request is not yet valid")
        return
    if abs(now - signed_at) <= max_skew:
        return
    minutes = int(max_skew.total_seconds() // 60)
    stamp = now.strftime(_AMZ_DATE)
    if signed_at < now:
        raise AuthError("skew", f"Signature expired: {date_text} is now earlier than "
                                f"{(now - max_skew).strftime(_AMZ_DATE)} ({stamp} - {minutes} min.)")
    raise AuthError("skew", f"Signature not yet current: {date_text} is still later than "
                            f"{(now + max_skew).strftime(_AMZ_DATE)} ({stamp} + {minutes} min.)")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _header_fields(value: str | None) -> dict[str, Any]:
    if not value:
        raise AuthError("missing", "Missing Authentication Token")
    scheme, _, rest = value.partition(" ")
    if scheme != ALGORITHM:
        raise AuthError("malformed", f"Only {ALGORITHM} signatures are accepted")
    found = dict(_SIGNED_PARAMS.findall(rest))
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in found]
    if missing:
        raise AuthError("malformed", " ".join(f"Authorization header requires '{name}' parameter."
                                              for name in missing))
    return {"credential": found["Credential"], "signed_headers": found["SignedHeaders"],
            "signature": found["Signature"]}


def _presigned_fields(query: list[tuple[str, str]]) -> dict[str, Any]:
    params = dict(query)
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise AuthError("malformed", f"X-Amz-Algorithm must be {ALGORITHM}")
    missing = [n for n in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                           "X-Amz-SignedHeaders", "X-Amz-Signature") if n not in params]
    if missing:
        raise AuthError("malformed", f"Query-string authentication requires {', '.join(missing)}")
    if not params["X-Amz-Expires"].isdigit():
        raise AuthError("malformed", "X-Amz-Expires must be a whole number of seconds")
    return {"credential": params["X-Amz-Credential"], "signed_headers": params["X-Amz-SignedHeaders"],
            "signature": params["X-Amz-Signature"], "date": params["X-Amz-Date"],
            "expires": int(params["X-Amz-Expires"])}


def _scope_parts(credential: str) -> list[str]:
    parts = credential.split("/")
    if len(parts) != 5:
        raise AuthError("malformed", f"Credential should have 5 parts separated by '/' "
                                     f"(keyId/date/region/service/aws4_request), got {credential!r}")
    return parts


def _from_http_date(value: str) -> str:
    try:
        return parsedate_to_datetime(value).astimezone(dt.timezone.utc).strftime(_AMZ_DATE)
    except (TypeError, ValueError):
        raise AuthError("malformed", f"Date header {value!r} is not an HTTP date") from None


def _parse_amz_date(value: str) -> dt.datetime:
    if not value:
        raise AuthError("malformed", "Authorization header requires existence of either a "
                                     "'X-Amz-Date' or a 'Date' header.")
    try:
        return dt.datetime.strptime(value, _AMZ_DATE).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise AuthError("malformed", f"X-Amz-Date {value!r} is not in the form "
                                     f"YYYYMMDD'T'HHMMSS'Z'") from None


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decoded (key, value) pairs; '+' is kept literal, as SigV4 clients encode spaces as %20."""
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def _canonical_query(pairs: Any) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_path(raw_path: str, s3: bool) -> str:
    if s3:
        return raw_path or "/"
    # Other services sign the already-encoded path encoded once more, after normalizing it.
    return quote(normalize_url_path(raw_path), safe="/~")


def _canonical_headers(headers: Mapping[str, str], names: list[str]) -> str:
    lines = []
    for name in names:
        value = headers.get(name)
        if value is None:
            raise AuthError("malformed", f"Header {name!r} is listed in SignedHeaders but is "
                                         f"not in the request")
        lines.append(f"{name}:{' '.join(value.split())}")
    return "\n".join(lines)


def _payload_hash(request: SignedRequest, s3: bool, presigned: bool) -> str:
    if presigned:
        return "UNSIGNED-PAYLOAD"
    declared = request.headers.get("X-Amz-Content-SHA256")
    if declared is None:
        if s3:
            raise AuthError("malformed", "Missing required header for this request: "
                                         "x-amz-content-sha256")
        return hashlib.sha256(request.body).hexdigest()
    if declared in UNSIGNED_PAYLOADS:
        return declared
    if declared.startswith("STREAMING-"):
        raise AuthError("unsupported_payload", f"x-amz-content-sha256 {declared} (chunk-signed "
                                               f"uploads) is not supported by the local backend; "
                                               f"sign the whole payload, as boto3 does over http")
    if declared != hashlib.sha256(request.body).hexdigest():
        raise AuthError("payload_mismatch", "The provided 'x-amz-content-sha256' header does not "
                                            "match what was computed.")
    return declared
