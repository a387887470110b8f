"""The local bedrock-runtime InvokeModel / Converse, through unmodified boto3."""
from __future__ import annotations

import json

import botocore.exceptions
import pytest

from transforms.prepare.families import family_for, parse_model_output

PROMPT = "Customer: my bill is wrong this month. Agent: I corrected the bill and refunded the fee."


@pytest.mark.parametrize("model", ["anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-lite-v1:0",
                                   "meta.llama3-1-8b-instruct-v1:0", "amazon.titan-text-express-v1"])
def test_invoke_model_answers_in_the_family_shape(local_backend, model):
    runtime = local_backend.boto3_client("bedrock-runtime")
    response = runtime.invoke_model(modelId=model, body=json.dumps(
        family_for(model).build_request(PROMPT, None, 200, 0.2)))
    parsed = parse_model_output(json.loads(response["body"].read()), model)
    assert parsed.text.startswith("[local extractive summary]")
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) == parsed.input_tokens


def test_converse(local_backend):
    runtime = local_backend.boto3_client("bedrock-runtime")
    response = runtime.converse(modelId="amazon.nova-lite-v1:0",
                                messages=[{"role": "user", "content": [{"text": PROMPT}]}],
                                inferenceConfig={"maxTokens": 100})
    assert response["stopReason"] == "end_turn"
    assert response["output"]["message"]["content"][0]["text"].startswith("[local extractive summary]")


@pytest.mark.parametrize("model, body", [("anthropic.claude-3-haiku-20240307-v1:0", b'{"x": 1}'),
                                         ("nosuch.model-v1", b'{"prompt": "hi"}')])
def test_bad_requests_raise_validation_exception(local_backend, model, body):
    runtime = local_backend.boto3_client("bedrock-runtime")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        runtime.invoke_model(modelId=model, body=body)
    assert err.value.response["Error"]["Code"] == "ValidationException"
