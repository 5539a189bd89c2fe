"""ingestion.py: feature records for PutRecord, and a bounded pool that reports failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from labelflow.errors import ManifestError
from labelflow.ingestion import Checkpoints, FeatureStoreWriter, feature_record, ingest_stream, put_all
from labelflow.layout import RunLayout
from labelflow.models.records import IngestProgress, LabeledRecord
from tests.conftest import BUCKET


def labeled(record_id: str = "r1") -> LabeledRecord:
    return LabeledRecord(
        record_id=record_id,
        event_time="2026-01-01T00:00:00Z",
        features={"product_category__books": 1, "price": 0.25, "team": "red"},
        label="positive",
        label_source="human",
        label_confidence=0.9,
        run_id="run-1",
    )


# ------------------------------------------------------------------------ feature_record
def test_feature_record_order_and_string_values() -> None:
    # Given a labeled record with integer, float and string features
    # When it becomes a PutRecord record
    values = feature_record(labeled())

    # Then ids come first, then the features in order, then labelflow's columns; every value a string
    assert values == [
        {"FeatureName": "record_id", "ValueAsString": "r1"},
        {"FeatureName": "event_time", "ValueAsString": "2026-01-01T00:00:00Z"},
        {"FeatureName": "product_category__books", "ValueAsString": "1"},
        {"FeatureName": "price", "ValueAsString": "0.25"},
        {"FeatureName": "team", "ValueAsString": "red"},
        {"FeatureName": "label", "ValueAsString": "positive"},
        {"FeatureName": "label_source", "ValueAsString": "human"},
        {"FeatureName": "label_confidence", "ValueAsString": "0.9"},
        {"FeatureName": "run_id", "ValueAsString": "run-1"},
    ]
    assert all(isinstance(v["ValueAsString"], str) for v in values)


# ------------------------------------------------------------------------ put_all
def test_put_all_calls_put_for_every_record() -> None:
    # Given records and a put that succeeds
    records = [labeled(f"r{i}") for i in range(20)]
    seen: list[str] = []
    lock = threading.Lock()

    def put(record: LabeledRecord) -> None:
        with lock:
            seen.append(record.record_id)

    # When they are all put / Then nothing failed and each record was put once
    assert put_all(records, put, max_workers=4) == []
    assert sorted(seen) == sorted(r.record_id for r in records)


def test_put_all_collects_failures_and_keeps_going() -> None:
    # Given a put that rejects some records with a client error and one with a connection error
    records = [labeled(f"r{i}") for i in range(6)]
    attempted: list[str] = []
    lock = threading.Lock()

    def put(record: LabeledRecord) -> None:
        with lock:
            attempted.append(record.record_id)
        if record.record_id in ("r1", "r4"):
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "bad feature"}}, "PutRecord")
        if record.record_id == "r5":
            raise EndpointConnectionError(endpoint_url="https://featurestore-runtime.example")

    # When they are all put
    failures = put_all(records, put, max_workers=2)

    # Then every record was attempted, and the failures are reported in record order with their error code
    assert sorted(attempted) == [f"r{i}" for i in range(6)]
    assert [f.record_id for f in failures] == ["r1", "r4", "r5"]
    assert failures[0].error.startswith("ValidationError: ")
    assert "bad feature" in failures[0].error
    assert failures[2].error == "EndpointConnectionError"


def test_put_all_honours_max_workers() -> None:
    # Given a slow put that tracks how many calls run at once
    active = peak = 0
    lock = threading.Lock()

    def put(record: LabeledRecord) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1

    # When 12 records are put with at most 3 workers
    failures = put_all([labeled(f"r{i}") for i in range(12)], put, max_workers=3)

    # Then calls ran concurrently, but never more than 3 at a time
    assert failures == []
    assert 2 <= peak <= 3


def test_put_all_stops_taking_records_after_an_unexpected_error_and_raises_it() -> None:
    # Given a put that crashes at the fifth record (as a function running out of time would)
    records = [labeled(f"r{i}") for i in range(200)]
    attempted: list[str] = []
    lock = threading.Lock()

    def put(record: LabeledRecord) -> None:
        with lock:
            attempted.append(record.record_id)
        if record.record_id == "r4":
            raise RuntimeError("crashed at r4")
        time.sleep(0.001)

    # When they are put on four threads / Then the crash is raised, and the threads took no record much after it
    with pytest.raises(RuntimeError, match="crashed at r4"):
        put_all(records, put, max_workers=4)
    assert "r4" in attempted and len(attempted) == len(set(attempted)) < 20


def test_put_all_with_no_records() -> None:
    # Given no records
    # When they are put / Then there are no failures and put is never called
    assert put_all([], lambda record: None, max_workers=1) == []


# ------------------------------------------------------------------------ checkpoints and exactly once
class FakeStore:
    """PutRecord/GetRecord in memory; every accepted write is kept (the offline store), the latest per id online."""

    def __init__(self, crash_at: int | None = None, refuse: frozenset[str] = frozenset()) -> None:
        self.crash_at, self.refuse = crash_at, refuse
        self.writes: list[dict[str, str]] = []
        self.online: dict[str, list[dict[str, str]]] = {}
        self.calls = 0
        self.gets = 0
        self.lock = threading.Lock()

    def put_record(self, FeatureGroupName: str, Record: list[dict[str, str]]) -> None:  # noqa: N803
        values = {item["FeatureName"]: item["ValueAsString"] for item in Record}
        with self.lock:
            self.calls += 1
            if self.crash_at is not None and self.calls == self.crash_at:
                raise Crash(f"crashed at {self.calls}")
            if values["record_id"] in self.refuse:
                raise ClientError({"Error": {"Code": "ValidationError", "Message": "refused"}}, "PutRecord")
            self.writes.append(values)
            self.online[values["record_id"]] = Record

    def get_record(self, FeatureGroupName: str, RecordIdentifierValueAsString: str) -> dict[str, Any]:  # noqa: N803
        with self.lock:
            self.gets += 1
            record = self.online.get(RecordIdentifierValueAsString)
        return {"Record": record} if record else {}


class Crash(Exception):
    """Not a botocore error: it stops the step, as a crash would."""


def lines(count: int) -> list[dict[str, Any]]:
    return [labeled(f"r{n:03d}").model_dump() for n in range(count)]


def ingest(s3: Any, store: FakeStore, count: int = 20, batch: int = 4) -> IngestProgress:
    checkpoints = Checkpoints.of_run(s3, BUCKET, RunLayout("reviews", "run-1"))
    return ingest_stream(lines(count), "s3://b/labeled.jsonl", FeatureStoreWriter(store, "g"), checkpoints, 2, batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("crash_at", [1, 4, 5, 11, 20])
def test_a_step_that_crashed_and_ran_again_writes_every_record_exactly_once(
    s3: Any, bucket: str, crash_at: int
) -> None:
    # Given an ingestion of 20 records in batches of 4 that crashes as it sends record `crash_at`
    store = FakeStore(crash_at=crash_at)
    with pytest.raises(Crash):
        ingest(s3, store)
    # When the step runs again
    progress = ingest(s3, store)
    # Then every record was written once, and the checkpoint counts them all
    assert sorted(w["record_id"] for w in store.writes) == [f"r{n:03d}" for n in range(20)]
    assert (progress.batches_done, progress.ingested, progress.failed) == (5, 20, 0)
    # And only the interrupted batch was checked against the online store
    assert store.gets == 4


def test_a_step_that_finished_and_ran_again_writes_nothing(s3: Any, bucket: str) -> None:
    # Given an ingestion that finished / When the step runs again (a retry after a lost response)
    store = FakeStore()
    ingest(s3, store)
    progress = ingest(s3, store)
    # Then nothing was written twice and nothing was probed
    assert len(store.writes) == 20 and store.gets == 0 and progress.ingested == 20


def test_failures_are_kept_per_batch_and_counted(s3: Any, bucket: str) -> None:
    # Given a store that refuses two records in different batches
    store = FakeStore(refuse=frozenset({"r001", "r013"}))
    # When they are ingested
    progress = ingest(s3, store)
    # Then the checkpoint counts them, and each failing batch has its failures file
    assert (progress.ingested, progress.failed, progress.failure_batches) == (18, 2, [0, 3])
    checkpoints = Checkpoints.of_run(s3, BUCKET, RunLayout("reviews", "run-1"))
    assert [f.record_id for f in checkpoints.failures(progress)] == ["r001", "r013"]


def test_a_checkpoint_of_another_file_is_refused(s3: Any, bucket: str) -> None:
    # Given a checkpoint of one labeled file
    ingest(s3, FakeStore())
    checkpoints = Checkpoints.of_run(s3, BUCKET, RunLayout("reviews", "run-1"))
    # When another file is ingested with it / Then it is refused, naming both
    with pytest.raises(ManifestError, match="not s3://b/other.jsonl"):
        ingest_stream(lines(3), "s3://b/other.jsonl", FeatureStoreWriter(FakeStore(), "g"), checkpoints, 1)  # type: ignore[arg-type]


def test_ingestion_reads_the_file_a_batch_at_a_time() -> None:
    # Given 5000 lines produced lazily, and a put that notes how far reading ran ahead of writing
    produced = done = 0
    ahead: list[int] = []
    lock = threading.Lock()

    def produce() -> Iterator[dict[str, Any]]:
        nonlocal produced
        for line in lines(5000):
            produced += 1
            yield line

    class Counting(FakeStore):
        def put_record(self, FeatureGroupName: str, Record: list[dict[str, str]]) -> None:  # noqa: N803
            nonlocal done
            with lock:
                ahead.append(produced - done)
                done += 1

    class Memory:
        folder, failures_key, s3, bucket = "f", "f/x", None, "b"

        def load(self) -> None:
            return None

        def save(self, progress: IngestProgress) -> None:
            pass

    # When they are ingested in batches of 100
    ingest_stream(produce(), "s3://b/l", FeatureStoreWriter(Counting(), "g"), Memory(), 4, 100)  # type: ignore[arg-type]
    # Then every record was written, and reading never ran more than one batch ahead
    assert done == 5000 and max(ahead) <= 100
