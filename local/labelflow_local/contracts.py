"""Requests to the local stand-ins: checked against botocore's service models as AWS checks them, and kept.

`violations` finds what the service would refuse (required members, types, lengths, ranges, patterns, enums,
unknown members); `validation_message` phrases it as AWS's ValidationException does, e.g. "1 validation error
detected: Value '0' at 'processingResources.clusterConfig.instanceCount' failed to satisfy constraint: Member must
have value greater than or equal to 1" (wording and paths as in errors reported from the services, e.g.
boto/botocore#3337, 'tags.1.member.value' in list paths). Each operation's input shape is compiled once into
closures over its limits and compiled patterns, so a request costs only its checks; the detailed report is built
only where a check fails. `CallLog` keeps each request as a JSON line.
"""

from __future__ import annotations

import itertools
import json
import math
import queue
import re
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

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
    check = _REQUEST_CHECKS.get(operation) or _compile_request(operation)
    return [Violation(".".join(p.path), p.constraint, p.value, p.sensitive, p.structural) for p in check(params)]


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


class _Problem(NamedTuple):
    """A violation with its path relative to the value checked, as parts joined by '.' once at the top."""

    path: tuple[str, ...]
    constraint: str
    value: Any = None
    sensitive: bool = False
    structural: bool = False

    def under(self, *parts: str) -> _Problem:
        return self._replace(path=(*parts, *self.path))


# A shape compiled once: the checks of one value against it, returning nothing (an empty tuple) when it conforms.
_Check = Callable[[Any], Sequence[_Problem]]
_OK: tuple[_Problem, ...] = ()
_REQUEST_CHECKS: dict[OperationModel, _Check] = {}
_COMPILING = threading.Lock()


def _compile_request(operation: OperationModel) -> _Check:
    """The operation's input check, compiled on its first request (the request itself is a mapping, not typed)."""
    with _COMPILING:
        if (check := _REQUEST_CHECKS.get(operation)) is None:
            shape = operation.input_shape
            check = _REQUEST_CHECKS[operation] = (
                _Compiler().structure(shape, typed=False) if shape is not None else _no_input
            )
    return check


def _no_input(params: Mapping[str, Any]) -> Sequence[_Problem]:
    return _OK


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
_UNBOUNDED = ("timestamp", "boolean")
# At most this many conforming strings of at most this length remembered per string shape.
_REMEMBERED_VALUES, _REMEMBERED_LENGTH = 4096, 256


@dataclass(frozen=True)
class _Limits:
    """A shape's own constraints (type, min/max, enum, pattern), checked on one value in the services' order."""

    type_name: str
    expected: tuple[type, ...] | None
    minimum: float
    maximum: float
    enum: tuple[str, ...]
    pattern: str | None
    sensitive: bool

    @classmethod
    def of(cls, shape: Shape) -> _Limits:
        bounded = shape.type_name not in _UNBOUNDED
        minimum, maximum = shape.metadata.get("min"), shape.metadata.get("max")
        return cls(
            type_name=shape.type_name,
            expected=_TYPES.get(shape.type_name),
            minimum=minimum if bounded and minimum is not None else -math.inf,
            maximum=maximum if bounded and maximum is not None else math.inf,
            enum=tuple(shape.enum) if isinstance(shape, StringShape) else (),
            pattern=shape.metadata.get("pattern") if isinstance(shape, StringShape) else None,
            sensitive=bool(shape.metadata.get("sensitive")),
        )

    def wrong_type(self, value: Any) -> _Problem | None:
        """A value that cannot be sent as this type (a bool is no number: it is an int in Python)."""
        if self.expected is None:
            return None
        if isinstance(value, self.expected) and (self.type_name == "boolean" or not isinstance(value, bool)):
            return None
        return _Problem((), f"Expected a {self.type_name}, got {type(value).__name__}", structural=True)

    def bounds(self, value: Any) -> list[_Problem]:
        """min/max: a length for strings, blobs, lists and maps; a range for numbers."""
        measured, unit = _measured(value), "value" if isinstance(value, int | float) else "length"
        found = []
        if measured < self.minimum:
            found.append(self._broken(f"Member must have {unit} greater than or equal to {self.minimum}", value))
        if measured > self.maximum:
            found.append(self._broken(f"Member must have {unit} less than or equal to {self.maximum}", value))
        return found

    def string(self, value: str) -> list[_Problem]:
        found = []
        if self.enum and value not in self.enum:
            found.append(self._broken(f"Member must satisfy enum value set: [{', '.join(self.enum)}]", value))
        if self.pattern and compiled_pattern(self.pattern).fullmatch(value) is None:
            found.append(self._broken(f"Member must satisfy regular expression pattern: {self.pattern}", value))
        return found

    def scalar(self, value: Any) -> list[_Problem]:
        """Every problem of a value that is not a structure, list or map."""
        if wrong := self.wrong_type(value):
            return [wrong]
        found = self.bounds(value) if self.type_name not in _UNBOUNDED else []
        return found + self.string(value) if self.type_name == "string" else found

    def _broken(self, constraint: str, value: Any) -> _Problem:
        return _Problem((), constraint, value, self.sensitive)


class _Compiler:
    """Compiles shapes into checks, each shape once; a recursive shape's check refers to itself by key."""

    def __init__(self) -> None:
        self._checks: dict[tuple[str, str], _Check] = {}

    def check(self, shape: Shape) -> _Check:
        # Member traits are merged into a shape's metadata, so one name may carry different limits.
        key = (shape.name, repr(sorted(shape.metadata.items())))
        if (known := self._checks.get(key)) is None:
            self._checks[key] = lambda value: self._checks[key](value)
            known = self._checks[key] = self._compile(shape)
        return known

    def _compile(self, shape: Shape) -> _Check:
        if isinstance(shape, StructureShape):
            return self.structure(shape)
        if isinstance(shape, ListShape):
            return self.list(shape)
        if isinstance(shape, MapShape):
            return self.map(shape)
        if isinstance(shape, StringShape):
            return _string_check(_Limits.of(shape))
        return _scalar_check(_Limits.of(shape))

    def structure(self, shape: StructureShape, typed: bool = True) -> _Check:
        """A structure's members, missing, unknown and present; `typed`: the value must be a dict (not a request)."""
        limits = _Limits.of(shape)
        required = frozenset(shape.required_members)
        checks = {name: self.check(member) for name, member in shape.members.items()}
        in_order = self._members_in_order(shape, checks)

        def check(value: Any) -> Sequence[_Problem]:
            if typed and type(value) is not dict and (wrong := limits.wrong_type(value)):
                return (wrong,)
            # One pass in the value's own order finds whether anything is wrong; only then, the report in model order.
            if value.keys() >= required:
                for name, item in value.items():
                    member = checks.get(name)
                    if member is None or (member(item) if item is not None else name in required):
                        break
                else:
                    return _OK
            return in_order(value)

        return check

    @staticmethod
    def _members_in_order(shape: StructureShape, checks: dict[str, _Check]) -> _Check:
        """Every problem of a structure's members: missing, then unknown, then each member's, in model order."""
        required = tuple((name, _member_name(name)) for name in shape.required_members)
        members = tuple((name, _member_name(name), check) for name, check in checks.items())

        def check(value: Mapping[str, Any]) -> Sequence[_Problem]:
            found = [_Problem((path,), "Member must not be null") for name, path in required if value.get(name) is None]
            found += [_unknown(name) for name in value if name not in checks]
            for name, path, member in members:
                if (item := value.get(name)) is not None and (problems := member(item)):
                    found += [problem.under(path) for problem in problems]
            return found

        return check

    def list(self, shape: ListShape) -> _Check:
        limits, member = _Limits.of(shape), self.check(shape.member)

        def check(value: Any) -> Sequence[_Problem]:
            if type(value) is not list and (wrong := limits.wrong_type(value)):
                return (wrong,)
            found = _OK if limits.minimum <= len(value) <= limits.maximum else limits.bounds(value)
            for index, item in enumerate(value, start=1):
                if item is not None and (problems := member(item)):
                    found = [*found, *(problem.under(str(index), "member") for problem in problems)]
            return found

        return check

    def map(self, shape: MapShape) -> _Check:
        limits, key_check, value_check = _Limits.of(shape), self.check(shape.key), self.check(shape.value)
        # Scalar keys and values are reported on the map as a whole, as the services do.
        scalar_values = not isinstance(shape.value, StructureShape | ListShape | MapShape)

        def check(value: Any) -> Sequence[_Problem]:
            if type(value) is not dict and (wrong := limits.wrong_type(value)):
                return (wrong,)
            if (
                limits.minimum <= len(value) <= limits.maximum
                and not any(map(key_check, value))
                and not any(map(value_check, value.values()))
            ):
                return _OK
            found = limits.bounds(value)
            if broken := _constraints(key_check, value):
                found.append(_Problem((), f"Map keys must satisfy constraint: [{broken}]", value))
            if scalar_values:
                if broken := _constraints(value_check, value.values()):
                    found.append(_Problem((), f"Map value must satisfy constraint: [{broken}]", value))
            else:
                found += [problem.under(str(key)) for key, item in value.items() for problem in value_check(item)]
            return found or _OK

        return check


def _member_name(name: str) -> str:
    # The services name members in lowerCamelCase in these paths: InstanceCount → instanceCount.
    return name[:1].lower() + name[1:]


def _unknown(name: str) -> _Problem:
    return _Problem((_member_name(name),), f'Unknown member "{name}"', structural=True)


def _constraints(check: _Check, values: Iterable[Any]) -> str:
    """The distinct constraints the values break, sorted and listed as the services list them."""
    return ", ".join(sorted({problem.constraint for value in values for problem in check(value)}))


def _string_check(limits: _Limits) -> _Check:
    """A string's checks; a conforming value costs one pass of cheap tests, the rest only when one fails."""
    allowed = frozenset(limits.enum) or None
    matches = _fullmatch(limits.pattern) if limits.pattern else None
    low, high = limits.minimum, limits.maximum
    # Values seen to conform (feature names, group names: the same few in every PutRecord) skip the regex.
    conforming: set[str] = set()

    def check(value: Any) -> Sequence[_Problem]:
        if type(value) is not str:
            return limits.scalar(value)
        if value in conforming:
            return _OK
        if (
            low <= len(value) <= high
            and (allowed is None or value in allowed)
            and (matches is None or matches(value) is not None)
        ):
            if len(value) <= _REMEMBERED_LENGTH and len(conforming) < _REMEMBERED_VALUES:
                conforming.add(value)
            return _OK
        return limits.scalar(value)

    return check


def _scalar_check(limits: _Limits) -> _Check:
    """A number's, blob's, boolean's or timestamp's checks (a type the table does not know: always in full)."""
    expected, boolean, low, high = limits.expected, limits.type_name == "boolean", limits.minimum, limits.maximum
    bounded = limits.type_name not in _UNBOUNDED

    def check(value: Any) -> Sequence[_Problem]:
        if (
            expected is not None
            and isinstance(value, expected)
            and (boolean or not isinstance(value, bool))
            and (not bounded or low <= _measured(value) <= high)
        ):
            return _OK
        return limits.scalar(value)

    return check


def _measured(value: Any) -> float:
    """What min/max bound: a number's value, anything else's length."""
    return value if isinstance(value, int | float) else len(value)


def _fullmatch(pattern: str) -> Callable[[str], re.Match[str] | None]:
    """The pattern's matcher; a pattern not translated (re.error, or KeyError for an unknown `\\p{X}`) raises on use."""
    try:
        return compiled_pattern(pattern).fullmatch
    except (re.error, KeyError):
        return lambda value: compiled_pattern(pattern).fullmatch(value)


# Java regex → Python `re`: the models' patterns are Java regexes, and the services match whole values. What
# Python's `re` does not accept is translated:
# - `\p{L}` and the other one-letter Unicode categories → the category's code point ranges (from unicodedata);
# - `\p{Alnum}` → `a-zA-Z0-9` (Java's POSIX classes are US-ASCII unless UNICODE_CHARACTER_CLASS is set), `\p{ASCII}`
#   → `\x00-\x7F` (java.util.regex.Pattern's table of POSIX classes; Step Functions' TraceHeader uses it);
# - `\uD800\uDC00-\uDBFF\uDFFF` (a UTF-16 surrogate-pair range: all supplementary characters)
#   → `\U00010000-\U0010FFFF`;
# - `${n,m}` (a quantified end anchor, still just an anchor) → `$`.
_SUPPLEMENTARY = re.compile(r"\\u[dD]800\\u[dD][cC]00-\\u[dD][bB][fF][fF]\\u[dD][fF][fF][fF]")
_QUANTIFIED_END = re.compile(r"\$\{\d+(,\d*)?\}")
_PROPERTY = re.compile(r"\\p\{(\w+)\}")
_POSIX = {
    "Alnum": "a-zA-Z0-9",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Upper": "A-Z",
    "Lower": "a-z",
    "ASCII": "\\x00-\\x7F",
}


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


# A number, service, operation and the request as JSON; one encoder for every request (json.dumps builds one a call).
_Queued = tuple[int, str, str, str]
_ENCODE = json.JSONEncoder(default=str).encode


def _line(number: int, service: str, operation: str, request: str) -> str:
    named = f'"service": {json.dumps(service)}, "operation": {json.dumps(operation)}'
    return f'{{"n": {number}, {named}, "request": {request}}}\n'


class CallLog:
    """Every request the stand-ins received, in arrival order, one JSON line each in `<directory>/requests.jsonl`:
    `{"n": 1, "service": "sagemaker", "operation": "CreateProcessingJob", "request": {...}}`.

    A new log starts empty (an earlier run's file is replaced). One background thread writes the lines, so a caller
    (an ingest thread among them) only serialises its request; `close` waits until every line is on disk. One file
    rather than a file per request: a million PutRecords made a million files. No lock: a caller takes its number
    from an itertools.count (one C call, atomic under the GIL) and queues it; the writer restores number order.
    """

    FILE = "requests.jsonl"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / self.FILE
        self._count = itertools.count(1)
        self._pending: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="labelflow-call-log", daemon=True)
        self._writer.start()

    def record(self, service: str, operation: str, params: Mapping[str, Any]) -> int:
        """Number the request and queue it; returns its number."""
        # Serialised now, in the caller's thread: the caller may change its params once the call returns.
        number = next(self._count)
        self._pending.put((number, service, operation, _ENCODE(params)))
        return number

    def close(self) -> None:
        """Write every queued request, then stop the writer."""
        self._pending.put(None)
        self._writer.join()

    def _write(self) -> None:
        # Two callers may queue in the other order than they took their numbers: a line waits for its predecessors.
        waiting: dict[int, _Queued] = {}
        following = 1
        with self.path.open("w", encoding="utf-8") as out:
            while (queued := self._pending.get()) is not None:
                waiting[queued[0]] = queued
                while (ready := waiting.pop(following, None)) is not None:
                    out.write(_line(*ready))
                    following += 1
            out.writelines(_line(*waiting[number]) for number in sorted(waiting))


def read_calls(directory: Path) -> list[dict[str, Any]]:
    """The requests a CallLog kept in `directory`, in order."""
    with (directory / CallLog.FILE).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]
