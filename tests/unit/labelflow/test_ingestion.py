"""ingestion.py: feature records for PutRecord, and a bounded pool that reports failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from botocore.exceptions import ClientError, EndpointConnectionError

from labelflow.ingestion import feature_record, put_all
from labelflow.models.records import LabeledRecord


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


def test_put_all_with_no_records() -> None:
    # Given no records
    # When they are put / Then there are no failures and put is never called
    assert put_all([], lambda record: None, max_workers=1) == []


def test_put_all_reads_records_a_window_at_a_time() -> None:
    # Given 5000 records produced lazily and a pool of 2 workers (window 2 × 64)
    produced = 0
    done = 0
    lock = threading.Lock()
    ahead: list[int] = []

    def records() -> Iterator[LabeledRecord]:
        nonlocal produced
        for n in range(5000):
            produced += 1
            yield labeled(f"r{n}")

    def put(record: LabeledRecord) -> None:
        nonlocal done
        with lock:
            ahead.append(produced - done)
            done += 1

    # When they are all put
    failures = put_all(records(), put, max_workers=2)
    # Then every record was put, and reading never ran more than one window ahead of writing
    assert failures == [] and done == 5000
    assert max(ahead) <= 2 * 64
