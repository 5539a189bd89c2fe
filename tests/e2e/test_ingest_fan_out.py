"""Ingestion fanned out in local mode: the labeled file split over several ingest batches (one Map iteration each),
every record in the store exactly once, and a batch that fails for good leaving the others written, the run
PARTIAL with one failure report that a reingest completes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from labelflow import ingestion, merging
from labelflow.layout import RunLayout
from labelflow.s3 import get_json
from labelflow_local.cloud import local_cloud
from labelflow_local.demo import DEMO_TRUTH
from labelflow_local.reingest import start_reingest
from labelflow_local.review import SimulatedWorkers, read_labels
from tests.e2e.test_faults import GROUP, RECORD_IDS, failed_ids, measure, run_sample

pytestmark = pytest.mark.e2e

# 40 records in ingest batches of 8 (five Map iterations), each checkpointed in chunks of 3.
BATCH_RECORDS = 8
CHUNK = 3


class FunctionTimedOut(Exception):
    """A failure no Retry matches: the batch's own Catch reports it."""


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merging, "INGEST_BATCH_RECORDS", BATCH_RECORDS)
    monkeypatch.setattr(ingestion, "BATCH_SIZE", CHUNK)


def batch_folders(run: Any) -> set[str]:
    prefix = RunLayout("reviews", run.run_id).ingest_folder() + "/"
    listed = run.cloud.s3.list_objects_v2(Bucket=run.cloud.bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"].removeprefix(prefix).split("/")[0] for item in listed if item["Key"].endswith("progress.json")}


def test_a_run_split_over_several_ingest_batches_stores_every_record_once(tmp_path: Path) -> None:
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        # Given a labeled file of 40 records split into batches of 8
        # When the sample runs
        run = run_sample(cloud, tmp_path)
        outcome = measure("fan-out", run)
        # Then five batches were ingested, each with its own checkpoint
        assert batch_folders(run) == {f"batch-{index:05d}" for index in range(5)}
        # And every record is in the store exactly once, as run.json counts
        assert run.manifest is not None and run.manifest["status"] == "SUCCEEDED" and run.execution == "SUCCEEDED"
        assert outcome.in_store == outcome.reported_ingested == len(RECORD_IDS)
        assert outcome.duplicated == 0 and outcome.lost == 0 and outcome.reported_failed == 0


def test_a_batch_that_fails_for_good_leaves_the_others_and_a_reingest_completes_the_run(tmp_path: Path) -> None:
    refused = {"active": True}

    def crash(params: dict[str, Any], **_: Any) -> None:
        values = {item["FeatureName"]: item["ValueAsString"] for item in params["Record"]}
        if refused["active"] and values["record_id"] == "r00020":
            raise FunctionTimedOut("crashed at r00020")

    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        # Given the batch holding r00020 crashing there every time, past any Retry
        boto3.DEFAULT_SESSION.events.register_first(  # type: ignore[union-attr]
            "before-parameter-build.sagemaker-featurestore-runtime.PutRecord", crash
        )
        # When the sample runs
        run = run_sample(cloud, tmp_path)
        outcome = measure("one batch fails", run)
        # Then the run is PARTIAL (its execution failed for the alarm), the other batches are written
        assert run.manifest is not None and run.manifest["status"] == "PARTIAL" and run.execution == "FAILED"
        assert 0 < outcome.reported_failed <= BATCH_RECORDS  # type: ignore[operator]
        assert outcome.in_store == outcome.reported_ingested and outcome.lost == 0 and outcome.duplicated == 0
        # And one failure report lists exactly the records not in the store
        stored = set(cloud.feature_store.online_records(GROUP))
        assert failed_ids(cloud, run.manifest) == RECORD_IDS - stored
        assert run.manifest["artifacts"]["ingest_failures_uri"].endswith("labeled/ingest-failures.jsonl")

        # When the fault is gone and the run's failed records are re-sent
        refused["active"] = False
        assert run.run_id is not None
        described = cloud.wait(start_reingest(cloud, "reviews", run.run_id))
        manifest = get_json(cloud.s3, cloud.bucket, RunLayout("reviews", run.run_id).run_manifest_key)
        after = measure("after reingest", run.__class__(cloud, str(described["status"]), manifest, run.run_id))
        # Then the run is complete, each record stored once
        assert described["status"] == "SUCCEEDED" and manifest["status"] == "SUCCEEDED"
        assert after.in_store == manifest["counts"]["ingested"] == len(RECORD_IDS) and after.duplicated == 0
