"""The spec reference docs stay current, and spec errors read as one line each: field, value, what is allowed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from labelflow.models.spec import DatasetSpec
from labelflow_local.spec_reference import error_lines, field_path, reference, rendered, schema
from tests.conftest import ROOT


def test_the_generated_docs_are_current() -> None:
    # Given the docs generated from the spec models now
    # When they are compared with the committed files (never rewritten here)
    stale = [str(path.relative_to(ROOT)) for path, text in rendered().items() if path.read_text() != text]
    # Then none differs
    assert not stale, f"stale: {', '.join(stale)}: run `make docs`"


def test_the_reference_has_a_row_for_every_field_of_every_model() -> None:
    # Given the spec's JSON Schema
    document = schema()
    # When the reference is rendered
    text = reference(document)
    # Then every model has a section and every field a row
    models = {"DatasetSpec": document, **document["$defs"]}
    for name, model in models.items():
        assert f"## {name}\n" in text
        for field in model["properties"]:
            assert f"| `{field}` |" in text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]


def spec_errors(body: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        DatasetSpec.model_validate_json(json.dumps(body) if not isinstance(body, str) else body)
    return error_lines(caught.value)


def demo_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((ROOT / "demo/datasets/reviews.json").read_text())
    return {**body, **changes}


def test_a_pattern_error_quotes_the_value_and_states_the_rule() -> None:
    # Given a dataset name outside the rule / When validated / Then one line names field, value and rule
    assert spec_errors(demo_body(dataset="My_Data")) == [
        "dataset: 'My_Data' is not allowed: lowercase letters, digits and single hyphens, starting with a letter "
        "(e.g. `churn-2024`)"
    ]


def test_nested_errors_name_their_path_and_list_what_is_allowed() -> None:
    # Given a feature with an unknown impute and a misspelt field, and a label list too short
    features = [{"name": "x", "type": "numeric", "impute": "avg", "colum": "y"}]
    # When validated
    lines = spec_errors(demo_body(features=features, labels=["a"]))
    # Then each error is a line with its path, the value where it is a scalar, and what is allowed
    assert lines == [
        "features[0].colum: not a field of this section; allowed: name, column, type, impute, fill_value, encoding, "
        "scaling, categories, unknown",
        "features[0].impute: Input should be 'mean', 'median', 'most_frequent' or 'constant' (got 'avg')",
        "labels: List should have at least 2 items after validation, not 1",
    ]


def test_cross_field_errors_name_their_section_and_missing_fields_say_required() -> None:
    # Given a categorical feature encoded without categories, and no record id column
    body = demo_body(features=[{"name": "c", "type": "categorical", "encoding": "onehot"}])
    del body["record_id_column"]
    # When validated / Then both read as one line
    assert spec_errors(body) == [
        "record_id_column: required",
        "features[0]: feature 'c': encoding needs a fixed categories list",
    ]


def test_invalid_json_is_one_line() -> None:
    # Given a truncated file / When validated / Then the line says where the JSON breaks
    (line,) = spec_errors('{"dataset": ')
    assert line.startswith("(spec): Invalid JSON:") and "line 1 column" in line


def test_field_paths_read_like_code() -> None:
    assert field_path(("features", 2, "impute")) == "features[2].impute"
    assert field_path(()) == ""
