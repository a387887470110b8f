"""The settings every stage of SummarizeTranscripts shares (picklable, no Beam)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from transforms.core.aws import AwsConfig
from transforms.core.bedrock import JobConfig, validate_run_id
from transforms.core.errors import ConfigError
from transforms.core.quotas import Quotas
from transforms.insights.schemas import TASKS, check_schema, default_schema
from transforms.prepare.records import PromptConfig

DEFAULT_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
UNDERSIZED_POLICIES = ("pad-merge", "defer", "on-demand", "fail")


@dataclass(frozen=True)
class BatchConfig:
    """One summarization: which model, where the run's files live on S3, quotas and retries.

    Args:
        base_uri: ``s3://bucket/prefix`` under which the run's ``input/``, ``index/`` and
            ``output/`` live (``<base_uri>/<run_id>/...``).
        run_id: Names the run's jobs and files; rerunning with it adopts the run's jobs.
        job: The settings every job shares (service role, invocation type, ...).
        model_id: The Bedrock model or inference-profile id.
        quotas: The quotas shards and submissions are planned by.
        undersized_policy: What a window's records too few for a job do: one of
            ``UNDERSIZED_POLICIES``.
        prompt: The prompt template and generation settings.
        aws: Where the AWS clients point.
        max_record_retries: Rounds a record a job did not answer goes round again.
        poll_interval_seconds: Whole seconds between job polls.
        on_demand_rps: Per worker, the ceiling of on-demand calls per second.
        on_demand_concurrency: Per worker, on-demand calls in flight at once.
        redactor: text -> (redacted text, {kind: count}), applied before submission; None sends
            the text as read.
    """

    base_uri: str  # s3://bucket/prefix under which <run id>/input|index|output live
    run_id: str
    job: JobConfig
    model_id: str = DEFAULT_MODEL_ID
    quotas: Quotas = field(default_factory=Quotas)
    undersized_policy: str = "pad-merge"
    prompt: PromptConfig = field(default_factory=PromptConfig)
    aws: AwsConfig = field(default_factory=AwsConfig)
    max_record_retries: int = 2
    poll_interval_seconds: int = 60
    # On-demand policy, per worker: a ceiling on calls per second (throttling lowers the pace
    # below it) and how many calls may be in flight at once.
    on_demand_rps: float = 20.0
    on_demand_concurrency: int = 8
    # text -> (redacted text, {kind: count}), applied before submission; picklable (a module-level
    # function or an object of a module-level class). None sends the text as read.
    redactor: Callable[[str], "tuple[str, Mapping[str, int]]"] | None = None
    # "summary" (free text) or "insights" (a JSON object checked against output_schema, the
    # JSON Schema object).
    task: str = "summary"
    output_schema: Mapping | None = None

    def __post_init__(self) -> None:
        validate_run_id(self.run_id)
        if not self.base_uri.startswith("s3://"):
            raise ConfigError(f"base_uri {self.base_uri!r} must be an s3://bucket/prefix URI: "
                              f"Bedrock batch jobs read and write S3 only", "base_uri")
        if self.undersized_policy not in UNDERSIZED_POLICIES:
            raise ConfigError(f"undersized_policy {self.undersized_policy!r}: use one of "
                              f"{', '.join(UNDERSIZED_POLICIES)}", "undersized_policy")
        if self.max_record_retries < 0:
            raise ConfigError(f"max_record_retries {self.max_record_retries} must be >= 0",
                              "max_record_retries")
        if self.poll_interval_seconds < 1 or int(self.poll_interval_seconds) != self.poll_interval_seconds:
            raise ConfigError(f"poll_interval_seconds {self.poll_interval_seconds} must be a whole "
                              f"number >= 1 (runners only honour whole-second delays)",
                              "poll_interval_seconds")

        if self.on_demand_rps <= 0:
            raise ConfigError(f"on_demand_rps {self.on_demand_rps} must be > 0", "on_demand_rps")
        if self.on_demand_concurrency < 1:
            raise ConfigError(f"on_demand_concurrency {self.on_demand_concurrency} must be >= 1",
                              "on_demand_concurrency")
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r}: use one of {', '.join(TASKS)}", "task")
        if self.task == "insights":  # None takes the bundled default schema
            schema = self.output_schema if self.output_schema is not None else default_schema()
            object.__setattr__(self, "output_schema",
                               check_schema(schema, "BatchConfig.output_schema"))
        elif self.output_schema is not None:
            raise ConfigError("output_schema is set but task is 'summary': use task='insights'",
                              "output_schema", "task")
        if self.redactor is not None and not callable(self.redactor):
            raise ConfigError(f"redactor {self.redactor!r} must be a callable text -> "
                              f"(text, counts)", "redactor")

    @property
    def max_attempts(self) -> int:
        return 1 + self.max_record_retries


def __getattr__(name: str) -> Any:
    # DEFAULT_INPUT_LATENESS_SECONDS, a setting of the sources, moved to transforms.sources.common;
    # the old name still resolves for one release.
    if name == "DEFAULT_INPUT_LATENESS_SECONDS":
        import warnings
        from transforms.sources import common
        warnings.warn("transforms.config.DEFAULT_INPUT_LATENESS_SECONDS is deprecated: import it "
                      "from transforms.sources.common", DeprecationWarning, stacklevel=2)
        return common.DEFAULT_INPUT_LATENESS_SECONDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
