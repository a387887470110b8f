"""boto3 client settings shared by every DoFn: picklable, clients built in setup()."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

# Throttling is retried by botocore itself (standard mode backs off with jitter); quota errors
# are not retryable there and are handled by the job scheduler.
BOTOCORE_RETRIES = {"mode": "standard", "max_attempts": 10}


@dataclass(frozen=True)
class AwsConfig:
    """Where the AWS clients point. Endpoints are None on real AWS (standard resolution).

    Args:
        region: The AWS region; None uses the standard resolution.
        s3_endpoint_url: An S3 endpoint other than AWS's (the local backend's).
        bedrock_endpoint_url: A Bedrock control-plane endpoint other than AWS's.
        bedrock_runtime_endpoint_url: A bedrock-runtime endpoint other than AWS's.
        profile: The AWS profile; None uses the standard credential chain.
        access_key_id: A fixed access key, for the local backend only.
        secret_access_key: Its secret (never in logs or errors).
    """

    region: str | None = None
    s3_endpoint_url: str | None = None
    bedrock_endpoint_url: str | None = None
    bedrock_runtime_endpoint_url: str | None = None
    profile: str | None = None
    # Only for endpoints that take fixed test credentials (the local backend): workers in other
    # processes (Flink EXTERNAL environments) do not share the launcher's environment. On AWS
    # these stay None and the standard credential chain applies.
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never in logs or errors

    def client(self, service: str, max_attempts: int | None = None) -> Any:
        """A boto3 client; ``max_attempts`` overrides botocore's retries (1: the caller retries).

        One client per settings, service, retries and AWS environment in a process: boto3
        clients are thread-safe, and building one parses megabytes of service model and endpoint
        rules (about 0.15 s of CPU), which every DoFn's setup() would otherwise pay again. A
        client keeps what boto3 read from the ``AWS_*`` variables when it was built (endpoints,
        keys, region, profile), so a changed variable gets a new client instead of one that
        points at the old endpoint or signs with the old keys.

        Args:
            service: The boto3 service name, e.g. ``bedrock`` or ``s3``.
            max_attempts: botocore's total attempts per call; None keeps ``BOTOCORE_RETRIES``.
        """
        key = (self, service, max_attempts, _aws_environment())
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                _CLIENTS[key] = self._new_client(service, max_attempts)
            return _CLIENTS[key]

    def _new_client(self, service: str, max_attempts: int | None) -> Any:
        import boto3
        from botocore.config import Config

        endpoint = {"s3": self.s3_endpoint_url, "bedrock": self.bedrock_endpoint_url,
                    "bedrock-runtime": self.bedrock_runtime_endpoint_url}.get(service)
        session = boto3.session.Session(profile_name=self.profile, region_name=self.region,
                                        aws_access_key_id=self.access_key_id,
                                        aws_secret_access_key=self.secret_access_key)
        retries = dict(BOTOCORE_RETRIES)
        if max_attempts is not None:
            retries["max_attempts"] = max_attempts
        return session.client(service, endpoint_url=endpoint, config=Config(retries=retries))


def beam_s3_options(aws: AwsConfig) -> dict[str, str]:
    """``aws``'s S3 settings as Beam ``S3Options`` values, for Beam's own S3 filesystem.

    Beam builds its boto3 session without a profile name, so a profile's region is resolved
    here; the profile's credentials reach Beam through AWS_PROFILE, which the caller sets
    (the CLI: pipeline.running.environment.beam_s3).

    Args:
        aws: The settings of the transforms' own clients.
    """
    region = aws.region
    if region is None and aws.profile:
        import boto3
        region = boto3.session.Session(profile_name=aws.profile).region_name
    values = {"s3_endpoint_url": aws.s3_endpoint_url, "s3_region_name": region,
              "s3_access_key_id": aws.access_key_id, "s3_secret_access_key": aws.secret_access_key}
    return {name: value for name, value in values.items() if value}


def _aws_environment() -> tuple[tuple[str, str], ...]:
    """The ``AWS_*`` environment variables, which boto3 reads when it builds a client."""
    return tuple(sorted((name, value) for name, value in os.environ.items()
                        if name.startswith("AWS_")))


# AwsConfig.client's clients, by (settings, service, max_attempts, AWS environment).
_CLIENTS: dict[tuple[AwsConfig, str, int | None, tuple[tuple[str, str], ...]], Any] = {}
_CLIENTS_LOCK = threading.Lock()
