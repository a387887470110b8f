"""Request routing, parsing and validation for the local Bedrock service, driven by botocore's model.

The constraints (required members, lengths, ranges, patterns, enums, unions) come from botocore's own
`bedrock` service-2.json, so the local service rejects exactly what the real one's model says it
rejects, with messages in the real service's "N validation error(s) detected: ..." form.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import unquote

import botocore.session
from botocore.model import NoShapeFoundError, OperationModel, ServiceModel, Shape

OPERATIONS = (
    "CreateModelInvocationJob",
    "GetModelInvocationJob",
    "ListModelInvocationJobs",
    "StopModelInvocationJob",
)


class ApiError(Exception):
    """An error the service returns to the client as a rest-json error response."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self._status = status  # for errors the service model does not declare (auth, HTTP)

    @property
    def status(self) -> int:
        if self._status is not None:
            return self._status
        try:
            shape = service_model().shape_for(self.code)
        except NoShapeFoundError:  # codes the model does not declare (SerializationException)
            return 400
        return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


@functools.lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("bedrock")


@dataclass(frozen=True)
class Route:
    operation: OperationModel
    method: str
    regex: re.Pattern[str]


@functools.lru_cache(maxsize=1)
def routes() -> tuple[Route, ...]:
    """One route per supported operation, compiled from the model's requestUri templates."""
    out = []
    for name in OPERATIONS:
        op = service_model().operation_model(name)
        template = op.http["requestUri"].split("?")[0]
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        out.append(Route(op, op.http["method"], re.compile(f"^{pattern}/?$")))
    return tuple(out)


def match_route(method: str, path: str) -> tuple[OperationModel, dict[str, str]]:
    """The operation for an HTTP method and (still percent-encoded) path, plus its URI labels."""
    path_allowed = False
    for route in routes():
        m = route.regex.match(path)
        if m is None:
            continue
        path_allowed = True
        if route.method == method:
            return route.operation, {k: unquote(v) for k, v in m.groupdict().items()}
    if path_allowed:
        raise ApiError("ValidationException", f"method {method} is not allowed on {path}")
    raise ApiError("ResourceNotFoundException", f"no Bedrock operation at {method} {path}; "
                   f"this local service implements {', '.join(OPERATIONS)}")


def parse_request(op: OperationModel, labels: Mapping[str, str], query: Mapping[str, list[str]],
                  body: bytes) -> dict[str, Any]:
    """The operation's input parameters from the HTTP request, validated against the input shape."""
    shape = op.input_shape
    params: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    if body.strip():
        try:
            payload = json.loads(body)
        except ValueError as e:
            raise ApiError("SerializationException", f"request body is not valid JSON: {e}") from None
        if not isinstance(payload, dict):
            raise ApiError("SerializationException", "request body must be a JSON object")
    if shape is None:
        return params
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "uri" and wire in labels:
            params[name] = labels[wire]
        elif location == "querystring" and wire in query:
            params[name] = _from_text(member, query[wire][-1], name)
        elif location is None and name in payload:
            params[name] = _from_json(member, payload[name], name)
    errors = validate(shape, params)
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise ApiError("ValidationException", f"{len(errors)} validation {noun} detected: " + "; ".join(errors))
    return params


def parse_timestamp(text: str) -> dt.datetime:
    """ISO 8601 (what botocore sends for rest-json) or epoch seconds, as an aware UTC datetime."""
    try:
        value = dt.datetime.fromtimestamp(float(text), dt.timezone.utc)
    except ValueError:
        value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _from_text(shape: Shape, text: str, path: str) -> Any:
    """A query-string or URI value converted to the member's type."""
    try:
        if shape.type_name in ("integer", "long"):
            return int(text)
        if shape.type_name == "timestamp":
            return parse_timestamp(text)
        if shape.type_name == "boolean":
            return {"true": True, "false": False}[text.lower()]
    except (ValueError, KeyError):
        raise ApiError("ValidationException",
                       f"Value '{text}' at '{path}' is not a valid {shape.type_name}") from None
    return text


def _from_json(shape: Shape, value: Any, path: str) -> Any:
    """A JSON body value checked against the member's type (as the real service's deserializer does)."""
    kind = shape.type_name
    expected = {"structure": dict, "map": dict, "list": list, "string": str, "boolean": bool}
    if value is None:
        return None
    if kind in ("integer", "long"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "timestamp":
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            ok = False
        else:
            return parse_timestamp(str(value))
    else:
        ok = isinstance(value, expected.get(kind, object))
    if not ok:
        raise ApiError("SerializationException",
                       f"Value at '{path}' must be of type {kind}, got {type(value).__name__}")
    if kind == "structure":
        # Members the model does not define are ignored, as the real service's deserializer does.
        return {k: _from_json(shape.members[k], v, f"{path}.{k}")
                for k, v in value.items() if k in shape.members}
    if kind == "list":
        return [_from_json(shape.member, v, f"{path}.{i + 1}.member") for i, v in enumerate(value)]
    return value


def validate(shape: Shape, value: Any, path: str = "") -> list[str]:
    """Constraint violations of `value` against `shape`, in the real service's message form."""
    errors: list[str] = []
    meta = shape.metadata
    kind = shape.type_name

    def fail(constraint: str) -> None:
        shown = "null" if value is None else f"'{_show(value)}'"
        errors.append(f"Value {shown} at '{path}' failed to satisfy constraint: Member must {constraint}")

    if kind == "structure":
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(f"Value null at '{_join(path, name)}' failed to satisfy constraint: "
                              f"Member must not be null")
        present = [k for k in shape.members if value.get(k) is not None]
        if meta.get("union") and len(present) != 1:
            fail(f"have exactly one of {sorted(shape.members)} set")
        for name in present:
            errors += validate(shape.members[name], value[name], _join(path, name))
        return errors
    if kind == "list":
        _check_bounds(len(value), meta, "length", fail)
        for i, item in enumerate(value):
            errors += validate(shape.member, item, f"{path}.{i + 1}.member")
        return errors
    if kind == "string":
        _check_bounds(len(value), meta, "length", fail)
        if "enum" in meta and value not in meta["enum"]:
            fail(f"satisfy enum value set: [{', '.join(meta['enum'])}]")
        elif "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            fail(f"satisfy regular expression pattern: {meta['pattern']}")
        return errors
    if kind in ("integer", "long"):
        _check_bounds(value, meta, "value", fail)
    return errors


def _check_bounds(measure: int, meta: Mapping[str, Any], what: str, fail: Any) -> None:
    if "min" in meta and measure < meta["min"]:
        fail(f"have {what} greater than or equal to {meta['min']}")
    if "max" in meta and measure > meta["max"]:
        fail(f"have {what} less than or equal to {meta['max']}")


@functools.lru_cache(maxsize=None)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
