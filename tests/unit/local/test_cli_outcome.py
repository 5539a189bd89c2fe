"""What `labelflow run` says and returns for each way a run ends, with the workflow replaced by a fixed report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelflow.models.run import RunCounts, RunError, RunManifest
from labelflow_local import demo
from labelflow_local.cli import main
from tests.conftest import ROOT

SPEC = ROOT / "demo/datasets/reviews.json"
MODEL = ROOT / "demo/model/sentiment.joblib"
DATA = ROOT / "demo/data/reviews.csv"
TRUTH = ROOT / "demo/data/reviews.labels.csv"
COUNTS = {"records_in": 40, "rejected": 0, "auto_labeled": 28, "sent_to_review": 12, "human_labeled": 12}


def manifest(status: str, error: RunError | None = None, **counts: int) -> RunManifest:
    return RunManifest.model_validate(
        {
            "run_id": "abc123",
            "dataset": "reviews",
            "status": status,
            "execution_id": "arn:aws:states:us-east-1:123456789012:execution:labelflow:reviews-abc123",
            "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:00:09Z",
            "input": {"bucket": "b", "key": "raw/reviews/x.csv", "version_id": "v", "etag": "e", "size": 1},
            "counts": RunCounts.model_validate({**COUNTS, **counts}),
            "artifacts": {"labeled_uri": "s3://b/runs/reviews/abc123/labeled/labeled.jsonl"},
            "error": error,
        }
    )


def report(run: RunManifest) -> demo.RunReport:
    return demo.RunReport(
        manifest=run,
        execution_status="FAILED" if run.status == "FAILED" else "SUCCEEDED",
        run_json="s3://labelflow-demo/runs/reviews/abc123/run.json",
        exported_to=Path(".labelflow/s3/labelflow-demo/runs/reviews/abc123"),
        seconds=1.5,
        feature_group="labelflow-reviews",
    )


def run_with(monkeypatch: pytest.MonkeyPatch, run: RunManifest, *options: str) -> int:
    def fake_run_local(*args: Any, **kwargs: Any) -> demo.RunReport:
        return report(run)

    monkeypatch.setattr(demo, "run_local", fake_run_local)
    return main(
        ["run", str(DATA), "--local", "--truth", str(TRUTH), "--spec", str(SPEC), "--model", str(MODEL), *options]
    )


SUCCEEDED = manifest("SUCCEEDED", model_labeled=28, unlabeled=0, ingested=40, ingest_failed=0)
PARTIAL = manifest("PARTIAL", model_labeled=28, unlabeled=0, ingested=25, ingest_failed=15)
FAILED = manifest(
    "FAILED",
    RunError(
        error="States.TaskFailed",
        cause=json.dumps({"ProcessingJobStatus": "Failed", "FailureReason": "missing required columns: price"}),
    ),
)


def test_a_run_that_succeeded_exits_0_and_says_nothing_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run that ends SUCCEEDED / When it runs
    code = run_with(monkeypatch, SUCCEEDED)
    # Then it exits 0 with the summary on stdout and nothing on stderr
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("run abc123: SUCCEEDED") and err == ""
    assert "ingested        40 into feature group labelflow-reviews" in out


def test_a_partial_run_exits_1_with_one_line_saying_what_happened_and_where_to_look(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run where 15 records were not ingested / When it runs
    code = run_with(monkeypatch, PARTIAL)
    # Then it exits 1, and stderr is one line naming the count, the group and run.json
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err == (
        "labelflow: run abc123: PARTIAL: 15 records not ingested into feature group labelflow-reviews "
        "(ingest-failures.jsonl says why): see .labelflow/s3/labelflow-demo/runs/reviews/abc123/run.json\n"
    )


def test_a_failed_run_exits_1_with_the_failure_reason_not_the_whole_cause(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run whose processing job failed (the cause is the job's whole description, as JSON)
    # When it runs
    code = run_with(monkeypatch, FAILED)
    # Then it exits 1 and stderr holds one line with the job's FailureReason
    out, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1
    assert "FAILED: States.TaskFailed: missing required columns: price: see " in err
    assert "why             States.TaskFailed: missing required columns: price" in out
    assert "records in      40" in out


def test_debug_adds_the_full_cause_of_a_failed_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a failed run / When it runs with --debug / Then the cause follows the one line
    assert run_with(monkeypatch, FAILED, "--debug") == 1
    assert '"ProcessingJobStatus": "Failed"' in capsys.readouterr().err


@pytest.mark.parametrize(("run", "code"), [(SUCCEEDED, 0), (PARTIAL, 1), (FAILED, 1)])
def test_json_prints_the_report_alone_on_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], run: RunManifest, code: int
) -> None:
    # Given a run that ends one way or another / When it runs with --json
    assert run_with(monkeypatch, run, "--json") == code
    # Then stdout is one JSON document with the report's fields, the reason included
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["status"] == run.status and parsed["feature_group"] == "labelflow-reviews"
    assert parsed["run_json"] == "s3://labelflow-demo/runs/reviews/abc123/run.json"
    assert parsed["run_json_copy"].endswith("abc123/run.json") and parsed["seconds"] == 1.5
    assert parsed["counts"] == run.counts.model_dump() and parsed["run"]["run_id"] == "abc123"
    assert parsed["artifacts"] == {"labeled_uri": "s3://b/runs/reviews/abc123/labeled/labeled.jsonl"}
    assert (parsed["reason"] is None) == (run.status == "SUCCEEDED")


def test_every_shortfall_of_a_partial_run_is_in_its_reason() -> None:
    # Given a partial run with rejected, unlabeled and uningested records
    run = manifest("PARTIAL", rejected=2, unlabeled=3, ingest_failed=4)
    # When its reason is given / Then it names each, in one line
    reason = demo.reason(report(run))
    assert reason is not None and "\n" not in reason
    assert reason.startswith("2 rows rejected by processing") and "3 records got no label from reviewers" in reason
    assert "4 records not ingested" in reason


def test_a_lambda_error_cause_gives_its_message() -> None:
    # Given a failure whose cause is a Lambda error payload with a stack trace
    cause = json.dumps({"errorMessage": "boom", "errorType": "ValueError", "stackTrace": ["  File x\n"] * 50})
    run = manifest("FAILED", RunError(error="ValueError", cause=cause))
    # When its reason is given / Then only the message remains
    assert demo.reason(report(run)) == "ValueError: boom"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", str(DATA), "--spec", str(SPEC)], "local mode only (--local)"),
        (
            ["run", str(DATA), "--local", "--spec", str(SPEC), "--model", str(MODEL)],
            "simulated reviewers answer from known labels: pass --truth FILE",
        ),
        (
            ["run", "nope.csv", "--local", "--truth", str(TRUTH), "--spec", str(SPEC), "--model", str(MODEL)],
            "FILE nope.csv: no such file",
        ),
        (["run", str(DATA), "--local", "--truth", str(TRUTH), "--spec", "nope.json"], "nope.json: no such spec file"),
        (
            ["run", str(DATA), "--local", "--truth", str(TRUTH), "--spec", str(SPEC)],
            "names a model (s3://labelflow-demo/",
        ),
    ],
)
def test_an_unusable_command_line_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    # Given a run that cannot work: it must not start
    def never(*args: Any, **kwargs: Any) -> demo.RunReport:
        raise AssertionError("the run started")

    monkeypatch.setattr(demo, "run_local", never)
    # When it is asked for / Then it exits 2 with one line on stderr
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_spec_with_errors_is_refused_before_the_run_naming_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a spec with two errors
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**json.loads(SPEC.read_text()), "dataset": "Bad_Name", "labels": ["x"]}))
    # When it is run / Then one line names the first error and how to see them all
    code = main(["run", str(DATA), "--local", "--truth", str(TRUTH), "--spec", str(spec), "--model", str(MODEL)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "dataset: 'Bad_Name' is not allowed" in err and f"(and 1 more: labelflow validate {spec})" in err


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run that breaks inside
    def broken(*args: Any, **kwargs: Any) -> demo.RunReport:
        raise RuntimeError("engine broke\nwith a second line")

    monkeypatch.setattr(demo, "run_local", broken)
    argv = ["run", str(DATA), "--local", "--truth", str(TRUTH), "--spec", str(SPEC), "--model", str(MODEL)]
    # When it runs, then again with --debug
    code = main(argv)
    plain = capsys.readouterr().err
    debug_code = main([*argv, "--debug"])
    debug = capsys.readouterr().err
    # Then it exits 1 with one line, and --debug adds the traceback
    assert code == debug_code == 1
    assert plain == "labelflow: RuntimeError: engine broke (--debug for the traceback)\n"
    assert "Traceback (most recent call last)" in debug and "engine broke" in debug
