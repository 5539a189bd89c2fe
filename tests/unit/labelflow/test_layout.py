"""layout.py: dataset keys, run ids, SageMaker job names and Step Functions execution names."""

from __future__ import annotations

import re

import pytest

from labelflow.layout import (
    RunLayout,
    code_prefix,
    dataset_of,
    dataset_spec_keys,
    execution_name,
    feature_group_name,
    job_name,
    run_id_for,
    transform_state_key,
)

SAGEMAKER_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EXECUTION_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")
# CreateFeatureGroup's FeatureGroupName (botocore's sagemaker model), at most 64 characters.
FEATURE_GROUP_NAME = re.compile(r"^[a-zA-Z0-9]([_-]*[a-zA-Z0-9]){0,63}$")


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("raw/reviews/data.csv", "reviews"),
        ("raw/reviews/2024/01/data.csv", "reviews"),
        ("raw/my-reviews/data.csv", "my-reviews"),
        ("raw/" + "a" * 63 + "/data.csv", "a" * 63),
        ("raw/reviews/", None),
        ("raw/reviews/sub/", None),
        ("raw/data.csv", None),
        ("raw//data.csv", None),
        ("raw/1reviews/data.csv", None),
        ("raw/Reviews/data.csv", None),
        ("raw/my_reviews/data.csv", None),
        ("raw/my--reviews/data.csv", None),
        ("raw/reviews-/data.csv", None),
        ("raw/" + "a" * 64 + "/data.csv", None),
        ("Raw/reviews/data.csv", None),
        ("config/reviews/data.csv", None),
    ],
)
def test_dataset_of(key: str, dataset: str | None) -> None:
    # Given an object key
    # When its dataset is derived / Then only raw/<dataset name>/<file> keys have one (layout.DATASET_NAME_PATTERN)
    assert dataset_of(key) == dataset


def test_run_id_is_deterministic_and_short() -> None:
    # Given one object version
    run_id = run_id_for("bucket", "raw/reviews/a.csv", "v1")

    # When its run id is computed again, and for other versions, keys and buckets
    # Then it is stable, 20 hex chars, and any change in the triple changes it
    assert run_id == run_id_for("bucket", "raw/reviews/a.csv", "v1")
    assert re.fullmatch(r"[0-9a-f]{20}", run_id)
    assert run_id != run_id_for("bucket", "raw/reviews/a.csv", "v2")
    assert run_id != run_id_for("bucket", "raw/reviews/b.csv", "v1")
    assert run_id != run_id_for("other-bucket", "raw/reviews/a.csv", "v1")


def test_run_id_fields_cannot_run_into_each_other() -> None:
    # Given two triples whose plain concatenation would be equal
    # When their run ids are computed / Then the separator keeps them apart
    assert run_id_for("ab", "c", "v") != run_id_for("a", "bc", "v")


# -------------------------------------------------------------------------- job_name
def test_job_name_joins_parts_with_hyphens_and_replaces_underscores() -> None:
    # Given parts with underscores and other unsafe characters
    # When a job name is built / Then runs of unsafe characters become one hyphen
    assert job_name("lf", "my_data__set", "abc.def") == "lf-my-data-set-abc-def"


def test_job_name_strips_leading_and_trailing_hyphens() -> None:
    # Given parts that start and end with unsafe characters
    # When a job name is built / Then no hyphen is left at either end
    assert job_name("_lead", "trail_") == "lead-trail"


def test_long_job_names_are_cut_to_63_chars() -> None:
    # Given a 64-char dataset name (the longest a spec allows) and a run id
    name = job_name("lf", "d" * 64, "0123456789abcdef0123", "review")

    # When the job name is built / Then it fits SageMaker's limit and pattern
    assert len(name) == 63
    assert SAGEMAKER_JOB_NAME.match(name)
    assert name.startswith("lf-ddd")


def test_a_shortened_job_name_keeps_its_unique_tail_and_no_trailing_hyphen() -> None:
    # Given a dataset name whose shortening would end on a hyphen, and a run id
    name = job_name("lf", "a" * 50 + "-" + "b" * 12, "0123456789abcdef0123")

    # When the job name is built / Then the run id survives whole and no hyphen dangles before the hash
    assert len(name) <= 63 and name.endswith("-0123456789abcdef0123")
    assert "--" not in name
    assert SAGEMAKER_JOB_NAME.match(name)


@pytest.mark.parametrize(
    "parts",
    [
        ("lf", "reviews", "afbcf3d3f25e2c3dba66", "bdbd359a"),
        ("lf", "x_" * 40, "run"),
        ("lf", "a" * 61, "_", "b"),
        ("lf", "A_B-c", "d--e"),
    ],
)
def test_job_names_always_match_the_sagemaker_pattern(parts: tuple[str, ...]) -> None:
    # Given any parts
    name = job_name(*parts)

    # When a job name is built / Then SageMaker accepts it
    assert len(name) <= 63
    assert "_" not in name
    assert SAGEMAKER_JOB_NAME.match(name), name


# -------------------------------------------------------------------- execution_name
def test_execution_name_is_dataset_and_run_id() -> None:
    # Given a dataset and a run id
    # When the execution name is built / Then it is "<dataset>-<run_id>"
    assert execution_name("reviews", "afbcf3d3f25e2c3dba66") == "reviews-afbcf3d3f25e2c3dba66"


def test_execution_name_fits_80_chars() -> None:
    # Given the longest dataset name a spec allows
    name = execution_name("D" * 64, "0123456789abcdef0123")

    # When the execution name is built / Then it fits Step Functions' limit and alphabet
    assert len(name) <= 80
    assert EXECUTION_NAME.match(name)


# ---------------------------------------------------------------------------- keys
def test_run_layout_keys_live_under_the_run_prefix() -> None:
    # Given one run's layout
    layout = RunLayout("reviews", "r1")

    # When its keys are read / Then each lives under runs/<dataset>/<run_id>/
    assert layout.prefix == "runs/reviews/r1/"
    assert layout.input_key("a.csv") == "runs/reviews/r1/input/data/a.csv"
    assert layout.spec_key == "runs/reviews/r1/input/spec/spec.json"
    assert layout.processed_prefix("0123456789abcdef-rest") == "runs/reviews/r1/processed/0123456789abcdef/"
    assert layout.review_manifest_key == "runs/reviews/r1/labeling/review.manifest"
    assert layout.review_output_prefix == "runs/reviews/r1/labeling/output/"
    assert layout.labeled_key == "runs/reviews/r1/labeled/labeled.jsonl"
    assert layout.run_manifest_key == "runs/reviews/r1/run.json"


def test_config_and_code_keys() -> None:
    # Given a dataset and a code hash
    # When their keys are read / Then they follow the config and artifact prefixes
    assert dataset_spec_keys("reviews") == ["config/datasets/reviews.json"]
    assert code_prefix("f" * 64) == "artifacts/code/" + "f" * 64 + "/"


# ------------------------------------------------------------------ feature groups and state
def test_feature_group_name_is_the_stack_prefix_and_the_dataset() -> None:
    # Given a stack name and a dataset
    # When the dataset's feature group is named / Then it is "<stack>-<dataset>", so IAM can grant "<stack>-*"
    assert feature_group_name("labelflow", "reviews") == "labelflow-reviews"


def test_a_long_dataset_name_is_shortened_and_the_prefix_kept_whole() -> None:
    # Given the longest dataset names under a long stack name
    names = {feature_group_name("p" * 53, "d" * 63 + suffix) for suffix in ("", "-x")}

    # When their groups are named / Then each fits Feature Store's limit, keeps the prefix and stays distinct
    assert len(names) == 2
    for name in names:
        assert len(name) <= 64 and name.startswith("p" * 53 + "-") and FEATURE_GROUP_NAME.match(name)


def test_a_stack_name_too_long_to_prefix_a_group_is_refused() -> None:
    # Given a stack name that leaves no room for a dataset
    # When a group is named / Then it is refused with the reason
    with pytest.raises(ValueError, match="too long"):
        feature_group_name("p" * 60, "d" * 20)


def test_transform_state_key_is_per_dataset_and_fingerprint() -> None:
    # Given a dataset and a spec fingerprint
    # When the published state's key is read / Then it lives under artifacts/state/<dataset>/<fingerprint>/
    assert transform_state_key("reviews", "f" * 64) == "artifacts/state/reviews/" + "f" * 64 + "/state.json"


def test_every_run_of_the_longest_dataset_name_gets_its_own_job_and_execution_names() -> None:
    # Given the longest dataset name the spec allows and two runs of it (names are unique per account and
    # Region, and labeling job names case-insensitively)
    dataset = "d" * 62 + "e"
    runs = ("0123456789abcdef0123", "0123456789abcdef0124")

    # When their job and execution names are built
    processing = {job_name("lf", dataset, run, "process") for run in runs}
    review = {job_name("lf", dataset, run, "review").lower() for run in runs}
    executions = {execution_name(dataset, run) for run in runs}

    # Then no two runs share one, and each keeps its run id whole
    assert len(processing) == len(review) == len(executions) == 2
    assert all(any(run in name for run in runs) for name in processing | review | executions)
