"""The `labelflow` command as users run it: invoke without Docker, run a file locally, query the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelflow_local.cli import main
from tests.conftest import EVENTS, ROOT

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"


def test_invoke_runs_a_handler_on_its_sample_event(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the sample pre-annotation event
    # When `labelflow invoke` runs the function on it
    code = main(["invoke", "gt_pre_annotation", "-e", str(EVENTS / "gt_pre_annotation.json")])
    # Then it prints the handler's response
    response = json.loads(capsys.readouterr().out)
    assert code == 0 and set(response["taskInput"]) == {"text", "labels", "record_id", "header"}


def test_invoke_reaches_moto_with_the_template_environment(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the PlanProcessing event, whose handler needs S3 objects and its template settings
    # When it is invoked without Docker
    code = main(["invoke", "PlanProcessingFunction", "-e", str(EVENTS / "plan_processing.json")])
    # Then the plan uses the image the template defaults to, and the seeded objects were found
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and "sagemaker-scikit-learn" in plan["processing_job"]["AppSpecification"]["ImageUri"]


def test_invoke_names_the_known_functions_when_one_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    # When an unknown function is invoked / Then the error lists the real ones
    assert main(["invoke", "nope", "-e", str(EVENTS / "gt_pre_annotation.json")]) == 2
    assert "known: finalize_run, gt_post_annotation" in capsys.readouterr().err


def test_run_local_then_query_the_feature_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the 40-row sample and the demo spec and model
    spec, model = ROOT / "demo/datasets/reviews.json", ROOT / "demo/model/sentiment.joblib"
    # When it is run locally and the feature store queried
    truth = ROOT / "demo/data/reviews.labels.csv"
    args = ["--spec", str(spec), "--model", str(model), "--truth", str(truth), "--workdir", str(tmp_path)]
    code = main(["run", str(SAMPLE), "--local", "--json", *args])
    report = json.loads(capsys.readouterr().out)
    assert main(["features", "--workdir", str(tmp_path)]) == 0
    stored = json.loads(capsys.readouterr().out)
    # Then the run succeeded and every record is in the store, by label source
    assert code == 0 and report["run"]["status"] == "SUCCEEDED"
    assert stored["records"] == 40 == sum(stored["by_label_source"].values())
    assert main(["features", "--workdir", str(tmp_path), "--record-id", "r00001"]) == 0
    assert json.loads(capsys.readouterr().out)["record_id"] == "r00001"


def test_run_without_local_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    # Given `labelflow run` without --local (it never talks to AWS by itself)
    # When it runs / Then it refuses and says how to run on AWS instead
    assert main(["run", str(SAMPLE), "--spec", "x.json"]) == 2
    assert "--local" in capsys.readouterr().err


def test_an_answers_file_reviews_what_it_covers_and_the_rest_stays_unlabeled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an answers file that labels only one of the records sent to review
    manifest = next((EVENTS / "fixtures").rglob("review.manifest"))
    review = [json.loads(line) for line in manifest.read_text().splitlines()]
    answers = tmp_path / "answers.csv"
    answers.write_text(f"record_id,label\n{review[0]['record_id']},positive\n")
    spec, model = ROOT / "demo/datasets/reviews.json", ROOT / "demo/model/sentiment.joblib"
    # When the sample runs with those answers as its reviewer
    code = main(
        ["run", str(SAMPLE), "--local", "--json", "--spec", str(spec), "--model", str(model)]
        + ["--answers", str(answers), "--workdir", str(tmp_path)]
    )
    report = json.loads(capsys.readouterr().out)
    counts = report["run"]["counts"]
    # Then one record is human-labeled, the others are reported unlabeled, and the run is PARTIAL
    assert code == 0 and report["run"]["status"] == "PARTIAL"
    assert counts["human_labeled"] == 1 and counts["unlabeled"] == counts["sent_to_review"] - 1 > 0
    assert counts["ingested"] == counts["records_in"] - counts["unlabeled"]
