"""The local model's insights answers: the request's JSON Schema filled from the transcript by
simple extractive rules (not an LLM), plus a small seeded share of broken answers.

A request asks for insights when its text holds a ``<json_schema>`` block (as the pipeline's
``--task insights`` prompts do). Fields of the bundled default schema are filled by rules: a
sentiment lexicon, keyword topics and categories, resolution and identity-check phrase lists,
promise sentences as action items. Any other field gets a value of its schema's type.

So that the pipeline's repair and failure paths run in tests, ``planned_fault`` breaks a seeded
share of answers: about 6% of first answers and 3% of repair answers (requests holding the
repair note) are invalid JSON or a schema-invalid object. The choice depends only on the
transcript text and on whether the request is a repair, so a test can predict it.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping, Sequence

from jsonschema import validators

from pipeline.local.summarizer import LABEL, extract_transcript, split_sentences, summarize
from transforms.insights.prompts import REPAIR_MARKER

_SCHEMA = re.compile(r"<json_schema>\s*(.*?)\s*</json_schema>", re.DOTALL)
_TRANSCRIPT = re.compile(r"<transcript>(.*?)</transcript>", re.DOTALL)

# Per mille of answers broken on purpose: first answers, then answers to a repair request.
FAULT_PER_MILLE = {False: 60, True: 30}
FAULTS = ("invalid_json", "schema_invalid")

_POSITIVE = frozenset("""thank thanks great perfect appreciate appreciated helpful happy glad
    wonderful excellent awesome solved fixed works working resolved good fine lovely""".split())
_NEGATIVE = frozenset("""angry upset frustrated frustrating annoyed annoying terrible awful
    unacceptable ridiculous disappointed worst broken damaged wrong problem issue error charged
    overcharged late missing lost failed declined never cancel complaint""".split())
# (category of the default schema, words that point to it); the first category hit wins.
_CATEGORIES = (
    ("billing", ("bill", "billed", "charge", "charged", "invoice", "payment", "refund", "fee")),
    ("order_or_delivery", ("order", "delivery", "delivered", "package", "shipped", "arrived")),
    ("account_access", ("password", "login", "locked", "log in", "sign in", "account access")),
    ("cancellation", ("cancel", "cancellation", "close my account")),
    ("technical_issue", ("internet", "outage", "error", "not working", "broken", "app", "wifi")),
    ("complaint", ("complaint", "complain", "unacceptable")),
    ("product_question", ("how do i", "does it", "question about", "wondering")),
)
_TOPICS = {"billing": ("bill", "charge", "invoice", "fee"), "refund": ("refund",),
           "delivery": ("delivery", "delivered", "package", "arrived"),
           "replacement": ("replacement", "replace"), "password reset": ("password",),
           "internet": ("internet", "wifi", "outage"), "cancellation": ("cancel",),
           "payment": ("payment", "card"), "account": ("account",)}
# Checked in this order: an escalation or callback is what happened even if "resolved" is said,
# and "still not resolved" must not read as "resolved".
_RESOLUTIONS = (
    ("escalated", ("escalate", "escalated", "supervisor", "specialist team", "transfer you")),
    ("callback_scheduled", ("call you back", "callback", "call back", "follow-up call")),
    ("unresolved", ("not resolved", "unresolved", "no solution", "nothing more i can do")),
    ("resolved", ("resolved", "fixed", "refunded", "processed", "shipped", "that solves",
                  "all set", "works now", "working now", "issued", "reset your")),
)
_IDENTITY = ("verify your", "verified", "date of birth", "last four", "security question",
             "confirm your identity", "postcode", "zip code")
_PROMISE = re.compile(r"\b(I will|I'll|we will|we'll|you will|you'll|you need to|please)\b",
                      re.IGNORECASE)
_DUE = re.compile(r"\b(today|tomorrow|tonight|next week|within \d+ (?:business )?days|"
                  r"(?:by|on) (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|"
                  r"\d{4}-\d{2}-\d{2})\b", re.IGNORECASE)
_INLINE_SPEAKER = re.compile(r"\s+(?=(?:Customer|Caller|Agent|Representative|Rep)\s*:)")
_SPANISH = frozenset("hola gracias por favor cuenta factura ayuda".split())


def requested_schema(texts: Sequence[str]) -> dict[str, Any] | None:
    """The JSON Schema a request asks the answer to follow, or None for a summary request.

    Args:
        texts: every text the model reads (system prompt and turns, or the raw prompt).
    """
    for text in texts:
        found = _SCHEMA.search(text)
        if found:
            try:
                schema = json.loads(found.group(1))
            except ValueError:
                return None
            return schema if isinstance(schema, dict) else None
    return None


def is_repair_request(texts: Sequence[str]) -> bool:
    """Whether the request holds the pipeline's repair note (a second answer is wanted).

    Args:
        texts: every text the model reads.
    """
    return any(REPAIR_MARKER in text for text in texts)


def request_transcript(texts: Sequence[str]) -> str:
    """The transcript a request is about: its first <transcript> block, stripped.

    Args:
        texts: every text the model reads.
    """
    for text in texts:
        found = _TRANSCRIPT.search(text)
        if found:
            return found.group(1).strip()
    return "\n".join(texts).strip()


def planned_fault(transcript: str, repair: bool) -> str | None:
    """Which deliberate fault the answer about ``transcript`` gets: "invalid_json",
    "schema_invalid", or None for a valid answer.

    Args:
        transcript: the transcript text as put in the prompt (``request_transcript``).
        repair: whether the request is a repair request.
    """
    digest = hashlib.sha256(f"{int(repair)}\x00{transcript}".encode("utf-8")).digest()
    draw = int.from_bytes(digest[:4], "big")
    if draw % 1000 >= FAULT_PER_MILLE[repair]:
        return None
    return FAULTS[(draw // 1000) % len(FAULTS)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _sentiment(sentences: list[str]) -> float:
    """Lexicon score in -1..1: (positive - negative) / words that carry sentiment."""
    words = [w for s in sentences for w in _words(s)]
    pos = sum(w in _POSITIVE for w in words)
    neg = sum(w in _NEGATIVE for w in words)
    return 0.0 if pos + neg == 0 else round((pos - neg) / (pos + neg), 2)


def _clip(text: str, words: int) -> str:
    """``text`` cut to its first ``words`` words."""
    kept = text.split()
    return " ".join(kept[:words]) + (" ..." if len(kept) > words else "")


def _owner(speaker: str | None, promise: str) -> str:
    lowered = promise.lower()
    if lowered in ("we will", "we'll"):
        return "team"
    if lowered in ("you will", "you'll", "you need to", "please"):
        return "customer" if (speaker or "").lower().startswith("agent") else "agent"
    return "customer" if (speaker or "").lower().startswith("customer") else "agent"


def _rules(transcript: str) -> dict[str, Any]:
    """The default schema's fields, read from the transcript by the rules above."""
    # One-line transcripts ("Customer: ... Agent: ...") get a line per turn, so speakers count.
    lines = _INLINE_SPEAKER.sub("\n", transcript)
    sentences = split_sentences(extract_transcript(f"<transcript>{lines}</transcript>"))
    lowered = transcript.lower()
    customer = [s.text for s in sentences if (s.speaker or "").lower().startswith("customer")] \
        or [s.text for s in sentences]
    third = max(1, len(customer) // 3)
    category = next((name for name, cues in _CATEGORIES if any(c in lowered for c in cues)),
                    "other")
    items = []
    for s in sentences:
        promise = _PROMISE.search(s.text)
        if promise:
            due = _DUE.search(s.text)
            items.append({"what": _clip(s.text[promise.start():], 12),
                          "owner": _owner(s.speaker, promise.group(1)),
                          "due_date": due.group(1) if due else None})
    # A few sentences and short clauses: a long call's answer must still fit the default
    # --max-tokens, as a real model's concise answer would.
    pieces = summarize(f"<transcript>{transcript}</transcript>")[:3]
    return {
        "summary": LABEL + (_clip(" ".join(pieces), 60) if pieces else "(the call held no text)"),
        "reason_for_call": {"category": category,
                            "detail": _clip(customer[0], 25) if customer else "(not stated)"},
        "resolution": next((name for name, cues in _RESOLUTIONS
                            if any(c in lowered for c in cues)), "unresolved"),
        "customer_sentiment": {"start": _sentiment(customer[:third]),
                               "end": _sentiment(customer[-third:])},
        "action_items": items[:3],
        "topics": [topic for topic, cues in _TOPICS.items() if any(c in lowered for c in cues)],
        "agent_verified_identity": any(c in lowered for c in _IDENTITY),
        "language": "es" if set(_words(transcript)) & _SPANISH else "en",
    }


def _deref(schema: Any, root: Mapping[str, Any]) -> Any:
    """``schema`` with a local "$ref" ("#/$defs/x") followed through ``root``."""
    seen = 0
    while isinstance(schema, Mapping) and str(schema.get("$ref", "")).startswith("#") \
            and seen < 32:  # a bound, for refs that point at each other
        target: Any = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            target = target.get(part) if part and isinstance(target, Mapping) else target
        schema, seen = target, seen + 1
    return schema


def _valid(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    # The root's definitions come along, so the property's own "$ref"s resolve.
    document = {**schema, **{k: root[k] for k in ("$defs", "definitions") if k in root}}
    if "$schema" in root:
        document["$schema"] = root["$schema"]
    return validators.validator_for(document)(document).is_valid(value)


def _by_type(schema: Any, hint: str, root: Mapping[str, Any]) -> Any:
    """A value of ``schema``'s type: an enum's first value, a number in range, an empty list."""
    schema = _deref(schema, root)
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else (kind[0] if kind else None)
    if kind == "object":
        return _fill_object(schema, {}, root)
    if kind == "array":
        return [_by_type(schema.get("items"), hint, root)
                for _ in range(int(schema.get("minItems", 0)))]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(0, low + (1 if "exclusiveMinimum" in schema else 0))
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return hint


def _fill_object(schema: Mapping[str, Any], rules: Mapping[str, Any],
                 root: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, sub in (schema.get("properties") or {}).items():
        ruled = rules.get(name)
        if name in rules and isinstance(sub, Mapping) and _valid(ruled, sub, root):
            out[name] = ruled
        else:
            out[name] = _by_type(sub, str(rules.get("summary", "")), root)
    return out


def fill(schema: Mapping[str, Any], transcript: str) -> dict[str, Any]:
    """The object the local model answers: every property of ``schema`` filled, by the rules
    where a rule's value fits the property's schema, else by type.

    Args:
        schema: the requested JSON Schema (an object schema).
        transcript: the call's text.
    """
    return _fill_object(_deref(schema, schema), _rules(transcript), schema)


def _broken(value: dict[str, Any], schema: Mapping[str, Any], fault: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if fault == "invalid_json":
        return text[: max(1, len(text) * 2 // 3)]  # cut short, as a model that rambled off
    required = [name for name in schema.get("required") or () if name in value]
    broken = dict(value)
    if required:
        del broken[required[0]]
    elif broken:
        first = next(iter(broken))
        broken[first] = {"unexpected": [first]}  # a wrong type for any typed property
    return json.dumps(broken, ensure_ascii=False)


def answer(texts: Sequence[str]) -> str | None:
    """The local model's insights answer to a request, or None when it asks for no JSON.

    The answer continues a prefill the request ends with ("{", or a ```json fence), as a real
    model's does; otherwise it is the bare JSON object.

    Args:
        texts: every text the model reads, the last one being where its answer continues.
    """
    schema = requested_schema(texts)
    if schema is None:
        return None
    transcript = request_transcript(texts)
    value = fill(schema, transcript)
    fault = planned_fault(transcript, is_repair_request(texts))
    text = json.dumps(value, ensure_ascii=False) if fault is None else _broken(value, schema, fault)
    tail = texts[-1].rstrip() if texts else ""
    if tail.endswith("```json"):
        return f"\n{text}\n```"
    if tail.endswith("{") and text.startswith("{"):
        return text[1:]
    return text
