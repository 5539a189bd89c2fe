"""IngestFeatures: PutRecord every labeled record, with bounded concurrency and a report of failures."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import batched
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from labelflow.aws import error_code
from labelflow.feature_groups import require_usable
from labelflow.layout import RunLayout
from labelflow.models.records import IngestFailure, LabeledRecord
from labelflow.models.state import IngestOutput, WorkflowState
from labelflow.s3 import S3Location, iter_jsonl, put_jsonl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_featurestore_runtime import SageMakerFeatureStoreRuntimeClient


# Records in flight per worker: enough to keep the pool busy, small enough to bound memory.
_WINDOW_PER_WORKER = 64


def feature_record(record: LabeledRecord) -> list[dict[str, str]]:
    """A PutRecord `Record`: every value as a string, labelflow's own columns after the features."""
    values: dict[str, Any] = {
        "record_id": record.record_id,
        "event_time": record.event_time,
        **record.features,
        "label": record.label,
        "label_source": record.label_source,
        "label_confidence": record.label_confidence,
        "run_id": record.run_id,
    }
    return [{"FeatureName": name, "ValueAsString": str(value)} for name, value in values.items()]


def put_all(
    records: Iterable[LabeledRecord], put: Callable[[LabeledRecord], None], max_workers: int
) -> list[IngestFailure]:
    """Call `put` for every record on a bounded pool; collect failures instead of stopping at the first.

    Records are taken a window at a time, so a large file is never held in memory whole.
    """

    def attempt(record: LabeledRecord) -> IngestFailure | None:
        try:
            put(record)
        except ClientError as exc:
            return IngestFailure(record_id=record.record_id, error=f"{error_code(exc)}: {exc}")
        except BotoCoreError as exc:
            return IngestFailure(record_id=record.record_id, error=type(exc).__name__)
        return None

    failures: list[IngestFailure] = []
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for window in batched(records, max_workers * _WINDOW_PER_WORKER):
            failures += [failure for failure in pool.map(attempt, window) if failure is not None]
    return failures


def ingest_features(
    run: WorkflowState,
    s3: S3Client,
    sagemaker: SageMakerClient,
    featurestore: SageMakerFeatureStoreRuntimeClient,
    max_workers: int,
) -> IngestOutput:
    """PutRecord every labeled record into the group the plan named, once that group is usable."""
    plan, merged = run.require_plan(), run.require_merge()
    group = plan.feature_group.name
    require_usable(sagemaker, group)
    labeled = S3Location.parse(merged.labeled_uri)
    seen = 0

    def records() -> Iterator[LabeledRecord]:
        nonlocal seen
        for line in iter_jsonl(s3, *labeled):
            seen += 1
            yield LabeledRecord.model_validate(line)

    def put(record: LabeledRecord) -> None:
        # botocore's adaptive retry mode already backs off on throttling and 5xx before we see an error.
        featurestore.put_record(FeatureGroupName=group, Record=feature_record(record))  # type: ignore[arg-type]

    failures = put_all(records(), put, max_workers)
    failures_uri = None
    if failures:
        failures_uri = put_jsonl(s3, run.bucket, RunLayout(run.dataset, run.run_id).ingest_failures_key, failures)
    return IngestOutput(
        feature_group=group,
        ingested=seen - len(failures),
        failed=len(failures),
        failures_uri=failures_uri,
    )
