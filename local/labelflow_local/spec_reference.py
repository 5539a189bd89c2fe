"""The dataset spec's fields, for people: the reference docs generated from the models, and one-line errors.

`python -m labelflow_local.spec_reference` (`make docs`) writes docs/spec.schema.json (the JSON Schema of
DatasetSpec) and docs/spec-reference.md (a table per model); a test fails when either is stale.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from labelflow.models.spec import DatasetSpec
from labelflow_local.template import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
SCHEMA_PATH = DOCS / "spec.schema.json"
REFERENCE_PATH = DOCS / "spec-reference.md"
_SHOWN_MAX = 60


# --- one line per validation error ------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """The type inside Annotated[...] and `X | None`."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _unwrap(kept[0]) if len(kept) == 1 else annotation
    return annotation


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that holds the field at `loc`, and that field (None where the path leaves the models)."""
    current: Any = model
    holder: type[BaseModel] | None = None
    field: FieldInfo | None = None
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            holder, field = current, current.model_fields.get(part)
            if field is None:
                return holder, None
            current = field.annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return None, None
    return holder, field


def field_path(loc: tuple[int | str, ...]) -> str:
    """`features[2].impute` for ('features', 2, 'impute')."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _shown(value: Any) -> str | None:
    """A short rendering of a scalar input; None for objects and lists (their fields are named instead)."""
    if isinstance(value, dict | list):
        return None
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


def error_line(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One validation error as `<field path>: <what is wrong> (got <value>)`, naming what is allowed."""
    loc = tuple(error["loc"])
    path = field_path(loc) or "(spec)"
    message = error["msg"].removeprefix("Value error, ")
    got = _shown(error.get("input"))
    if error["type"] == "extra_forbidden":
        holder, _ = _walk(model, loc)
        allowed = ", ".join(holder.model_fields) if holder else "?"
        return f"{path}: not a field of this section; allowed: {allowed}"
    if error["type"] == "missing":
        return f"{path}: required"
    if error["type"] in ("string_pattern_mismatch", "string_too_long", "string_too_short"):
        _, field = _walk(model, loc)
        if field is not None and field.description:
            if error["type"] == "string_pattern_mismatch":
                return f"{path}: {got} is not allowed: {field.description}"
            message = f"{message}: {field.description}"
    return f"{path}: {message}" + (f" (got {got})" if got is not None and error["type"] != "json_invalid" else "")


def error_lines(exc: ValidationError, model: type[BaseModel] = DatasetSpec) -> list[str]:
    return [error_line(error, model) for error in exc.errors(include_url=False)]


# --- the reference ----------------------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    return DatasetSpec.model_json_schema()


def _type_of(prop: dict[str, Any]) -> str:
    """A property's JSON Schema type, in words: `string (length 1-63)`, `list of string`, `"csv" | "jsonl"`."""
    if "$ref" in prop:
        name = _ref_name(prop)
        return f"[{name}](#{name.lower()})"
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "anyOf" in prop:
        return " or ".join(_type_of(option) for option in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(prop.get('items', {}))}" + _range(prop, "minItems", "maxItems", " items")
    if kind == "object" and "additionalProperties" in prop:
        return f"map of string to {_type_of(prop['additionalProperties'])}"
    limits = [_range(prop, "minLength", "maxLength", " chars"), _range(prop, "minimum", "maximum", "")]
    if "exclusiveMaximum" in prop:
        limits.append(f" (below {prop['exclusiveMaximum']})")
    if "pattern" in prop:
        limits.append(f" matching `{prop['pattern']}`")
    return str(kind) + "".join(limits)


def _range(prop: dict[str, Any], low: str, high: str, unit: str) -> str:
    def units(count: Any) -> str:
        return f"{count}{unit.removesuffix('s') if count == 1 else unit}"

    if prop.get(low) is not None and prop.get(low) == prop.get(high):
        return f" (exactly {units(prop[low])})"
    if low in prop and high in prop:
        return f" ({prop[low]} to {units(prop[high])})"
    if low in prop:
        return " (non-empty)" if unit and prop[low] == 1 else f" (at least {units(prop[low])})"
    return f" (at most {units(prop[high])})" if high in prop else ""


def _ref_name(prop: dict[str, Any]) -> str:
    return str(prop["$ref"]).rsplit("/", 1)[-1]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return ""
    if "default" not in prop:
        return "empty"
    if isinstance(prop["default"], dict):
        return "its defaults"
    return f"`{json.dumps(prop['default'])}`"


def _table(name: str, model: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", ""]
    if model.get("description"):
        lines += [_cell(model["description"]), ""]
    lines += ["| field | type | default | required | description |", "| --- | --- | --- | --- | --- |"]
    required = set(model.get("required", []))
    for field, prop in model.get("properties", {}).items():
        row = [f"`{field}`", _type_of(prop), _default(prop, field in required), "yes" if field in required else "no"]
        lines.append("| " + " | ".join(row) + f" | {_cell(prop.get('description', ''))} |")
    return [*lines, ""]


def _models_in_order(document: dict[str, Any]) -> list[str]:
    """The nested models in the order the spec's fields first name them."""
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node and _ref_name(node) not in found:
                found.append(_ref_name(node))
                visit(document["$defs"][_ref_name(node)])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document.get("properties", {}))
    return found + sorted(set(document.get("$defs", {})) - set(found))


def reference(document: dict[str, Any]) -> str:
    """docs/spec-reference.md: a table per model, the top-level spec first."""
    lines = [
        "# Dataset spec reference",
        "",
        "<!-- Generated from the pydantic models in layers/labelflow/labelflow/models/spec.py by `make docs`:",
        "     edit the models' Field descriptions, not this file. -->",
        "",
        "A dataset spec is a JSON file, `config/datasets/<dataset>.json` in the data bucket. "
        "`labelflow init` writes one from a sample of your data and `labelflow validate` checks it; "
        "the JSON Schema is [spec.schema.json](spec.schema.json).",
        "",
    ]
    lines += _table(document.get("title", "DatasetSpec"), document)
    for name in _models_in_order(document):
        lines += _table(name, document["$defs"][name])
    return "\n".join(lines).rstrip("\n") + "\n"


def rendered() -> dict[Path, str]:
    """Every generated docs file and its content."""
    document = schema()
    return {SCHEMA_PATH: json.dumps(document, indent=2) + "\n", REFERENCE_PATH: reference(document)}


def undocumented(document: dict[str, Any]) -> list[str]:
    """`Model.field` for every field without a description."""
    models = {document.get("title", "DatasetSpec"): document, **document.get("$defs", {})}
    return [
        f"{name}.{field}"
        for name, model in models.items()
        for field, prop in model.get("properties", {}).items()
        if not prop.get("description")
    ]


def main() -> int:
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
