"""The local `bedrock-runtime` InvokeModel and Converse operations, on the batch service's port.

They serve the pipeline's ``on-demand`` policy (records too few for a batch job) with the same
local extractive model, so `boto3.client("bedrock-runtime", endpoint_url=...)` works unchanged.
"""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from pipeline.local.responses import InvalidModelInput, invoke
from pipeline.local.validation import ApiError

_ROUTE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>invoke|converse)$")


def is_runtime_path(path: str) -> bool:
    return _ROUTE.match(path) is not None


def handle_runtime(method: str, path: str, body: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """(extra headers, JSON response) for InvokeModel / Converse; ApiError on bad requests."""
    match = _ROUTE.match(path)
    if match is None or method != "POST":
        raise ApiError("ValidationException", f"method {method} is not allowed on {path}")
    model_id, op = unquote(match["model"]), match["op"]
    try:
        request = json.loads(body or b"{}")
    except ValueError as e:
        raise ApiError("ValidationException", f"Malformed input request: {e}") from None
    if not isinstance(request, dict):
        raise ApiError("ValidationException", "Malformed input request: body must be a JSON object")
    try:
        result = invoke(model_id, "Converse" if op == "converse" else "InvokeModel", request)
    except InvalidModelInput as e:
        raise ApiError("ValidationException", str(e)) from None
    except ValueError as e:  # unknown model id
        raise ApiError("ValidationException", f"The provided model identifier is invalid: {e}") from None
    headers = {"X-Amzn-Bedrock-Input-Token-Count": str(result.input_tokens),
               "X-Amzn-Bedrock-Output-Token-Count": str(result.output_tokens)}
    return headers, result.body
