"""Estimated prices for the "see before you pay" cost lines: batch jobs and on-demand calls.

ESTIMATE ONLY: batch inference is billed at about half the on-demand price. The figures are
us-east-1 on-demand list prices for a few common models (USD per 1M tokens), halved for batch,
recorded by hand from public pricing information and not checked against the live page;
prices change and differ by region, so the real bill is whatever
https://aws.amazon.com/bedrock/pricing/ says. Models not listed get no estimate rather than a
guess.
"""
from __future__ import annotations

from dataclasses import dataclass

from transforms.prepare.families import base_model_id

BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class Price:
    """Estimated price in USD per 1M tokens.

    Args:
        input_per_million: USD per 1M input tokens.
        output_per_million: USD per 1M output tokens.
    """

    input_per_million: float
    output_per_million: float


# On-demand (input, output) USD per 1M tokens, us-east-1, keyed by foundation model id.
_ON_DEMAND: dict[str, tuple[float, float]] = {
    "anthropic.claude-3-haiku-20240307-v1:0": (0.25, 1.25),
    "anthropic.claude-3-5-haiku-20241022-v1:0": (0.80, 4.00),
    "anthropic.claude-3-5-sonnet-20240620-v1:0": (3.00, 15.00),
    "anthropic.claude-3-5-sonnet-20241022-v2:0": (3.00, 15.00),
    "anthropic.claude-3-7-sonnet-20250219-v1:0": (3.00, 15.00),
    "amazon.nova-micro-v1:0": (0.035, 0.14),
    "amazon.nova-lite-v1:0": (0.06, 0.24),
    "amazon.nova-pro-v1:0": (0.80, 3.20),
    "meta.llama3-1-8b-instruct-v1:0": (0.22, 0.22),
    "meta.llama3-1-70b-instruct-v1:0": (0.72, 0.72),
    "mistral.mistral-large-2407-v1:0": (2.00, 6.00),
}

BATCH_PRICES: dict[str, Price] = {
    model: Price(inp * BATCH_DISCOUNT, out * BATCH_DISCOUNT)
    for model, (inp, out) in _ON_DEMAND.items()
}


def batch_price(model_id: str) -> Price | None:
    """Estimated batch price for a model id (inference-profile prefixes ignored), or None.

    Args:
        model_id: The model or inference-profile id.
    """
    return BATCH_PRICES.get(base_model_id(model_id))


def on_demand_price(model_id: str) -> Price | None:
    """On-demand list price for a model id (inference-profile prefixes ignored), or None.

    Args:
        model_id: The model or inference-profile id.
    """
    prices = _ON_DEMAND.get(base_model_id(model_id))
    return None if prices is None else Price(*prices)


def _cost(price: Price | None, input_tokens: int, output_tokens: int) -> float | None:
    if price is None:
        return None
    return (input_tokens * price.input_per_million
            + output_tokens * price.output_per_million) / 1_000_000


def estimate_cost(model_id: str, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated batch cost in USD, or None when the model has no listed price.

    Args:
        model_id: The model or inference-profile id.
        input_tokens: Input tokens.
        output_tokens: Output tokens.
    """
    return _cost(batch_price(model_id), input_tokens, output_tokens)


def estimate_on_demand_cost(model_id: str, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated cost in USD of InvokeModel/Converse calls (the on-demand undersized policy) at
    on-demand list prices, or None when the model has no listed price.

    Args:
        model_id: The model or inference-profile id.
        input_tokens: Input tokens.
        output_tokens: Output tokens.
    """
    return _cost(on_demand_price(model_id), input_tokens, output_tokens)
