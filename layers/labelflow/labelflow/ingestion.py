"""IngestFeatures: PutRecord every labeled record exactly once, fanned out over batches, with one failure report.

Fan-out: MergeLabels splits the labeled file into batches (byte ranges of whole lines) and the state machine's Map
runs one IngestFeatures invocation per batch, a bounded number at a time. Each iteration catches its own error,
so a batch that fails loses no other; FinalizeRun gathers the batches (`gather`) into the run's counts and ONE
ingest-failures file, which `labelflow reingest` and the reingest execution input send again.

Exactly once across retries and re-drives, per batch: records are written in chunks of BATCH_SIZE, in file order,
and a checkpoint in S3 (`IngestProgress`, in the batch's own folder under the run prefix) counts each finished
chunk before the next begins. A step that starts again skips the finished chunks; of the chunk that was in flight,
it first asks the online store (GetRecord) which records this run already wrote, and sends only the others. A
checkpoint, not Powertools Idempotency: the idempotency record of one Lambda invocation says "done" or "in
progress" for the whole call, so a call that crashed half-way would be either repeated whole (duplicates) or
refused; progress has to be kept per chunk.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import batched
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from labelflow.aws import error_code, raise_if_retryable
from labelflow.errors import ManifestError
from labelflow.feature_groups import require_usable
from labelflow.layout import RunLayout
from labelflow.models.records import IngestFailure, IngestProgress, LabeledRecord
from labelflow.models.run import RunManifest
from labelflow.models.state import (
    BatchOutcome,
    IngestBatch,
    IngestBatchInput,
    IngestOutput,
    ReingestInput,
    ReingestState,
    WorkflowState,
)
from labelflow.putrecord import FeatureStoreRuntime, PutRecordClient
from labelflow.s3 import S3Location, get_json, iter_jsonl, put_json, put_jsonl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient


# Records per checkpoint chunk: at a few hundred records/s, one small S3 PUT a second or two; a retry re-checks at
# most this many.
BATCH_SIZE = 512


def ingest_client(max_workers: int) -> PutRecordClient:
    """A Feature Store runtime client shared by `max_workers` threads, with a pooled connection for each.

    PutRecord is built and signed by labelflow.putrecord rather than botocore (bench/scale_ingest.py: botocore's
    per-call CPU capped one Lambda near 500 records/s). Retries stay botocore's standard mode: 8 retries of
    throttling, 5xx and connection errors with exponential backoff and jitter (botocore retries/standard.py).
    """
    config = Config(
        retries={"max_attempts": 8, "mode": "standard"},
        max_pool_connections=max_workers,
        connect_timeout=5,
        read_timeout=60,
    )
    return PutRecordClient.create(config)


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
    """Call `put` for every record of one batch on `max_workers` threads; collect failures instead of stopping.

    Each thread takes the next record until none is left (a future per record was a tenth of ingestion's CPU). An
    exception other than the service's stops every thread taking records and is raised; records in flight may land.
    """
    batch = list(records)
    failures: list[IngestFailure | None] = [None] * len(batch)
    taken = itertools.count()  # next() on it is atomic: each index goes to one thread
    crashed = threading.Event()

    def attempt(record: LabeledRecord) -> IngestFailure | None:
        try:
            put(record)
        except ClientError as exc:
            return IngestFailure(record_id=record.record_id, error=f"{error_code(exc)}: {exc}")
        except BotoCoreError as exc:
            return IngestFailure(record_id=record.record_id, error=type(exc).__name__)
        return None

    def work() -> None:
        while not crashed.is_set() and (index := next(taken)) < len(batch):
            try:
                failures[index] = attempt(batch[index])
            except BaseException:
                crashed.set()
                raise

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        workers = [pool.submit(work) for _ in range(min(max_workers, len(batch)))]
    for worker in workers:
        worker.result()
    return [failure for failure in failures if failure is not None]


@dataclass(frozen=True)
class Checkpoints:
    """Where one ingestion keeps its progress: `<folder>/progress.json` and a failures file per failing batch."""

    s3: S3Client
    bucket: str
    folder: str
    failures_key: str  # where the failures of every batch are gathered at the end

    @classmethod
    def of_run(cls, s3: S3Client, bucket: str, layout: RunLayout, attempt: str | None = None) -> Checkpoints:
        """The run's ingestion (`attempt` None) or one of its reingests."""
        return cls(s3, bucket, layout.ingest_folder(attempt), layout.ingest_failures_key_of(attempt))

    @classmethod
    def of_batch(cls, s3: S3Client, bucket: str, layout: RunLayout, index: int) -> Checkpoints:
        """One ingest batch of the run: its own checkpoint, and its failures gathered in its folder."""
        folder = f"{layout.ingest_folder()}/batch-{index:05d}"
        return cls(s3, bucket, folder, f"{folder}/ingest-failures.jsonl")

    def batch_failures_key(self, batch: int) -> str:
        return f"{self.folder}/failures-{batch:08d}.jsonl"

    def load(self) -> IngestProgress | None:
        try:
            return IngestProgress.model_validate(get_json(self.s3, self.bucket, f"{self.folder}/progress.json"))
        except ManifestError as exc:
            if "missing object" in str(exc):
                return None
            raise
        except ValidationError as exc:
            raise ManifestError(f"s3://{self.bucket}/{self.folder}/progress.json is not a checkpoint") from exc

    def save(self, progress: IngestProgress) -> None:
        put_json(self.s3, self.bucket, f"{self.folder}/progress.json", progress)

    def failures(self, progress: IngestProgress) -> Iterator[IngestFailure]:
        for batch in progress.failure_batches:
            for line in iter_jsonl(self.s3, self.bucket, self.batch_failures_key(batch)):
                yield IngestFailure.model_validate(line)


@dataclass(frozen=True)
class FeatureStoreWriter:
    """PutRecord, and GetRecord to tell whether a record of this run is already in the online store."""

    featurestore: FeatureStoreRuntime
    group: str

    def put(self, record: LabeledRecord) -> None:
        # The client's retries already back off on throttling, 5xx and connection errors before we see an error.
        self.featurestore.put_record(FeatureGroupName=self.group, Record=feature_record(record))

    def written(self, record: LabeledRecord) -> bool:
        """True when the online store holds this run's write of the record: same id, event time and run id.

        Values are not compared: Feature Store may give numbers back spelled differently than they were sent.
        """
        try:
            stored = self.featurestore.get_record(
                FeatureGroupName=self.group, RecordIdentifierValueAsString=record.record_id
            ).get("Record", [])
        except ClientError as exc:
            raise_if_retryable(exc, f"get record {record.record_id} from {self.group}")
            raise
        values = {item["FeatureName"]: item.get("ValueAsString") for item in stored}
        return values.get("event_time") == record.event_time and values.get("run_id") == record.run_id


def _records(s3: S3Client, source: S3Location, keep: Callable[[str], bool] | None = None) -> Iterator[dict[str, Any]]:
    for line in iter_jsonl(s3, *source):
        if keep is None or keep(str(line.get("record_id"))):
            yield line


def batch_records(s3: S3Client, labeled: S3Location, batch: IngestBatch) -> Iterator[dict[str, Any]]:
    """The lines of one ingest batch: a ranged GetObject of the labeled file, streamed."""
    span = f"bytes={batch.first_byte}-{batch.last_byte}"
    try:
        body = s3.get_object(Bucket=labeled.bucket, Key=labeled.key, Range=span)["Body"]
    except ClientError as exc:
        raise_if_retryable(exc, f"get {labeled.uri} {span}")
        raise
    for line in body.iter_lines():
        if line.strip():
            yield json.loads(line)


def _unwritten(batch: list[LabeledRecord], writer: FeatureStoreWriter, max_workers: int) -> list[LabeledRecord]:
    """The records of an interrupted batch that are not in the store yet (asked concurrently)."""
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return [record for record, done in zip(batch, pool.map(writer.written, batch), strict=True) if not done]


def ingest_stream(
    lines: Iterable[dict[str, Any]],
    source_uri: str,
    writer: FeatureStoreWriter,
    checkpoints: Checkpoints,
    max_workers: int,
    batch_size: int | None = None,
) -> IngestProgress:
    """Write `lines` batch by batch, resuming after the checkpoint's last finished batch; returns the progress."""
    progress = checkpoints.load()
    # The batch a restarted step was in the middle of: some of its records may be in the store already.
    in_flight = progress.batches_done if progress is not None else None
    if progress is None:
        progress = IngestProgress(source_uri=source_uri, batch_size=batch_size or BATCH_SIZE)
        # Saved before the first PutRecord: from now on a restart knows the first batch may be partly written.
        checkpoints.save(progress)
    elif progress.source_uri != source_uri:
        raise ManifestError(f"checkpoint {checkpoints.folder} is for {progress.source_uri}, not {source_uri}")
    for index, chunk in enumerate(batched(lines, progress.batch_size)):
        if index < progress.batches_done:
            continue
        batch = [LabeledRecord.model_validate(line) for line in chunk]
        pending = _unwritten(batch, writer, max_workers) if index == in_flight else batch
        failures = put_all(pending, writer.put, max_workers)
        if failures:
            put_jsonl(checkpoints.s3, checkpoints.bucket, checkpoints.batch_failures_key(index), failures)
            progress.failure_batches.append(index)
        progress.batches_done = index + 1
        progress.ingested += len(batch) - len(failures)
        progress.failed += len(failures)
        checkpoints.save(progress)
    return progress


def _gathered_failures(progress: IngestProgress, checkpoints: Checkpoints) -> str | None:
    """The failures of every checkpoint batch gathered into one file, when there are any."""
    if not progress.failed:
        return None
    return put_jsonl(checkpoints.s3, checkpoints.bucket, checkpoints.failures_key, checkpoints.failures(progress))


def _output(group: str, progress: IngestProgress, checkpoints: Checkpoints) -> IngestOutput:
    return IngestOutput(
        feature_group=group,
        ingested=progress.ingested,
        failed=progress.failed,
        failures_uri=_gathered_failures(progress, checkpoints),
    )


def _batch_source(labeled_uri: str, batch: IngestBatch) -> str:
    return f"{labeled_uri}#bytes={batch.first_byte}-{batch.last_byte}"


def ingest_batch(
    request: IngestBatchInput,
    s3: S3Client,
    sagemaker: SageMakerClient,
    featurestore: FeatureStoreRuntime,
    max_workers: int,
) -> BatchOutcome:
    """One Map iteration: PutRecord every record of one batch of the labeled file, once the group is usable."""
    require_usable(sagemaker, request.feature_group)
    batch = request.batch
    checkpoints = Checkpoints.of_batch(s3, request.bucket, RunLayout(request.dataset, request.run_id), batch.index)
    labeled = S3Location.parse(request.labeled_uri)
    writer = FeatureStoreWriter(featurestore, request.feature_group)
    lines = batch_records(s3, labeled, batch)
    progress = ingest_stream(lines, _batch_source(labeled.uri, batch), writer, checkpoints, max_workers)
    return BatchOutcome(
        index=batch.index,
        ingested=progress.ingested,
        failed=progress.failed,
        failures_uri=_gathered_failures(progress, checkpoints),
    )


@dataclass
class _Tally:
    """The run's ingestion added up over its batches."""

    ingested: int = 0
    failed: int = 0
    began: bool = False
    failures: list[IngestFailure] = field(default_factory=list)

    def add(self, ingested: int, failures: Iterable[IngestFailure]) -> None:
        rows = list(failures)
        self.ingested += ingested
        self.failed += len(rows)
        self.failures += rows


def _settle_batch(
    lines: Iterable[dict[str, Any]], checkpoints: Checkpoints, writer: FeatureStoreWriter, why: str, max_workers: int
) -> tuple[int, list[IngestFailure]]:
    """What a batch that stopped wrote (its checkpoint, then the online store for the batch in flight) and the
    records it never wrote, as failures; a batch with no checkpoint sent nothing (it is saved before any write)."""
    progress = checkpoints.load()
    stopped = f"not written: ingestion stopped ({why})"
    if progress is None:
        return 0, [IngestFailure(record_id=str(line.get("record_id")), error=stopped) for line in lines]
    ingested, failures = progress.ingested, list(checkpoints.failures(progress))
    for index, chunk in enumerate(batched(lines, progress.batch_size)):
        if index < progress.batches_done:
            continue
        batch = [LabeledRecord.model_validate(line) for line in chunk]
        pending = _unwritten(batch, writer, max_workers) if index == progress.batches_done else batch
        ingested += len(batch) - len(pending)
        failures += [IngestFailure(record_id=record.record_id, error=stopped) for record in pending]
    return ingested, failures


def gather(
    run: WorkflowState, s3: S3Client, featurestore: FeatureStoreRuntime, max_workers: int = 8
) -> IngestOutput | None:
    """The run's ingestion over all its batches, with ONE failures file: what each finished batch reported, and
    for a batch that stopped (its error caught, or the Map itself failed) what its checkpoint and the online store
    say it wrote; the records it never reached are failures, so a reingest sends them. None when no batch began."""
    if run.ingest is not None or run.merge is None or run.plan is None:
        return None
    merged, group = run.merge, run.plan.feature_group.name
    layout, labeled = RunLayout(run.dataset, run.run_id), S3Location.parse(run.merge.labeled_uri)
    finished = {outcome.index: outcome for outcome in run.ingest_batches or [] if outcome.error is None}
    errors = {outcome.index: outcome.error for outcome in run.ingest_batches or [] if outcome.error is not None}
    writer, tally = FeatureStoreWriter(featurestore, group), _Tally()
    for batch in merged.batches:
        if (outcome := finished.get(batch.index)) is not None:
            failures = iter_jsonl(s3, *S3Location.parse(outcome.failures_uri)) if outcome.failures_uri else []
            tally.add(outcome.ingested, map(IngestFailure.model_validate, failures))
            tally.began = True
            continue
        checkpoints = Checkpoints.of_batch(s3, run.bucket, layout, batch.index)
        error = errors.get(batch.index) or run.error
        why = error.error if error else "no error recorded"
        tally.began = tally.began or checkpoints.load() is not None
        tally.add(*_settle_batch(batch_records(s3, labeled, batch), checkpoints, writer, why, max_workers))
    if not tally.began:
        return None
    failures_uri = put_jsonl(s3, run.bucket, layout.ingest_failures_key, tally.failures) if tally.failed else None
    return IngestOutput(feature_group=group, ingested=tally.ingested, failed=tally.failed, failures_uri=failures_uri)


def read_manifest(s3: S3Client, bucket: str, layout: RunLayout) -> RunManifest:
    try:
        return RunManifest.model_validate(get_json(s3, bucket, layout.run_manifest_key))
    except ValidationError as exc:
        raise ManifestError(f"s3://{bucket}/{layout.run_manifest_key} is not a run.json") from exc


def reingest(
    request: ReingestInput,
    s3: S3Client,
    sagemaker: SageMakerClient,
    featurestore: FeatureStoreRuntime,
    max_workers: int,
) -> IngestOutput:
    """Send again, exactly once, the records a finished run failed to ingest (its ingest-failures file)."""
    layout = RunLayout(request.dataset, request.run_id)
    manifest = read_manifest(s3, request.bucket, layout)
    failures_uri, labeled_uri = manifest.artifacts.ingest_failures_uri, manifest.artifacts.labeled_uri
    if manifest.feature_group is None or labeled_uri is None:
        raise ManifestError(f"run {request.run_id} never reached ingestion: start it again instead")
    group = manifest.feature_group.name
    if failures_uri is None:
        return IngestOutput(feature_group=group, ingested=0, failed=0)
    failures = S3Location.parse(failures_uri)
    failed_ids = {str(line["record_id"]) for line in iter_jsonl(s3, *failures)}
    require_usable(sagemaker, group)
    # Each reingest keeps its own checkpoint, numbered after the earlier ones run.json lists.
    checkpoints = Checkpoints.of_run(s3, request.bucket, layout, f"reingest-{len(manifest.reingests) + 1}")
    labeled = S3Location.parse(labeled_uri)
    lines = _records(s3, labeled, failed_ids.__contains__)
    progress = ingest_stream(lines, failures.uri, FeatureStoreWriter(featurestore, group), checkpoints, max_workers)
    return _output(group, progress, checkpoints)


def ingest(
    request: IngestBatchInput | ReingestState,
    s3: S3Client,
    sagemaker: SageMakerClient,
    featurestore: FeatureStoreRuntime,
    max_workers: int,
) -> BatchOutcome | IngestOutput:
    """The IngestFeatures function: one batch of a run's labeled records, or a reingest of a run's failed ones."""
    if isinstance(request, ReingestState):
        return reingest(request.reingest, s3, sagemaker, featurestore, max_workers)
    return ingest_batch(request, s3, sagemaker, featurestore, max_workers)
