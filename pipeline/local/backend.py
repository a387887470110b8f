"""LocalBackend: local S3 plus the local Bedrock batch service, started together on free ports."""
from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import boto3
from botocore.config import Config

from transforms.core.aws import AwsConfig, beam_s3_options
from transforms.core.quotas import PROFILES, Quotas

from pipeline.local.faults import Faults
from pipeline.local.jobs_store import ACCOUNT_ID, Timing
from pipeline.local.s3 import LocalS3
from pipeline.local.service import BedrockBatchService
from pipeline.local.sigv4 import LocalCredentials

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

log = logging.getLogger(__name__)

DEFAULT_BUCKET = "bedrock-batch-local"
# The local service accepts any well-formed role; this one reads well in examples and docs.
SERVICE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/BedrockBatchInferenceLocalRole"
# Credentials of other origins that boto3 would otherwise send along with the local key pair.
FOREIGN_CREDENTIAL_VARS = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the endpoints reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalBackend:
    """Both local endpoints with the settings a pipeline or test needs to reach them.

    In your own pipeline (a notebook, a test), as the README shows::

        with LocalBackend(bucket="my-bucket") as backend:
            config = BatchConfig(..., aws=backend.aws_config())
            with beam.Pipeline(options=backend.pipeline_options()) as p:
                ...

    Both endpoints accept only requests SigV4-signed with ``credentials`` (a fresh random pair
    per backend unless given), so nobody without the key can use them: not other users of the
    machine, nor a web page that makes the browser send requests to localhost.
    """

    def __init__(self, quotas: Quotas | None = None, faults: Faults | None = None,
                 timing: Timing | None = None, region: str = "us-east-1", host: str = "127.0.0.1",
                 s3_port: int = 0, bedrock_port: int = 0, bucket: str | None = None,
                 quiet: bool = True, credentials: LocalCredentials | None = None) -> None:
        self.region = region
        self.bucket = bucket
        self.quotas = quotas or PROFILES["aws-default"]
        self.credentials = credentials or LocalCredentials.generate()
        self._host = host
        self._s3 = LocalS3(host=host, port=s3_port, quiet=quiet, credentials=self.credentials,
                           region=region, faults=faults)
        self._settings = dict(quotas=self.quotas, faults=faults, timing=timing, region=region,
                              host=host, port=bedrock_port, log_requests=not quiet,
                              credentials=self.credentials)
        self.service: BedrockBatchService | None = None

    @property
    def s3_endpoint_url(self) -> str:
        return self._s3.endpoint_url

    @property
    def bedrock_endpoint_url(self) -> str:
        if self.service is None:
            raise RuntimeError("LocalBackend is not running; call start() or use it as a context manager")
        return self.service.endpoint_url

    def faults_injected(self) -> Counter[str]:
        """How often each kind of fault was injected so far, S3 and Bedrock together."""
        injected = Counter(self._s3.faults.injected if self._s3.faults else {})
        if self.service is not None:
            injected.update(self.service.faults.injected)
        return injected

    def start(self) -> "LocalBackend":
        if self.service is not None:
            return self
        if not is_loopback(self._host):
            log.warning("the local backend listens on %s, reachable from other machines: anyone "
                        "there who learns its credentials can use it (the default is 127.0.0.1)",
                        self._host)
        self._s3.start()
        try:
            self.service = BedrockBatchService(self._s3.endpoint_url, **self._settings).start()
            if self.bucket:
                self._ensure_bucket(self.bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        self._s3.stop()

    def __enter__(self) -> "LocalBackend":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def aws_config(self) -> AwsConfig:
        """Where the transforms' AWS clients point to reach this backend (``BatchConfig.aws``),
        with its credentials, so no environment variable is needed."""
        return AwsConfig(region=self.region, s3_endpoint_url=self.s3_endpoint_url,
                         bedrock_endpoint_url=self.bedrock_endpoint_url,
                         bedrock_runtime_endpoint_url=self.bedrock_endpoint_url,
                         access_key_id=self.credentials.access_key_id,
                         secret_access_key=self.credentials.secret_access_key)

    def pipeline_options(self, flags: Sequence[str] = ()) -> "PipelineOptions":
        """Beam options with Beam's S3 filesystem (s3:// input and output) pointed here, plus
        the Beam command-line ``flags`` given (e.g. ``["--runner=PrismRunner"]``)."""
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(list(flags), **beam_s3_options(self.aws_config()))

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3, the AWS CLI and Beam's S3 filesystem here."""
        return {
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_BEDROCK": self.bedrock_endpoint_url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock_endpoint_url,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def boto3_client(self, service: str, **config: Any) -> Any:
        """A boto3 client for "s3" or "bedrock" on the local endpoints; keyword args go to Config."""
        endpoints = {"s3": self.s3_endpoint_url, "bedrock": self.bedrock_endpoint_url,
                     "bedrock-runtime": self.bedrock_endpoint_url}
        if service not in endpoints:
            raise ValueError(f"the local backend serves {sorted(endpoints)}, not {service!r}")
        return boto3.client(service, endpoint_url=endpoints[service], region_name=self.region,
                            config=Config(**config) if config else None,
                            **self.credentials.boto3_kwargs())

    def _ensure_bucket(self, name: str) -> None:
        s3 = self.boto3_client("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if name not in existing:
            s3.create_bucket(Bucket=name)
