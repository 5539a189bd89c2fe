"""The `labelflow` command as users run it: onboard a dataset, invoke without Docker, run a file locally, query
the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelflow.models.spec import DatasetSpec
from labelflow_local.cli import main
from tests.conftest import EVENTS, ROOT

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"
SPEC, MODEL = ROOT / "demo/datasets/reviews.json", ROOT / "demo/model/sentiment.joblib"
TRUTH = ROOT / "demo/data/reviews.labels.csv"


def test_invoke_runs_a_handler_on_its_sample_event(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the sample pre-annotation event
    # When `labelflow invoke` runs the function on it
    code = main(["invoke", "gt_pre_annotation", "-e", str(EVENTS / "gt_pre_annotation.json")])
    # Then it prints the handler's response
    response = json.loads(capsys.readouterr().out)
    assert code == 0 and {"labels", "record_id"} <= set(response["taskInput"])


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


def test_run_local_then_query_the_feature_store(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # Given the 40-row sample and the demo spec and model
    truth = ROOT / "demo/data/reviews.labels.csv"
    args = ["--spec", str(SPEC), "--model", str(MODEL), "--truth", str(truth), "--workdir", str(tmp_path)]
    # When it is run locally with --json (stdout read at the file descriptor: subprocesses included)
    code = main(["run", str(SAMPLE), "--local", "--truth", str(TRUTH), "--json", *args])
    report = json.loads(capfd.readouterr().out)
    # Then the run succeeded, stdout held the report alone, and it names the dataset's feature group
    assert code == 0 and report["status"] == "SUCCEEDED" and report["reason"] is None
    assert report["feature_group"] == "labelflow-reviews" and Path(report["run_json_copy"]).is_file()
    # And the store, found by dataset, holds every record, by label source
    assert main(["features", "--dataset", "reviews", "--workdir", str(tmp_path)]) == 0
    stored = json.loads(capfd.readouterr().out)
    assert stored["records"] == 40 == sum(stored["by_label_source"].values())
    assert main(["features", "--workdir", str(tmp_path), "--record-id", "r00001"]) == 0
    assert json.loads(capfd.readouterr().out)["record_id"] == "r00001"


def test_run_without_local_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    # Given `labelflow run` without --local (it never talks to AWS by itself)
    # When it runs / Then it refuses and says how to run on AWS instead
    assert main(["run", str(SAMPLE), "--spec", "x.json"]) == 2
    assert "--local" in capsys.readouterr().err


def test_an_answers_file_reviews_what_it_covers_and_the_partial_run_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an answers file that labels only one of the records sent to review
    manifest = next((EVENTS / "fixtures").rglob("review.manifest"))
    review = [json.loads(line) for line in manifest.read_text().splitlines()]
    answers = tmp_path / "answers.csv"
    answers.write_text(f"record_id,label\n{review[0]['record_id']},positive\n")
    # When the sample runs with those answers as its reviewer
    code = main(
        ["run", str(SAMPLE), "--local", "--truth", str(TRUTH), "--json", "--spec", str(SPEC), "--model", str(MODEL)]
        + ["--answers", str(answers), "--workdir", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    counts = json.loads(out)["counts"]
    # Then one record is human-labeled, the others are reported unlabeled, and the run is PARTIAL
    assert counts["human_labeled"] == 1 and counts["unlabeled"] == counts["sent_to_review"] - 1 > 0
    assert counts["ingested"] == counts["records_in"] - counts["unlabeled"]
    # And the command exits 1 with one line saying so, and what to do
    assert code == 1 and err.count("\n") == 1
    assert f"PARTIAL: {counts['unlabeled']} records got no label from reviewers (answer them: --answers FILE)" in err


def test_a_file_missing_the_spec_columns_fails_the_run_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a reviews file without its price column
    lines = SAMPLE.read_text().splitlines()
    header = lines[0].split(",")
    data = tmp_path / "no-price.csv"
    data.write_text("\n".join([",".join(h for h in header if h != "price"), *[]]) + "\n" + "r1,x\n")
    # When it is run
    code = main(
        [
            "run",
            str(data),
            "--local",
            "--truth",
            str(TRUTH),
            "--spec",
            str(SPEC),
            "--model",
            str(MODEL),
            "--workdir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    # Then the run FAILED and the command exits 1 with one line naming the missing column
    assert code == 1 and err.count("\n") == 1 and "FAILED" in err and "price" in err


def test_init_then_validate_a_new_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a semicolon-separated table with an id, a time, a number, a category and text
    data = tmp_path / "tickets.csv"
    rows = [
        f"T-{i};2024-05-{i % 28 + 1:02d}T08:00:00Z;{i * 3};{('web', 'phone', 'mail')[i % 3]};"
        f"customer {i} says the screen stays black after the update"
        for i in range(60)
    ]
    data.write_text("ticket_id;opened_at;minutes;channel;message\n" + "\n".join(rows) + "\n")
    spec_path = tmp_path / "tickets.json"
    # When init infers a spec for it
    code = main(["init", str(data), "--dataset", "tickets", "--labels", "bug,question", "--out", str(spec_path)])
    out = capsys.readouterr().out
    # Then it writes a valid spec and says what each column became, one line per column
    spec = DatasetSpec.model_validate_json(spec_path.read_bytes())
    assert code == 0 and spec.input.delimiter == ";" and spec.display_columns == ["message"]
    for column, role in [("ticket_id", "record id"), ("opened_at", "event time"), ("minutes", "numeric feature")]:
        assert any(line.split()[:1] == [column] and role in line for line in out.splitlines())
    assert "no --model: every record goes to reviewers" in out
    # And validate passes the spec and the file against it
    assert main(["validate", str(spec_path), str(data)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{data}: fits {spec_path} (checked 60 rows of tickets.csv)"
    # And init will not overwrite the spec without --force
    assert main(["init", str(data), "--dataset", "tickets", "--labels", "a,b", "--out", str(spec_path)]) == 2
    assert "exists: pass --force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "Tickets_2024", "--labels", "a,b"], "--dataset 'Tickets_2024': not a dataset name"),
        (["--dataset", "t", "--labels", "a"], "at least two different labels"),
        (["--dataset", "t", "--labels", "a,b", "--id-column", "nope"], "--id-column 'nope' is not a column"),
    ],
)
def test_init_refuses_unusable_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    # Given the sample file and arguments that cannot make a spec
    # When init runs / Then it exits 2 with one line saying what is wrong
    assert main(["init", str(SAMPLE), "--out", str(tmp_path / "s.json"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_validate_reports_each_spec_error_on_its_own_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a spec with an invalid name and an unknown impute strategy
    body = json.loads(SPEC.read_text())
    body["dataset"], body["features"][1]["impute"] = "Reviews", "avg"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(body))
    # When it is validated
    code = main(["validate", str(spec_path)])
    lines = capsys.readouterr().out.splitlines()
    # Then it exits 1 with one line per error, then the verdict
    assert code == 1 and len(lines) == 3
    assert (
        lines[0] == f"{spec_path}: dataset: 'Reviews' is not allowed: lowercase letters, digits and single "
        "hyphens, starting with a letter (e.g. `churn-2024`)"
    )
    assert lines[1].startswith(f"{spec_path}: features[1].impute: Input should be 'mean'")
    assert lines[2] == f"{spec_path}: not a valid dataset spec: 2 problems (see docs/spec-reference.md)"


def test_validate_finds_problems_in_the_data_and_refuses_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the sample with a repeated record id
    lines = SAMPLE.read_text().splitlines()
    data = tmp_path / "repeated.csv"
    data.write_text("\n".join([*lines, lines[1]]) + "\n")
    # When it is validated against the demo spec / Then the problem is found and the exit code is 1
    assert main(["validate", str(SPEC), str(data)]) == 1
    out = capsys.readouterr().out
    assert "problem: record_id_column review_id: 0 empty and 1 repeated ids" in out
    assert out.splitlines()[-1] == f"{data}: 1 problem found (checked 41 rows of repeated.csv)"
    # And a missing spec or data file is unusable input: exit 2
    assert main(["validate", str(tmp_path / "none.json")]) == 2
    assert main(["validate", str(SPEC), str(tmp_path / "none.csv")]) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_features_needs_a_group_it_can_find(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a local store with two groups
    online = tmp_path / "feature-store" / "online"
    online.mkdir(parents=True)
    for group in ("labelflow-reviews", "labelflow-wine"):
        (online / f"{group}.json").write_text("{}")
    # When features is asked without a dataset, then for an unknown one
    assert main(["features", "--workdir", str(tmp_path)]) == 2
    ambiguous = capsys.readouterr().err
    assert main(["features", "--workdir", str(tmp_path), "--dataset", "churn"]) == 1
    unknown = capsys.readouterr().err
    # Then it names the groups there are
    assert "has groups labelflow-reviews, labelflow-wine: pass --dataset NAME" in ambiguous
    assert "no feature group labelflow-churn in the local store (groups: labelflow-reviews, labelflow-wine)" in unknown


def test_a_run_takes_template_parameters_and_refuses_what_a_deploy_would(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given the sample, and a run asking for two processing instances as `sam deploy --parameter-overrides` would
    args = ["--spec", str(SPEC), "--model", str(MODEL), "--truth", str(TRUTH), "--workdir", str(tmp_path), "--json"]
    code = main(["run", str(SAMPLE), "--local", *args, "--parameter", "ProcessingInstanceCount=2"])
    # Then the run succeeds and its processing job asked for two instances
    assert code == 0 and json.loads(capfd.readouterr().out)["status"] == "SUCCEEDED"
    calls = [json.loads(line) for line in (tmp_path / "calls" / "requests.jsonl").read_text().splitlines()]
    (job,) = [call["request"] for call in calls if call["operation"] == "CreateProcessingJob"]
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    # And a value the template's constraints refuse stops the command before anything runs, in one line
    assert main(["run", str(SAMPLE), "--local", *args, "--parameter", "ProcessingInstanceCount=200"]) == 2
    assert capfd.readouterr().err.strip() == (
        "labelflow: --parameter ProcessingInstanceCount=200: ProcessingInstanceCount=200 is outside 1..100"
    )
