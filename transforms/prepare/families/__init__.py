"""Per model family: the Bedrock request body for a summarization prompt, and its response parsed.

One module per family (``claude``, ``converse``, ``nova``, ``llama``, ``mistral``, ``titan``),
each building that family's requests and reading its answers; ``base`` holds the ``Family``
interface and what the families share, and ``registry`` finds a family by model id or by
response shape. Callers import from here.

Field names follow AWS "Inference request parameters and response fields for foundation models"
and, for ``modelInvocationType="Converse"`` jobs, the Converse API request/response shape.
"""
from transforms.prepare.families.base import (TRUNCATION_REASONS, Family, ParsedOutput,
                                              UnparseableOutput)
from transforms.prepare.families.claude import ClaudeFamily
from transforms.prepare.families.converse import ConverseFamily
from transforms.prepare.families.llama import LlamaFamily
from transforms.prepare.families.mistral import MistralFamily
from transforms.prepare.families.nova import NovaFamily
from transforms.prepare.families.registry import (CONVERSE, DETECT_ORDER, FAMILIES,
                                                  INVOCATION_TYPES, PROFILE_PREFIXES,
                                                  base_model_id, detect_family, family_for,
                                                  parse_model_output, response_reader)
from transforms.prepare.families.titan import TitanTextFamily

__all__ = ["CONVERSE", "DETECT_ORDER", "FAMILIES", "INVOCATION_TYPES", "PROFILE_PREFIXES",
           "TRUNCATION_REASONS", "ClaudeFamily", "ConverseFamily", "Family", "LlamaFamily",
           "MistralFamily", "NovaFamily", "ParsedOutput", "TitanTextFamily", "UnparseableOutput",
           "base_model_id", "detect_family", "family_for", "parse_model_output", "response_reader"]
