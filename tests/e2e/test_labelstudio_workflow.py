"""The Label Studio review path, end to end in local mode, against a fake Label Studio whose reviewers answer at once:
the same ASL waits on the task token, the poller completes it, and the labels reach the feature store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelflow_local.cli import main
from labelflow_local.demo import DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, run_local
from labelflow_local.labelstudio import LabelStudioReviews
from labelflow_local.review import read_labels
from labelflow_local.template import parameter_overrides
from tests.conftest import EVENTS
from tests.labelstudio.fake_server import LEGACY_TOKEN, FakeLabelStudio, serving

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"

pytestmark = pytest.mark.e2e


def test_a_labelstudio_review_completes_the_run_with_its_answers(tmp_path: Path) -> None:
    # Given a fake Label Studio whose three reviewers answer each record with its known label
    truth = read_labels(DEMO_TRUTH)
    said: list[str] = []
    with (
        serving(FakeLabelStudio(answer=truth.get, reviewers=3)) as fake,
        parameter_overrides(ReviewBackend="labelstudio"),
        LabelStudioReviews(fake.url, LEGACY_TOKEN, say=said.append, interval=0.2) as reviews,
    ):
        # When the demo sample runs locally with the deployment's backend set to labelstudio
        report = run_local(SAMPLE, DEMO_SPEC, DEMO_MODEL, tmp_path)

    # Then the run succeeded, and every reviewed record holds the reviewers' label in the feature store
    counts = report.manifest.counts
    assert report.manifest.status == "SUCCEEDED"
    assert counts.sent_to_review and counts.human_labeled == counts.sent_to_review
    reviewed = {record: values for record, values in report.features.items() if values["label_source"] == "human"}
    assert len(reviewed) == counts.sent_to_review
    assert all(values["label"] == truth[record] for record, values in reviewed.items())
    # And run.json says who reviewed: Label Studio's three reviewers
    reviewers = report.manifest.reviewers
    assert reviewers is not None and (reviewers.backend, reviewers.workers) == ("label-studio", 3)
    # And the records went to one project with the model's suggestions, whose URL the run said once
    assert len(fake.projects) == 1 and len(fake.tasks) == counts.sent_to_review
    assert said == [
        f"label {counts.sent_to_review} records at {fake.url}/projects/1/data "
        "(the run goes on once every record has its answers)"
    ]
    assert reviews.polls >= 1


def test_the_cli_runs_with_a_running_label_studio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a running (fake) Label Studio whose reviewer answers each record with its known label
    truth = read_labels(DEMO_TRUTH)
    argv = ["run", str(SAMPLE), "--local", "--spec", str(DEMO_SPEC), "--model", str(DEMO_MODEL)]
    argv += ["--workdir", str(tmp_path), "--reviewer", "labelstudio", "--json"]
    with serving(FakeLabelStudio(answer=truth.get, reviewers=3)) as fake:
        # When `labelflow run --local --reviewer labelstudio` is pointed at it
        code = main([*argv, "--labelstudio-url", fake.url, "--labelstudio-token", LEGACY_TOKEN])
    # Then the run succeeded with human labels, and the labeling URL was said on stderr (stdout is the report)
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 0 and report["status"] == "SUCCEEDED"
    assert report["counts"]["human_labeled"] == report["counts"]["sent_to_review"] > 0
    assert f"at {fake.url}/projects/1/data" in err


def test_the_cli_wants_a_token_with_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a Label Studio URL without a token
    argv = ["run", str(SAMPLE), "--local", "--spec", str(DEMO_SPEC), "--model", str(DEMO_MODEL)]
    # When the run is asked for
    code = main([*argv, "--reviewer", "labelstudio", "--labelstudio-url", "http://127.0.0.1:9"])
    # Then it is refused as an unusable command line, naming what is missing
    assert code == 2 and "--labelstudio-token" in capsys.readouterr().err
