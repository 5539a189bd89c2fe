"""A dataset's feature group and its fitted transform state across runs, in the real state machine, locally."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location, get_json
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.demo import DEMO_DATA, DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land, run_id_of
from labelflow_local.review import SimulatedWorkers, read_labels

GROUP = "labelflow-reviews"

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Any:
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as local:
        yield local


def demo_rows() -> tuple[list[str], list[dict[str, str]]]:
    with DEMO_DATA.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def run(cloud: LocalCloud, data: Path, spec_body: bytes = b"") -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Land `data` (and the spec, the demo's unless given) and wait: execution status, run.json, history."""
    body = spec_body or DEMO_SPEC.read_bytes()
    execution_arn = land(cloud, data, DatasetSpec.model_validate_json(body), body, DEMO_MODEL)
    status = cloud.wait(execution_arn)["status"]
    history = cloud.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    layout = RunLayout("reviews", run_id_of(execution_arn, "reviews"))
    return status, get_json(cloud.s3, cloud.bucket, layout.run_manifest_key), history


def processed(cloud: LocalCloud, manifest: dict[str, Any], name: str) -> Any:
    location = S3Location.parse(manifest["artifacts"]["processed_uri"] + name)
    body = cloud.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line] if name.endswith(".jsonl") else json.loads(body)


def entered(history: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "TaskStateEntered"]


# ------------------------------------------------------------------------------------ the feature group
def test_the_first_run_creates_the_group_and_the_next_reuses_it(cloud: LocalCloud, tmp_path: Path) -> None:
    # Given two files of a dataset that has no feature group yet
    header, rows = demo_rows()
    first = write_csv(tmp_path / "first.csv", header, rows[:30])
    second = write_csv(tmp_path / "second.csv", header, rows[30:60])
    # When both run, one after the other
    outcomes = [run(cloud, first), run(cloud, second)]
    stored = cloud.feature_store.online_records(GROUP)
    described = cloud.sagemaker.describe_feature_group(FeatureGroupName=GROUP)
    # Then the first created the group from the spec, the second reused it, and every record of both is in it
    assert [(status, manifest["status"]) for status, manifest, _ in outcomes] == [("SUCCEEDED", "SUCCEEDED")] * 2
    assert [manifest["feature_group"] for _, manifest, _ in outcomes] == [
        {"name": GROUP, "created": True},
        {"name": GROUP, "created": False},
    ]
    assert set(stored) == {row["review_id"] for row in rows[:60]}
    assert described["FeatureGroupStatus"] == "Created"


def test_a_spec_that_gained_a_feature_stops_the_next_run_at_planning(cloud: LocalCloud, tmp_path: Path) -> None:
    # Given a dataset whose first run created its group, then a spec with one more feature
    header, rows = demo_rows()
    run(cloud, write_csv(tmp_path / "first.csv", header, rows[:20]))
    spec = json.loads(DEMO_SPEC.read_text())
    spec["features"].append({"name": "votes", "column": "helpful_votes", "type": "numeric", "impute": "median"})
    # When the next file lands with that spec
    status, manifest, history = run(
        cloud, write_csv(tmp_path / "next.csv", header, rows[20:40]), json.dumps(spec).encode()
    )
    # Then the run failed at planning, before processing, with the feature named in run.json, and nothing new stored
    assert status == "FAILED" and manifest["status"] == "FAILED"
    assert "PlanProcessing" in entered(history) and "Process" not in entered(history)
    assert manifest["error"]["error"] == "ConfigError"
    assert manifest["error"]["cause"].startswith(
        f"feature group {GROUP} does not match the spec of dataset reviews: the group lacks votes (Fractional)"
    )
    assert set(cloud.feature_store.online_records(GROUP)) == {row["review_id"] for row in rows[:20]}


def test_ingestion_retries_while_the_group_is_still_being_created(
    cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a group that answers Creating to its first two describes, and the ASL's retry waits recorded, not slept
    cloud.feature_store.describes_while_creating = 2
    waits: list[float] = []
    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=waits.append))
    header, rows = demo_rows()
    # When the dataset's first file runs
    status, manifest, history = run(cloud, write_csv(tmp_path / "first.csv", header, rows[:20]))
    # Then IngestFeatures failed twice with FeatureGroupNotReady, waited as the ASL says, and then wrote every record
    failures = [e["lambdaFunctionFailedEventDetails"] for e in history if e["type"] == "LambdaFunctionFailed"]
    assert [failure["error"] for failure in failures] == ["FeatureGroupNotReady"] * 2
    assert waits == [10, 15]
    assert status == "SUCCEEDED" and manifest["counts"]["ingested"] == 20
    assert len(cloud.feature_store.online_records(GROUP)) == 20


# ------------------------------------------------------------------------------------ fit once, apply everywhere
def test_the_first_run_publishes_its_fitted_state_and_the_next_applies_it(cloud: LocalCloud, tmp_path: Path) -> None:
    # Given two files of one dataset: the second repeats ten rows of the first, its other rows priced ten times higher
    header, rows = demo_rows()
    shifted = [{**row, "price": f"{float(row['price']) * 10:.2f}"} if row["price"] else row for row in rows[40:70]]
    first = write_csv(tmp_path / "first.csv", header, rows[:40])
    second = write_csv(tmp_path / "second.csv", header, rows[:10] + shifted)
    # When both run, one after the other
    (_, one, _), (_, two, _) = run(cloud, first), run(cloud, second)
    # Then the first fitted the state and published it, and the second applied it without fitting
    assert one["status"] == two["status"] == "SUCCEEDED"
    assert processed(cloud, one, "stats.json")["state"]["fitted"] is True
    assert processed(cloud, two, "stats.json")["state"]["fitted"] is False
    assert one["transform_state"]["applied"] is False and one["transform_state"]["published"] is True
    assert two["transform_state"]["applied"] is True and two["transform_state"]["published"] is None
    assert two["transform_state"]["sha256"] == one["transform_state"]["sha256"]
    assert two["transform_state"]["uri"] == one["transform_state"]["uri"]
    # And identical raw rows became identical features in both runs
    features = [{r["record_id"]: r["features"] for r in processed(cloud, m, "records.jsonl")} for m in (one, two)]
    repeated = [row["review_id"] for row in rows[:10]]
    assert [features[0][record_id] for record_id in repeated] == [features[1][record_id] for record_id in repeated]
