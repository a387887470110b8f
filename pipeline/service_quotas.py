"""Read Bedrock batch quotas from AWS Service Quotas (``--quota-profile service-quotas``).

Per-model quota names end with the model's display name ("Records per batch inference job for
Claude 3 Haiku"). A quota applies to a model id when every word of the id's name part
("claude", "3", "haiku" for anthropic.claude-3-haiku-20240307-v1:0) occurs in the quota's name;
quotas the account does not list keep the aws-default value.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from transforms.core.quotas import PROFILES, SERVICE_QUOTA_NAMES, Quotas
from transforms.prepare.families import base_model_id

GB_FIELDS = ("max_file_bytes", "max_job_bytes")  # Service Quotas states these in GB
_NOT_NAME = re.compile(r"^(\d{8}|v\d+(:\d+)?|\d+k)$")  # dates, versions, context sizes


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def model_words(model_id: str) -> list[str]:
    """The words of a model id's name part that a per-model quota name must contain.

    Args:
        model_id: The model or inference-profile id.
    """
    name = base_model_id(model_id).split(".", 1)[-1]
    return [w for w in re.split(r"[-.]", name.lower()) if w and not _NOT_NAME.match(w)]


def quotas_from_service_quotas(entries: Iterable[Mapping[str, Any]], model_id: str,
                               base: Quotas = PROFILES["aws-default"]) -> Quotas:
    """Quotas for one model from ListServiceQuotas entries (QuotaName, Value).

    Args:
        entries: ListServiceQuotas entries with ``QuotaName`` and ``Value``.
        model_id: The model whose quotas are wanted.
        base: The quotas kept where the account lists none.
    """
    words = model_words(model_id)
    found: dict[str, int] = {}
    for entry in entries:
        name = str(entry.get("QuotaName", "")).lower()
        if not all(w in _squash(name) for w in words):
            continue
        for field, prefix in SERVICE_QUOTA_NAMES.items():
            if name.startswith(prefix):
                value = float(entry["Value"])
                found[field] = int(value * 1000 ** 3) if field in GB_FIELDS else int(value)
    return base.override(**found)


def read_quotas(client: Any, model_id: str) -> Quotas:
    """Page through ListServiceQuotas(ServiceCode="bedrock") with a service-quotas client.

    Args:
        client: A boto3 ``service-quotas`` client.
        model_id: The model whose quotas are wanted.
    """
    pages = client.get_paginator("list_service_quotas").paginate(ServiceCode="bedrock")
    return quotas_from_service_quotas((q for page in pages for q in page.get("Quotas", [])),
                                      model_id)
