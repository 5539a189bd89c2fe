"""Requests to the local stand-ins: checked against botocore's service models as AWS checks them, and kept.

`violations` finds what the service would refuse (required members, types, lengths, ranges, patterns, enums,
unknown members); `validation_message` phrases it as AWS's ValidationException does, e.g. "1 validation error
detected: Value '0' at 'processingResources.clusterConfig.instanceCount' failed to satisfy constraint: Member must
have value greater than or equal to 1" (wording and paths as in errors reported from the services, e.g.
boto/botocore#3337, 'tags.1.member.value' in list paths). `CallLog` keeps each request as a JSON file.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import sys
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StringShape, StructureShape


@dataclass(frozen=True)
class Violation:
    """One broken constraint. `structural`: an unknown member or a wrong type (the request cannot be built)."""

    path: str
    constraint: str
    value: Any = None
    sensitive: bool = False
    structural: bool = False

    def __str__(self) -> str:
        if self.structural:
            return f"{self.constraint} at '{self.path}'"
        shown = "" if self.sensitive else f" {_rendered(self.value)}"
        return f"Value{shown} at '{self.path}' failed to satisfy constraint: {self.constraint}"


@cache
def operation_model(service: str, operation: str) -> OperationModel:
    """The operation's model from the installed botocore (loaded once per service)."""
    return _service_model(service).operation_model(operation)


@cache
def _service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def violations(operation: OperationModel, params: Mapping[str, Any]) -> list[Violation]:
    """Every way `params` breaks the operation's input shape, in model order."""
    if operation.input_shape is None:
        return []
    return _structure(operation.input_shape, params, "")


def validation_message(found: Sequence[Violation]) -> str:
    """AWS's ValidationException message for these violations."""
    count = len(found)
    return f"{count} validation error{'' if count == 1 else 's'} detected: {'; '.join(map(str, found))}"


def _rendered(value: Any) -> str:
    return "null" if value is None else f"'{_java_text(value)}'"


def _java_text(value: Any) -> str:
    """How the services (Java) print a value: maps as {k=v, ...}, lists as [a, b], booleans lowercase."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}={_java_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_java_text, value)) + "]"
    return str(value)


def _member_path(parent: str, name: str) -> str:
    # The services name members in lowerCamelCase in these paths: InstanceCount → instanceCount.
    member = name[:1].lower() + name[1:]
    return f"{parent}.{member}" if parent else member


def _structure(shape: StructureShape, value: Mapping[str, Any], path: str) -> list[Violation]:
    found: list[Violation] = []
    for name in shape.required_members:
        if value.get(name) is None:
            found.append(Violation(_member_path(path, name), "Member must not be null"))
    for name in value:
        if name not in shape.members:
            found.append(Violation(_member_path(path, name), f'Unknown member "{name}"', structural=True))
    for name, member in shape.members.items():
        if value.get(name) is not None:
            found += _value(member, value[name], _member_path(path, name))
    return found


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "boolean": (bool,),
    "timestamp": (datetime, str, int, float),
    "blob": (bytes, bytearray, str),
    "list": (list, tuple),
    "map": (dict,),
    "structure": (dict,),
}


def _value(shape: Shape, value: Any, path: str) -> list[Violation]:
    expected = _TYPES.get(shape.type_name)
    wrong_bool = isinstance(value, bool) and shape.type_name not in ("boolean",)
    if expected is not None and (not isinstance(value, expected) or wrong_bool):
        return [Violation(path, f"Expected a {shape.type_name}, got {type(value).__name__}", structural=True)]
    if isinstance(shape, StructureShape):
        return _structure(shape, value, path)
    found = _bounds(shape, value, path)
    if isinstance(shape, ListShape):
        for index, item in enumerate(value, start=1):
            if item is not None:
                found += _value(shape.member, item, f"{path}.{index}.member")
    elif isinstance(shape, MapShape):
        found += _map_entries(shape, value, path)
    elif isinstance(shape, StringShape):
        found += _string(shape, value, path)
    return found


def _bounds(shape: Shape, value: Any, path: str) -> list[Violation]:
    """min/max: a length for strings, blobs, lists and maps; a range for numbers."""
    if shape.type_name in ("timestamp", "boolean"):
        return []
    sensitive = bool(shape.metadata.get("sensitive"))
    minimum, maximum = shape.metadata.get("min"), shape.metadata.get("max")
    measured, unit = (value, "value") if isinstance(value, int | float) else (len(value), "length")
    found = []
    if minimum is not None and measured < minimum:
        found.append(Violation(path, f"Member must have {unit} greater than or equal to {minimum}", value, sensitive))
    if maximum is not None and measured > maximum:
        found.append(Violation(path, f"Member must have {unit} less than or equal to {maximum}", value, sensitive))
    return found


def _string(shape: StringShape, value: str, path: str) -> list[Violation]:
    sensitive = bool(shape.metadata.get("sensitive"))
    found = []
    if shape.enum and value not in shape.enum:
        found.append(
            Violation(path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]", value, sensitive)
        )
    pattern = shape.metadata.get("pattern")
    if pattern and compiled_pattern(pattern).fullmatch(value) is None:
        found.append(Violation(path, f"Member must satisfy regular expression pattern: {pattern}", value, sensitive))
    return found


def _map_entries(shape: MapShape, value: Mapping[str, Any], path: str) -> list[Violation]:
    """Scalar keys and values are reported on the map as a whole, as the services do."""
    found: list[Violation] = []
    key_problems = [v for key in value for v in _value(shape.key, key, path)]
    if key_problems:
        listed = ", ".join(sorted({v.constraint for v in key_problems}))
        found.append(Violation(path, f"Map keys must satisfy constraint: [{listed}]", value))
    if isinstance(shape.value, StructureShape | ListShape | MapShape):
        for key, item in value.items():
            found += _value(shape.value, item, f"{path}.{key}")
        return found
    value_problems = [v for item in value.values() for v in _value(shape.value, item, path)]
    if value_problems:
        listed = ", ".join(sorted({v.constraint for v in value_problems}))
        found.append(Violation(path, f"Map value must satisfy constraint: [{listed}]", value))
    return found


# Java regex → Python `re`: the models' patterns are Java regexes, and the services match whole values. What
# Python's `re` does not accept is translated:
# - `\p{L}` and the other one-letter Unicode categories → the category's code point ranges (from unicodedata);
# - `\p{Alnum}` → `a-zA-Z0-9` (Java's POSIX classes are US-ASCII unless UNICODE_CHARACTER_CLASS is set);
# - `\uD800\uDC00-\uDBFF\uDFFF` (a UTF-16 surrogate-pair range: all supplementary characters)
#   → `\U00010000-\U0010FFFF`;
# - `${n,m}` (a quantified end anchor, still just an anchor) → `$`.
_SUPPLEMENTARY = re.compile(r"\\u[dD]800\\u[dD][cC]00-\\u[dD][bB][fF][fF]\\u[dD][fF][fF][fF]")
_QUANTIFIED_END = re.compile(r"\$\{\d+(,\d*)?\}")
_PROPERTY = re.compile(r"\\p\{(\w+)\}")
_POSIX = {"Alnum": "a-zA-Z0-9", "Alpha": "a-zA-Z", "Digit": "0-9", "Upper": "A-Z", "Lower": "a-z"}


@cache
def compiled_pattern(java: str) -> re.Pattern[str]:
    """A botocore (Java) pattern as a Python regex; raises re.error for a construct not translated."""
    translated = _QUANTIFIED_END.sub("$", _SUPPLEMENTARY.sub(r"\\U00010000-\\U0010FFFF", java))
    return re.compile(_with_properties(translated))


def _with_properties(pattern: str) -> str:
    """Replace each `\\p{X}` by its ranges, wrapped in [...] when it stands outside a character class."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        match = _PROPERTY.match(pattern, index)
        if match:
            name = match.group(1)
            ranges = _POSIX.get(name) or _category_ranges()[name]
            out.append(ranges if in_class else f"[{ranges}]")
            index = match.end()
            continue
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


@cache
def _category_ranges() -> dict[str, str]:
    """Each one-letter Unicode general category (L, M, N, P, S, Z, C) as character-class ranges (one pass)."""
    runs: dict[str, list[str]] = {}
    start, current = 0, _category_letter(0)
    for code in range(1, sys.maxunicode + 2):
        category = _category_letter(code) if code <= sys.maxunicode else ""
        if category != current:
            runs.setdefault(current, []).append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start, current = code, category
    return {category: "".join(parts) for category, parts in runs.items()}


def _category_letter(code: int) -> str:
    return unicodedata.category(chr(code))[0]


class CallLog:
    """Every request the stand-ins received, in arrival order, one JSON line each in `<directory>/requests.jsonl`:
    `{"n": 1, "service": "sagemaker", "operation": "CreateProcessingJob", "request": {...}}`.

    A new log starts empty (an earlier run's file is replaced). One background thread writes the lines, so a caller
    (an ingest thread among them) only serialises its request; `close` waits until every line is on disk. One file
    rather than a file per request: a million PutRecords made a million files.
    """

    FILE = "requests.jsonl"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / self.FILE
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="labelflow-call-log", daemon=True)
        self._writer.start()

    def record(self, service: str, operation: str, params: Mapping[str, Any]) -> int:
        """Number the request and queue its line; returns its number."""
        # Serialised now, in the caller's thread: the caller may change its params once the call returns.
        request = json.dumps(params, default=str)
        with self._lock:
            number = next(self._count)
            self._pending.put(
                f'{{"n": {number}, "service": {json.dumps(service)}, "operation": {json.dumps(operation)}, '
                f'"request": {request}}}\n'
            )
        return number

    def close(self) -> None:
        """Write every queued request, then stop the writer."""
        self._pending.put(None)
        self._writer.join()

    def _write(self) -> None:
        with self.path.open("w", encoding="utf-8") as out:
            while (line := self._pending.get()) is not None:
                out.write(line)


def read_calls(directory: Path) -> list[dict[str, Any]]:
    """The requests a CallLog kept in `directory`, in order."""
    with (directory / CallLog.FILE).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]
