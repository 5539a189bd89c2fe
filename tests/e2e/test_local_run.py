"""The real state machine, end to end, in local mode."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import get_json
from labelflow_local.cli import main
from labelflow_local.cloud import local_cloud
from labelflow_local.demo import DEMO_DATA, DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land, run_id_of
from labelflow_local.review import SimulatedWorkers, read_labels

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "demo/data/bad"

pytestmark = pytest.mark.e2e


@dataclass
class DemoRun:
    """What `labelflow demo` leaves behind: its JSON report, the run's files and the feature store."""

    exit_code: int
    report: dict[str, Any]
    exported_to: Path
    features: dict[str, dict[str, str]]

    @property
    def execution_status(self) -> str:
        return str(self.report["execution_status"])

    @property
    def label_accuracy(self) -> dict[str, float]:
        return dict(self.report["label_accuracy"])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    # The exact command the README gives first (`make demo` runs `labelflow demo`).
    workdir = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["demo", "--json", "--workdir", str(workdir)])
    report = json.loads(out.getvalue())
    run_dir = workdir / "s3" / "labelflow-demo" / "runs" / "reviews" / report["run"]["run_id"]
    features = json.loads((workdir / "feature-store/online/labelflow-reviews.json").read_text())
    return DemoRun(code, report, run_dir, features), workdir


def test_every_input_record_reaches_the_feature_store_exactly_once(demo_run) -> None:
    # Given the demo run on 3000 reviews
    report, workdir = demo_run
    with DEMO_DATA.open(newline="") as handle:
        input_ids = [row["review_id"] for row in csv.DictReader(handle)]
    # When we read every write the feature store accepted (the offline store keeps them all)
    files = sorted((workdir / "feature-store").rglob("*.parquet"))
    written = Counter(record_id for path in files for record_id in pq.read_table(path).column("record_id").to_pylist())
    # Then each input record was written once, and the online store holds each of them
    assert report.exit_code == 0 and report.execution_status == "SUCCEEDED"
    assert set(written) == set(input_ids) and set(written.values()) == {1}
    assert set(report.features) == set(input_ids)


def test_label_source_is_model_for_auto_labeled_and_human_for_reviewed_records(demo_run) -> None:
    # Given the demo run's routing outputs, exported from its run prefix
    report, _ = demo_run
    run_dir = report.exported_to
    auto = {
        json.loads(line)["record_id"] for line in (run_dir / "labeling/auto-labeled.jsonl").read_text().splitlines()
    }
    review = {json.loads(line)["record_id"] for line in (run_dir / "labeling/review.manifest").read_text().splitlines()}
    # When we look at what the feature store holds
    sources = {record_id: values["label_source"] for record_id, values in report.features.items()}
    # Then auto-labeled records carry "model", reviewed ones "human", and both groups are non-empty
    assert auto and review and not auto & review
    assert {sources[r] for r in auto} == {"model"} and {sources[r] for r in review} == {"human"}


def test_run_json_accounts_for_every_record(demo_run) -> None:
    # Given the demo run's run.json
    report, _ = demo_run
    manifest = json.loads((report.exported_to / "run.json").read_text())
    counts = manifest["counts"]
    # Then the counts add up to the 3000 input records at every stage
    assert manifest["status"] == "SUCCEEDED" and manifest["error"] is None
    assert counts["records_in"] == 3000 and counts["rejected"] == 0
    assert counts["auto_labeled"] + counts["sent_to_review"] == 3000
    assert counts["model_labeled"] == counts["auto_labeled"] and counts["human_labeled"] == counts["sent_to_review"]
    assert counts["ingested"] == 3000 and counts["ingest_failed"] == 0 and counts["unlabeled"] == 0
    # And the lineage names the input version, the code and both jobs
    assert manifest["input"]["key"] == "raw/reviews/reviews.csv" and manifest["input"]["version_id"]
    assert len(manifest["code_sha256"]) == 64 and manifest["processing_job"] and manifest["labeling_job"]


def test_simulated_humans_improve_on_the_model_where_it_was_unsure(demo_run) -> None:
    # Given simulated workers at 90% accuracy, three per record, consolidated
    report, _ = demo_run
    # Then the consolidated human labels beat a single worker, and the model's confident labels stay accurate
    assert report.label_accuracy["human"] > 0.9
    assert report.label_accuracy["model"] > 0.95


@pytest.mark.parametrize(
    ("bad_file", "failed_step", "reason"),
    [
        ("header_only.csv", "Process", "no data rows"),
        ("missing_column.csv", "PlanProcessing", "missing required columns: price"),
        ("empty.csv", "PlanProcessing", "is empty"),
    ],
)
def test_bad_input_ends_in_the_failure_path_and_leaves_the_raw_object_untouched(
    tmp_path: Path, bad_file: str, failed_step: str, reason: str
) -> None:
    # Given a bad file landing for the reviews dataset
    spec_body = DEMO_SPEC.read_bytes()
    spec = DatasetSpec.model_validate_json(spec_body)
    data = tmp_path / bad_file
    data.write_bytes((BAD / bad_file).read_bytes())
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        # When its run executes
        execution_arn = land(cloud, data, spec, spec_body, DEMO_MODEL)
        described = cloud.wait(execution_arn)
        history = cloud.sfn.get_execution_history(executionArn=execution_arn)["events"]
        run_id = run_id_of(execution_arn, "reviews")
        manifest = get_json(cloud.s3, cloud.bucket, RunLayout("reviews", run_id).run_manifest_key)
        versions = cloud.s3.list_object_versions(Bucket=cloud.bucket, Prefix=f"raw/reviews/{bad_file}")["Versions"]
        raw = cloud.s3.get_object(Bucket=cloud.bucket, Key=f"raw/reviews/{bad_file}")["Body"].read()
        ingested = cloud.feature_store.online_records("labelflow-reviews")
        quarantined = {
            item["Key"]: cloud.s3.get_object(Bucket=cloud.bucket, Key=item["Key"])["Body"].read()
            for item in cloud.s3.list_objects_v2(Bucket=cloud.bucket, Prefix="quarantine/").get("Contents", [])
        }
    # Then the named step failed, the execution took the failure path and run.json has the reason
    failed_states = [e["stateExitedEventDetails"]["name"] for e in history if e["type"] == "TaskStateExited"]
    assert described["status"] == "FAILED"
    assert "RecordFailure" in failed_states and failed_step in _entered(history)
    assert manifest["status"] == "FAILED" and reason in manifest["error"]["cause"]
    # And the raw object is exactly what landed, in its only version, and nothing was ingested
    assert raw == (BAD / bad_file).read_bytes() and len(versions) == 1
    assert ingested == {}
    # And inputs rejected before processing are copied to quarantine/ with the reason beside them
    if failed_step == "PlanProcessing":
        prefix = f"quarantine/reviews/{run_id}/"
        assert quarantined[prefix + bad_file] == raw
        assert reason in json.loads(quarantined[prefix + "error.json"])["cause"]
        assert manifest["artifacts"]["quarantine_uri"] == f"s3://labelflow-demo/{prefix}{bad_file}"


def _entered(history: list[dict]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "TaskStateEntered"]
