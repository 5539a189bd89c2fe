"""The sharded processing path through the whole workflow in local mode: a JSON Lines input above the sharding
floor, processed by three instances (scan, stats and Process jobs), stores what one instance stores; so does the same
rows as a CSV file whose spec says no value holds a line break."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location, get_json
from labelflow_local.cloud import STATE_MACHINE_NAME, LocalCloud, local_cloud
from labelflow_local.demo import DEMO_DATA, DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land, run_id_of
from labelflow_local.iam import (
    Call,
    CallRecorder,
    Intrinsics,
    Statement,
    allowed,
    offline_store_calls,
    recording,
    role_statements,
    state_machine_calls,
    translate,
)
from labelflow_local.review import SimulatedWorkers, read_labels
from labelflow_local.template import parameter_overrides
from tests.e2e.test_least_privilege import local_names

pytestmark = pytest.mark.e2e

MIB = 1024**2
# PlanSettings' lowest sharding floor; the input is made a little larger so that three instances cut it in three.
SHARD_FLOOR = 8 * MIB
# A column the spec does not read: it makes the file large without adding records to label and ingest.
PADDING = "notes"
NOT_COMPARED = {"run_id"}


@dataclass
class Run:
    status: str
    states: list[str]
    manifest: dict[str, Any]
    rejected: list[dict[str, Any]]
    features: dict[str, dict[str, str]]


@dataclass
class Checked:
    calls: list[Call]
    denied: list[Call]


def demo_rows() -> list[dict[str, Any]]:
    with DEMO_DATA.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def sharded_input(path: Path) -> Path:
    """The demo's reviews padded past the floor, with rejects, one a duplicate across parts: JSON Lines, or CSV
    (quoted where a review holds a comma or a quote) when `path` ends in .csv."""
    rows = demo_rows()
    middle = len(rows) // 2
    bad = [
        rows[middle] | {"review_id": ""},
        rows[middle + 1] | {"review_id": "x-bad-votes", "helpful_votes": "many"},
        rows[middle + 2] | {"review_id": "x-bad-time", "reviewed_at": "yesterday"},
    ]
    # The first row again at the end: the scan pass must find it in the first part and reject the last copy.
    rows = [*rows[:middle], *bad, *rows[middle:], rows[0]]
    width = SHARD_FLOOR // len(rows) + 64
    padded = [row | {PADDING: f"{index:08d}".ljust(width, ".")} for index, row in enumerate(rows)]
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(padded[0]))
            writer.writeheader()
            writer.writerows(padded)
    else:
        path.write_text("\n".join(json.dumps(row) for row in padded) + "\n", encoding="utf-8")
    assert path.stat().st_size > SHARD_FLOOR
    return path


def spec_body(data: Path) -> bytes:
    read_as = {"format": "csv", "newlines_in_values": False} if data.suffix == ".csv" else {"format": "jsonl"}
    return json.dumps(json.loads(DEMO_SPEC.read_bytes()) | {"input": read_as}).encode()


def read_jsonl(cloud: LocalCloud, uri: str) -> list[dict[str, Any]]:
    location = S3Location.parse(uri)
    body = cloud.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    return [json.loads(line) for line in body.decode().splitlines()]


def denied_calls(
    cloud: LocalCloud, recorder: CallRecorder, history: list[dict[str, Any]], store: Path, overrides: dict[str, str]
) -> list[Call]:
    """The run's calls, the ones derived from its history and offline store too, that its principal may not make."""
    local = local_names(cloud)
    state_machine_calls(recorder, local, cloud.s3, history)
    offline_uri = cloud.functions.resolve("plan_processing").environment["OFFLINE_STORE_S3_URI"]
    offline_store_calls(recorder, offline_uri, store, cloud.feature_store.flush())
    translated = translate(cloud.template, cloud.region, cloud.account)
    policies: dict[str, list[Statement]] = role_statements(
        translated, Intrinsics(translated, local, STATE_MACHINE_NAME, overrides)
    )
    return [call for call in sorted(recorder.calls) if not allowed(policies.get(call.principal, []), call)]


def run_sharded(workdir: Path, data: Path, instances: int, recorder: CallRecorder | None) -> tuple[Run, list[Call]]:
    """The file through the whole workflow on `instances` Processing instances, the floor at its lowest."""
    body = spec_body(data)
    overrides = {"ProcessingInstanceCount": str(instances), "ProcessingShardMinBytes": str(SHARD_FLOOR)}
    workers = SimulatedWorkers(read_labels(DEMO_TRUTH), seed=7, workers_per_task=1)
    store = workdir / "feature-store"
    with parameter_overrides(**overrides), local_cloud(workers, store) as cloud:
        execution_arn = land(cloud, data, DatasetSpec.model_validate_json(body), body, DEMO_MODEL)
        described = cloud.wait(execution_arn, timeout=math.inf)
        history = cloud.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        run_id = run_id_of(execution_arn, "reviews")
        manifest = get_json(cloud.s3, cloud.bucket, RunLayout("reviews", run_id).run_manifest_key)
        rejected = read_jsonl(cloud, manifest["artifacts"]["processed_uri"].rstrip("/") + "/rejected.jsonl")
        denied = [] if recorder is None else denied_calls(cloud, recorder, history, store, overrides)
        features = cloud.feature_store.online_records(cloud.feature_group_name("reviews"))
    states = [event["stateEnteredEventDetails"]["name"] for event in history if "stateEnteredEventDetails" in event]
    return Run(described["status"], states, manifest, rejected, features), denied


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, Run, Checked]]:
    # Given a JSON Lines input a little above the sharding floor, run once on one instance and once on three
    workdir = tmp_path_factory.mktemp("sharded")
    data = sharded_input(workdir / "reviews.jsonl")
    one, _ = run_sharded(workdir / "one", data, 1, None)
    recorder = CallRecorder("us-east-1", "123456789012")
    with recording(recorder):
        three, denied = run_sharded(workdir / "three", data, 3, recorder)
    yield one, three, Checked(sorted(recorder.calls), denied)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Checked]:
    # Given the same rows as a CSV file whose spec says no value holds a line break, on three instances
    workdir = tmp_path_factory.mktemp("sharded-csv")
    recorder = CallRecorder("us-east-1", "123456789012")
    with recording(recorder):
        run, denied = run_sharded(workdir / "three", sharded_input(workdir / "reviews.csv"), 3, recorder)
    return run, Checked(sorted(recorder.calls), denied)


def test_three_instances_scan_gather_and_process_the_parts(runs: tuple[Run, Run, Checked]) -> None:
    one, three, _ = runs
    # Then both runs succeed, the three-instance one through the scan and stats passes, the other straight through
    assert (one.status, three.status) == ("SUCCEEDED", "SUCCEEDED")
    assert {"ScanShards", "GatherShardStats", "Process"} <= set(three.states)
    assert "Process" in one.states and not {"ScanShards", "GatherShardStats"} & set(one.states)


def test_three_instances_store_the_records_one_instance_stores(runs: tuple[Run, Run, Checked]) -> None:
    one, three, _ = runs
    # When the stored records are compared, value by value (floats to the rounding of merged moments)
    assert set(three.features) == set(one.features)
    differing = [
        (record_id, name, value, three.features[record_id].get(name))
        for record_id, values in one.features.items()
        for name, value in values.items()
        if name not in NOT_COMPARED and not same_value(value, three.features[record_id].get(name))
    ]
    # Then they are the same records with the same features and labels
    assert differing == []
    assert all(set(values) == set(one.features[record_id]) for record_id, values in three.features.items())
    # And every demo record is there once, none of the rejected rows
    assert len(one.features) == len(demo_rows())


def test_three_instances_reject_and_count_what_one_instance_does(runs: tuple[Run, Run, Checked]) -> None:
    one, three, _ = runs
    # Then the same rows are rejected, for the same reasons, at the same lines of the whole file
    assert sorted(three.rejected, key=by_line) == sorted(one.rejected, key=by_line)
    reasons = {row["reason"].split(":")[0] for row in one.rejected}
    assert {"missing record id", "duplicate record id"} <= reasons and len(one.rejected) == 4
    # And run.json counts the same at every stage
    assert three.manifest["counts"] == one.manifest["counts"]
    assert three.manifest["counts"]["rejected"] == 4


def test_no_call_of_the_three_instance_run_is_denied(runs: tuple[Run, Run, Checked]) -> None:
    _, _, checked = runs
    # Then every call the sharded run made, or had made for it, is one the template's policies allow
    assert [f"{call.principal}: {call.action} on {call.resource} ({call.origin})" for call in checked.denied] == []
    # And those include planning's copies of the input's parts and the three jobs the state machine started
    plan = [call for call in checked.calls if call.principal == "PlanProcessingFunction"]
    copies = [call.resource for call in plan if call.origin == "S3.UploadPartCopy" and call.action == "s3:PutObject"]
    parts = [resource for resource in copies if "/input/data/" in resource]
    assert {part.rsplit("/", 2)[-2] for part in parts} == {"000", "001", "002"}
    jobs = {call.resource for call in checked.calls if call.action == "sagemaker:CreateProcessingJob"}
    assert len(jobs) == 3


def test_a_csv_cut_in_three_stores_and_rejects_what_json_lines_on_one_instance_does(
    runs: tuple[Run, Run, Checked], csv_run: tuple[Run, Checked]
) -> None:
    one, _, _ = runs
    three, checked = csv_run
    # Then the CSV run went through the scan and stats passes, its parts each a CSV file with the header
    assert three.status == "SUCCEEDED" and {"ScanShards", "GatherShardStats"} <= set(three.states)
    plan = [call for call in checked.calls if call.principal == "PlanProcessingFunction"]
    parts = {call.resource.rsplit("/", 2)[-2] for call in plan if "/input/data/" in call.resource}
    assert parts == {"000", "001", "002"}
    # And it stores the records one instance stores from the JSON Lines file, feature for feature
    assert set(three.features) == set(one.features)
    assert all(
        same_value(value, three.features[record_id].get(name))
        for record_id, values in one.features.items()
        for name, value in values.items()
        if name not in NOT_COMPARED
    )
    # And rejects the same rows for the same reasons, one line further down (below the CSV header)
    expected = sorted((row["line"] + 1, row["reason"]) for row in one.rejected)
    assert sorted(by_line(row) for row in three.rejected) == expected
    assert three.manifest["counts"] == one.manifest["counts"]
    # And no call it made, or had made for it, is denied by the template's policies
    assert [f"{call.principal}: {call.action} on {call.resource} ({call.origin})" for call in checked.denied] == []


def by_line(row: dict[str, Any]) -> tuple[int, str]:
    return row["line"], row["reason"]


def same_value(ours: str, theirs: str | None) -> bool:
    """Equal text, or numbers equal to 1e-12 relative."""
    if theirs is None or ours == theirs:
        return ours == theirs
    try:
        return math.isclose(float(ours), float(theirs), rel_tol=1e-12)
    except ValueError:
        return False
