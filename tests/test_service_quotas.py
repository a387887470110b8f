"""Quotas from Service Quotas entries.

A fake: this machine cannot reach AWS Service Quotas, so the entries below are written in the shape
ListServiceQuotas returns (QuotaName, Value); the names follow the AWS quota names.
"""
from __future__ import annotations

from pipeline.service_quotas import model_words, quotas_from_service_quotas
from transforms.core.quotas import PROFILES

ENTRIES = [
    {"QuotaName": "Records per batch inference job for Claude 3 Haiku", "Value": 20000.0},
    {"QuotaName": "Minimum number of records per batch inference job for Claude 3 Haiku", "Value": 50.0},
    {"QuotaName": "Batch inference job size (in GB) for Claude 3 Haiku", "Value": 2.0},
    {"QuotaName": "Records per batch inference job for Nova Lite", "Value": 7000.0},
    {"QuotaName": "On-demand model inference requests per minute for Claude 3 Haiku", "Value": 1000.0},
]


def test_model_words_drop_dates_and_versions():
    assert model_words("us.anthropic.claude-3-haiku-20240307-v1:0") == ["claude", "3", "haiku"]
    assert model_words("meta.llama3-1-8b-instruct-v1:0") == ["llama3", "1", "8b", "instruct"]


def test_quotas_for_the_model_only():
    quotas = quotas_from_service_quotas(ENTRIES, "anthropic.claude-3-haiku-20240307-v1:0")
    assert quotas.max_records_per_job == 20000
    assert quotas.min_records_per_job == 50
    assert quotas.max_job_bytes == 2 * 1000 ** 3
    assert quotas.max_records_per_file == PROFILES["aws-default"].max_records_per_file
    nova = quotas_from_service_quotas(ENTRIES, "amazon.nova-lite-v1:0")
    assert nova.max_records_per_job == 7000 and nova.min_records_per_job == 100
