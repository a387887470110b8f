"""Deterministic Beam coders for the records that flow between stages.

Without a registered coder Beam pickles every ``Transcript``, ``BatchRecord``, ``Summary`` and
``Failure`` it moves between stages. These coders write an element's dataclass fields, in
declaration order, so equal elements always give equal bytes:

- datetimes as ISO 8601 strings (offset kept), ``Turn`` tuples as tuples;
- mappings (metadata, model input, insights) with sorted keys, through Beam's deterministic
  primitives coder (about as fast as pickle);
- an element that coder refuses (text with lone surrogates, mapping values or keys it cannot
  order) as compact JSON instead: values JSON has no type for are written as ``str(value)``,
  which is what every consumer of them (the index sidecar, the ``metadata`` column) writes
  anyway, and lone surrogates round-trip unchanged.

Importing this module registers the coders with Beam's coder registry; a PCollection uses them
when its element type is declared: ``with_output_types`` for a transform's main output,
``typed_output`` for a ParDo's tagged outputs (the failure rows, the records to retry, defer or
call on demand).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Callable

from apache_beam import coders, pvalue
from apache_beam.typehints.native_type_compatibility import convert_to_beam_type

from transforms.core.model import BatchRecord, Failure, Summary, Transcript, Turn

Converter = tuple[Callable[[Any], Any], Callable[[Any], Any]]  # (to JSON, from JSON)


def _same(value: Any) -> Any:
    return value


def _datetime_out(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _datetime_in(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _turns_out(turns: tuple[Turn, ...]) -> tuple[tuple[Any, ...], ...]:
    return tuple((t.speaker, t.text, t.start, t.end) for t in turns)


def _turns_in(turns: Any) -> tuple[Turn, ...]:
    return tuple(Turn(*t) for t in turns)


def _converter(annotation: Any) -> Converter:
    """How a field of this annotation (a string: model.py postpones annotations) is written."""
    text = str(annotation)
    if "datetime" in text:
        return _datetime_out, _datetime_in
    if "Turn" in text:
        return _turns_out, _turns_in
    return _same, _same


_PRIMITIVES = coders.FastPrimitivesCoder().as_deterministic_coder("bedrock_batch records")
_AS_PRIMITIVES, _AS_JSON = b"P", b"J"  # the first byte says which encoding follows


def _json(value: Any) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                          default=str)
    except TypeError:
        # Keys of mixed types cannot be sorted: normalize them to the strings JSON makes of them
        # (as every consumer's JSON would) and sort those.
        normalized = json.loads(json.dumps(value, default=str))
        text = json.dumps(normalized, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


class DataclassCoder(coders.Coder):
    """A deterministic coder for one of the pipeline's frozen dataclasses (see the module doc).

    Args:
        cls: The dataclass whose instances it encodes.
    """

    def __init__(self, cls: type) -> None:
        self._cls = cls
        self._fields = tuple((f.name, *_converter(f.type)) for f in dataclasses.fields(cls))

    def encode(self, value: Any) -> bytes:
        """The element's fields as deterministic primitives, or as JSON when those refuse them.

        Args:
            value: An instance of the coder's dataclass.
        """
        fields = tuple(out(getattr(value, name)) for name, out, _ in self._fields)
        try:
            return _AS_PRIMITIVES + _PRIMITIVES.encode(fields)
        except (TypeError, UnicodeEncodeError):
            return _AS_JSON + _json(fields)

    def decode(self, encoded: bytes) -> Any:
        """The element ``encode`` wrote.

        Args:
            encoded: Bytes from ``encode``.
        """
        if encoded[:1] == _AS_PRIMITIVES:
            values = _PRIMITIVES.decode(encoded[1:])
        else:
            values = json.loads(encoded[1:].decode("utf-8", "surrogatepass"))
        return self._cls(**{name: back(value)
                            for (name, _, back), value in zip(self._fields, values)})

    def is_deterministic(self) -> bool:
        """True: fields in a fixed order, mappings with sorted keys, either encoding."""
        return True

    def to_type_hint(self) -> type:
        """The dataclass the coder encodes."""
        return self._cls

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._cls is other._cls  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._cls))

    def __repr__(self) -> str:
        return f"DataclassCoder({self._cls.__name__})"


class TranscriptCoder(DataclassCoder):
    """Deterministic coder of ``Transcript``."""

    def __init__(self) -> None:
        super().__init__(Transcript)


class BatchRecordCoder(DataclassCoder):
    """Deterministic coder of ``BatchRecord``."""

    def __init__(self) -> None:
        super().__init__(BatchRecord)


class SummaryCoder(DataclassCoder):
    """Deterministic coder of ``Summary`` (every field, including any added later)."""

    def __init__(self) -> None:
        super().__init__(Summary)


class FailureCoder(DataclassCoder):
    """Deterministic coder of ``Failure``."""

    def __init__(self) -> None:
        super().__init__(Failure)


for _cls, _coder in ((Transcript, TranscriptCoder), (BatchRecord, BatchRecordCoder),
                     (Summary, SummaryCoder), (Failure, FailureCoder)):
    coders.registry.register_coder(_cls, _coder)


def typed_output(outputs: pvalue.DoOutputsTuple, tag: str, element_type: type) -> pvalue.PCollection:
    """The tagged output ``tag`` of a ParDo, declared to hold ``element_type``, so that Beam
    encodes it with the coder registered for that type.

    ``with_output_types`` types a ParDo's main output only: Beam takes no type hints for tagged
    outputs yet (apache/beam#18957) and leaves them ``Any``, which it encodes by pickling.

    Args:
        outputs: The outputs of a ``ParDo(...).with_outputs(...)``.
        tag: The tagged output's name.
        element_type: What that output holds (e.g. ``Failure``, or ``Tuple[str, int]``).
    """
    pcoll = outputs[tag]
    # Before anything consumes it: the coder is read from the element type when the pipeline
    # is translated, and a consumer's type check reads it when it is applied. As Beam's own
    # type (typing.Tuple -> typehints.Tuple), as with_output_types stores it.
    pcoll.element_type = convert_to_beam_type(element_type)
    return pcoll
