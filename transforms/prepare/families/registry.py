"""The families by model id and by response shape: which family builds a model's requests, and
which reads a response.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from transforms.prepare.families.base import Family, ParsedOutput, UnparseableOutput, found
from transforms.prepare.families.claude import ClaudeFamily
from transforms.prepare.families.converse import ConverseFamily
from transforms.prepare.families.llama import LlamaFamily
from transforms.prepare.families.mistral import MistralFamily
from transforms.prepare.families.nova import NovaFamily
from transforms.prepare.families.titan import TitanTextFamily

INVOCATION_TYPES = ("InvokeModel", "Converse")

# Cross-region inference profile ids prepend a geography to the foundation model id.
PROFILE_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "ap.", "jp.", "au.", "ca.", "global.")

CONVERSE = ConverseFamily()
# InvokeModel families, looked up by model id prefix.
FAMILIES: tuple[Family, ...] = (ClaudeFamily(), NovaFamily(), LlamaFamily(), MistralFamily(),
                                TitanTextFamily())
# Response shapes tried by auto-detection; Nova's shape is the Converse shape.
DETECT_ORDER: tuple[Family, ...] = tuple(CONVERSE if isinstance(f, NovaFamily) else f
                                         for f in FAMILIES)


def base_model_id(model_id: str) -> str:
    """The foundation model id behind an ARN or a cross-region inference profile id.

    Args:
        model_id: A model id, model ARN or inference profile id.
    """
    model = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    for prefix in PROFILE_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix):]
    return model


def _check_invocation_type(invocation_type: str) -> None:
    if invocation_type not in INVOCATION_TYPES:
        raise ValueError(f"unknown model invocation type {invocation_type!r}; "
                         f"use one of {', '.join(INVOCATION_TYPES)}")


@functools.lru_cache(maxsize=64)  # asked per job and per on-demand answer, for few models a run
def _known_family(model_id: str, invocation_type: str) -> Family | None:
    if invocation_type == "Converse":
        return CONVERSE
    base = base_model_id(model_id)
    return next((f for f in FAMILIES if base.startswith(f.model_prefixes)), None)


def family_for(model_id: str, invocation_type: str = "InvokeModel") -> Family:
    """The family that builds and parses bodies for ``model_id`` under ``invocation_type``.

    Args:
        model_id: A model id, model ARN or inference profile id.
        invocation_type: ``InvokeModel`` or ``Converse`` (one of ``INVOCATION_TYPES``).

    Raises:
        ValueError: the invocation type is unknown, or no family has the model's prefix.
    """
    _check_invocation_type(invocation_type)
    family = _known_family(model_id, invocation_type)
    if family is None:
        known = ", ".join(p for f in FAMILIES for p in f.model_prefixes)
        raise ValueError(f"model id {model_id!r} is not of a known model family (known prefixes: "
                         f"{known}); use --model-invocation-type Converse for other models")
    return family


def detect_family(body: Any) -> Family | None:
    """The family whose response shape ``body`` has, or None.

    Args:
        body: A decoded model response.
    """
    return next((f for f in DETECT_ORDER if f.matches(body)), None)


def response_reader(model_id: str | None = None,
                    invocation_type: str = "InvokeModel") -> Callable[[Any], ParsedOutput]:
    """``parse_model_output`` for one job's responses: the model's family is looked up once,
    not once per output line.

    Args:
        model_id: The model the job ran, when known.
        invocation_type: The job's ``InvokeModel`` or ``Converse`` invocation type.

    Returns:
        A function reading one decoded model response; it raises ``UnparseableOutput`` for a
        body that matches no known family's shape.
    """
    _check_invocation_type(invocation_type)
    family = _known_family(model_id, invocation_type) if model_id is not None else None

    def read(body: Any) -> ParsedOutput:
        # ``_parse`` rather than ``parse_response``: ``matches`` was just checked.
        if family is not None and family.matches(body):
            return family._parse(body)
        detected = detect_family(body)
        if detected is not None:
            return detected._parse(body)
        if family is not None:
            raise UnparseableOutput(f"{family.name} response for {model_id} expected "
                                    f"{family.shape}, found {found(body)}")
        shapes = "; ".join(f.shape for f in DETECT_ORDER)
        raise UnparseableOutput(f"model output matches no known family (expected one of: "
                                f"{shapes}), found {found(body)}")
    return read


def parse_model_output(body: Any, model_id: str | None = None,
                       invocation_type: str = "InvokeModel") -> ParsedOutput:
    """Parse one model response, by the model's family when known, else by the body's shape.

    A body of another family's shape is still parsed: the collector does not always know how a
    job was submitted (a job started from the console may be Converse-type for any model).
    To read many responses of one job, ``response_reader`` looks the family up once.

    Args:
        body: A decoded model response.
        model_id: The model the job ran, when known.
        invocation_type: The job's ``InvokeModel`` or ``Converse`` invocation type.

    Raises:
        UnparseableOutput: the body matches no known family's shape.
    """
    return response_reader(model_id, invocation_type)(body)
