"""PlanProcessing: freeze the run's inputs and decide whether the processing job must run."""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError
from pydantic import ValidationError

from labelflow.aws import raise_if_retryable
from labelflow.datasets import load_dataset_spec, probe_input
from labelflow.errors import ConfigError, ManifestError
from labelflow.feature_groups import FeatureStoreConfig, ensure_feature_group
from labelflow.formats import ResolvedInput
from labelflow.layout import PROCESSED_STATS, PROCESSING_CODE_POINTER, RunLayout, feature_group_name, job_name
from labelflow.models.artifacts import ProcessingCode
from labelflow.models.run import ModelLineage
from labelflow.models.settings import PlanSettings, load_settings
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import PlanOutput, WorkflowState
from labelflow.observability import logger
from labelflow.s3 import S3Location, copy_version, exists, get_json, put_bytes, put_json, sha256_of, uri
from labelflow.spark_planning import SparkSettings, choose_engine, with_engine
from labelflow.transform_state import PublishedState, published_state

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

CONTAINER_ROOT = "/opt/ml/processing"
# Bytes read at a time when looking for the record boundary after a cut.
CUT_WINDOW_BYTES = 64 * 1024
# A part copied by UploadPartCopy holds at most 5 GiB; all but the last at least 5 MiB (Amazon S3 User Guide,
# "Amazon S3 multipart upload limits").
MAX_COPY_PART_BYTES = 5 * 1024**3
MIN_PART_BYTES = 5 * 1024**2
# Encodings in which byte 0x0A is a line feed and never part of another character: a cut after it is a line end.
_LINE_SAFE_ENCODINGS = frozenset({"utf-8", "utf-8-sig", "ascii", "iso8859-1", "iso8859-15", "cp1252"})


def load_processing_code(s3: S3Client, bucket: str) -> ProcessingCode:
    try:
        return ProcessingCode.model_validate(get_json(s3, bucket, PROCESSING_CODE_POINTER))
    except ManifestError as exc:
        raise ConfigError(
            f"processing code is not published at s3://{bucket}/{PROCESSING_CODE_POINTER}: run `labelflow publish`"
        ) from exc
    except ValidationError as exc:
        raise ConfigError(f"s3://{bucket}/{PROCESSING_CODE_POINTER} is malformed: {exc.error_count()} errors") from exc


class FrozenObject(NamedTuple):
    """One exact version of an object the run reads."""

    bucket: str
    key: str
    version_id: str | None
    etag: str


def model_artifact(s3: S3Client, spec: DatasetSpec) -> FrozenObject | None:
    """The model's current version, so a new model invalidates the cache; ConfigError when it is missing."""
    if spec.model is None:
        return None
    location = S3Location.parse(spec.model.s3_uri)
    try:
        head = s3.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        raise_if_retryable(exc, f"head {spec.model.s3_uri}")
        raise ConfigError(f"model artifact {spec.model.s3_uri} is not readable") from exc
    return FrozenObject(location.bucket, location.key, head.get("VersionId"), head["ETag"].strip('"'))


def model_lineage(s3: S3Client, spec: DatasetSpec, model: FrozenObject) -> ModelLineage:
    """Hash the exact model version the run will load; a spec that pins another file stops the run here."""
    assert spec.model is not None
    sha256 = sha256_of(s3, model.bucket, model.key, model.version_id)
    if spec.model.sha256 and sha256 != spec.model.sha256:
        raise ConfigError(
            f"model {spec.model.s3_uri} has sha256 {sha256} but the spec pins {spec.model.sha256}: "
            "restore the pinned file or update model.sha256"
        )
    return ModelLineage(
        s3_uri=spec.model.s3_uri, version_id=model.version_id, sha256=sha256, classes=list(spec.model.classes)
    )


def unsplittable(resolved: ResolvedInput) -> str | None:
    """Why the input cannot be cut at line ends into parts read on their own; None when it can."""
    if resolved.gzip:
        return "a gzip stream is read from its start only"
    if resolved.format == "parquet":
        return "a Parquet file's rows are found through its footer"
    if resolved.format == "csv" and resolved.newlines_in_values:
        return (
            "a CSV value may hold a quoted newline, so a line end is not always a record end "
            "(input.newlines_in_values: false says none does)"
        )
    if codecs.lookup(resolved.encoding).name not in _LINE_SAFE_ENCODINGS:
        return f"in {resolved.encoding} a 0x0A byte is not always a line end"
    return None


def part_count(size: int, resolved: ResolvedInput, settings: PlanSettings) -> tuple[int, str | None]:
    """How many parts to freeze the input as, and why only one when several instances were asked for."""
    instances = settings.processing_instance_count
    if instances == 1:
        return 1, None
    if size < settings.processing_shard_min_bytes:
        return 1, f"{size} bytes is below the sharding floor of {settings.processing_shard_min_bytes} bytes"
    reason = unsplittable(resolved)
    return (1, reason) if reason else (instances, None)


def line_end(window: bytes) -> int | None:
    """The offset just past the window's first line feed (a CRLF ends there too), None when it has none."""
    index = window.find(b"\n")
    return None if index < 0 else index + 1


type ByteReader = Callable[[int, int], bytes]


def cut_at(read: ByteReader, target: int, size: int) -> int:
    """The first line end at or after byte `target`: the byte after a line feed at `target - 1` or later."""
    start = target - 1
    while start < size:
        window = read(start, min(start + CUT_WINDOW_BYTES, size))
        end = line_end(window)
        if end is not None:
            return start + end
        start += len(window)
    return size


def record_spans(read: ByteReader, size: int, parts: int) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of about size / parts each, cut at line ends; a range a long record swallowed is
    dropped, so there may be fewer than `parts`."""
    cuts = [0, *(cut_at(read, size * index // parts, size) for index in range(1, parts)), size]
    return [(start, end) for start, end in zip(cuts, cuts[1:], strict=False) if end > start]


def _copy_source(source: S3Location, version_id: str | None) -> dict[str, str]:
    copy_source = {"Bucket": source.bucket, "Key": source.key}
    if version_id and version_id != "null":
        copy_source["VersionId"] = version_id
    return copy_source


def ranged_reader(s3: S3Client, source: S3Location, version_id: str | None) -> ByteReader:
    """Reads bytes [start, end) of exactly this version with one ranged GET."""
    extra = {"VersionId": version_id} if version_id and version_id != "null" else {}

    def read(start: int, end: int) -> bytes:
        try:
            response = s3.get_object(
                Bucket=source.bucket,
                Key=source.key,
                Range=f"bytes={start}-{end - 1}",
                **extra,  # type: ignore[arg-type]
            )
        except ClientError as exc:
            raise_if_retryable(exc, f"read {source.uri} bytes {start}-{end - 1}")
            raise
        return response["Body"].read()

    return read


type UploadedParts = list[dict[str, Any]]


def _copied_parts(
    s3: S3Client,
    source: S3Location,
    version_id: str | None,
    span: tuple[int, int],
    target: S3Location,
    upload: tuple[str, int],
) -> UploadedParts:
    """Bytes [start, end) of the version copied server-side into the upload (its id, the first part number), in
    parts of at most 5 GiB. UploadPartCopy's CopySourceRange is `bytes=first-last`, zero-based and inclusive
    (botocore's s3 model)."""
    start, end = span
    upload_id, first_number = upload
    pieces = -(-(end - start) // MAX_COPY_PART_BYTES)
    bounds = [start + (end - start) * index // pieces for index in range(pieces + 1)]
    parts = []
    for number, (first, stop) in enumerate(zip(bounds, bounds[1:], strict=False), start=first_number):
        copied = s3.upload_part_copy(
            Bucket=target.bucket,
            Key=target.key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource=_copy_source(source, version_id),  # type: ignore[arg-type]
            CopySourceRange=f"bytes={first}-{stop - 1}",
        )
        parts.append({"ETag": copied["CopyPartResult"]["ETag"], "PartNumber": number})
    return parts


def _multipart(s3: S3Client, target: S3Location, send: Callable[[str], UploadedParts], what: str) -> None:
    """One multipart upload of `target` whose parts `send` uploads given the upload id; aborted when one fails."""
    upload_id = s3.create_multipart_upload(Bucket=target.bucket, Key=target.key)["UploadId"]
    try:
        s3.complete_multipart_upload(
            Bucket=target.bucket,
            Key=target.key,
            UploadId=upload_id,
            MultipartUpload={"Parts": send(upload_id)},  # type: ignore[typeddict-item]
        )
    except Exception as exc:
        # A ranged read in `send` fails as a retryable error too: the upload is aborted all the same.
        _abort(s3, target, upload_id)
        if isinstance(exc, ClientError):
            raise_if_retryable(exc, what)
        raise


def copy_span(
    s3: S3Client, source: S3Location, version_id: str | None, span: tuple[int, int], target: S3Location
) -> None:
    """Copy bytes [start, end) of the version into their own object server-side, in parts of at most 5 GiB."""

    def send(upload_id: str) -> UploadedParts:
        return _copied_parts(s3, source, version_id, span, target, (upload_id, 1))

    _multipart(s3, target, send, f"copy {source.uri} bytes {span[0]}-{span[1] - 1}")


def copy_span_after(
    s3: S3Client, source: S3Location, version_id: str | None, span: tuple[int, int], target: S3Location, head: bytes
) -> None:
    """Bytes [start, end) of the version after `head` (a CSV header) in their own object.

    A part but the last holds at least MIN_PART_BYTES, so the head cannot be a part of its own: it goes with the
    span's first MIN_PART_BYTES (read, then UploadPart) and the rest is copied server-side; a span that short is
    read and put whole. At most MIN_PART_BYTES of the span is ever held in memory.
    """
    start, end = span
    read = ranged_reader(s3, source, version_id)
    if end - start <= MIN_PART_BYTES:
        put_bytes(s3, target.bucket, target.key, head + read(start, end), "text/csv")
        return
    middle = start + MIN_PART_BYTES

    def send(upload_id: str) -> UploadedParts:
        sent = s3.upload_part(
            Bucket=target.bucket, Key=target.key, UploadId=upload_id, PartNumber=1, Body=head + read(start, middle)
        )
        first = {"ETag": sent["ETag"], "PartNumber": 1}
        return [first, *_copied_parts(s3, source, version_id, (middle, end), target, (upload_id, 2))]

    _multipart(s3, target, send, f"copy {source.uri} bytes {start}-{end - 1} after its header")


def _abort(s3: S3Client, target: S3Location, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=target.bucket, Key=target.key, UploadId=upload_id)
    except ClientError:
        # The bucket's AbortIncompleteMultipartUploads lifecycle rule removes the parts later (template.yaml).
        logger.warning("multipart upload not aborted", extra={"bucket": target.bucket, "key": target.key})


def part_key(layout: RunLayout, index: int, filename: str) -> str:
    """Part `index` of the frozen input: zero-padded folders, so key order is record order."""
    return layout.input_key(f"{index:03d}/{filename}")


def csv_header(read: ByteReader, size: int, resolved: ResolvedInput) -> bytes | None:
    """The CSV file's first line with its line end, a UTF-8 byte order mark left out (the first part keeps the
    file's own); None when the first window holds no line end."""
    window = read(0, min(size, CUT_WINDOW_BYTES))
    end = line_end(window)
    if end is None:
        return None
    utf8 = codecs.lookup(resolved.encoding).name in ("utf-8", "utf-8-sig")
    return window[:end].removeprefix(codecs.BOM_UTF8) if utf8 else window[:end]


def freeze_input(s3: S3Client, run: WorkflowState, layout: RunLayout, parts: int, resolved: ResolvedInput) -> int:
    """Copy the landed version under the run prefix, as `parts` objects cut at line ends; returns how many.

    Every part of a CSV file is a CSV file: the parts after the first start with a copy of the header line.
    """
    source = S3Location(run.bucket, run.key)
    filename = run.key.rsplit("/", 1)[-1]
    read = ranged_reader(s3, source, run.version_id)
    head = csv_header(read, run.size, resolved) if parts > 1 and resolved.format == "csv" else b""
    if parts == 1 or head is None:
        copy_version(s3, source, run.version_id, S3Location(run.bucket, layout.input_key(filename)))
        return 1
    spans = record_spans(read, run.size, parts)
    for index, span in enumerate(spans):
        target = S3Location(run.bucket, part_key(layout, index, filename))
        if index and head:
            copy_span_after(s3, source, run.version_id, span, target, head)
        else:
            copy_span(s3, source, run.version_id, span, target)
    return len(spans)


def cache_key(
    run: WorkflowState,
    code_sha256: str,
    spec: DatasetSpec,
    model_etag: str | None,
    state: PublishedState | None,
    resolved: ResolvedInput,
    parts: int = 1,
) -> str:
    """Input version × code hash × parameters × applied state: equal keys mean byte-identical processing outputs."""
    material = {
        "input": [run.bucket, run.key, run.version_id, run.etag],
        # How the job is told to read it: the layer's format rules may change while input, spec and code do not.
        "read_as": resolved.container_arguments(),
        "code": code_sha256,
        "spec": spec.model_dump(mode="json"),
        "model": model_etag,
        "state": [state.location.key, state.version_id, state.etag] if state else None,
        "default_event_time": run.received_at,
    }
    if parts > 1:
        # Each instance names its own outputs, so the files differ though the records do not.
        material["parts"] = parts
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def container_arguments(
    run: WorkflowState, spec: DatasetSpec, state: PublishedState | None, resolved: ResolvedInput
) -> list[str]:
    """Every path spelled out, and how to read the input as planning resolved it: the script detects nothing.

    At most 100 arguments of at most 256 characters each (ContainerArguments in botocore's sagemaker model).
    """
    arguments = [
        "--input-dir", f"{CONTAINER_ROOT}/input/data",
        "--spec", f"{CONTAINER_ROOT}/input/spec/spec.json",
        "--output-dir", f"{CONTAINER_ROOT}/output",
        "--message-file", "/opt/ml/output/message",
        "--default-event-time", run.received_at,
    ]  # fmt: skip
    if spec.model is not None:
        arguments += ["--model-dir", f"{CONTAINER_ROOT}/input/model"]
    if state is not None:
        arguments += ["--state-dir", f"{CONTAINER_ROOT}/input/state"]
    return arguments + resolved.container_arguments()


def s3_input(name: str, s3_uri: str, distribution: str = "FullyReplicated") -> dict[str, Any]:
    """A ProcessingInput copying an S3 prefix to /opt/ml/processing/input/<name> before the job starts."""
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": s3_uri,
            "LocalPath": f"{CONTAINER_ROOT}/input/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": distribution,
            "S3CompressionType": "None",
        },
    }


def processing_job_request(
    run: WorkflowState,
    layout: RunLayout,
    code: ProcessingCode,
    spec: DatasetSpec,
    processed_uri: str,
    key: str,
    settings: PlanSettings,
    state: PublishedState | None,
    resolved: ResolvedInput,
    parts: int = 1,
) -> dict[str, Any]:
    """CreateProcessingJob fields (less RoleArn, which the state machine adds).

    With several parts, each instance downloads only some of them (ShardedByS3Key); every other input is
    replicated to every instance.
    """

    inputs = [
        s3_input("data", uri(run.bucket, layout.input_key("")), "ShardedByS3Key" if parts > 1 else "FullyReplicated"),
        s3_input("spec", uri(run.bucket, layout.spec_key.rsplit("/", 1)[0] + "/")),
        s3_input("code", code.s3_prefix),
    ]
    if spec.model is not None:
        inputs.append(s3_input("model", uri(run.bucket, layout.model_key(""))))
    if state is not None:
        # Published states are written once (a conditional create), so the folder holds exactly this object.
        inputs.append(s3_input("state", uri(state.location.bucket, state.location.key.rsplit("/", 1)[0] + "/")))
    return {
        "ProcessingJobName": job_name("lf", run.dataset, run.run_id, key[:8]),
        "AppSpecification": {
            "ImageUri": settings.processing_image_uri,
            "ContainerEntrypoint": ["python3", f"{CONTAINER_ROOT}/input/code/{code.entrypoint}"],
            "ContainerArguments": container_arguments(run, spec, state, resolved),
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": settings.processing_instance_count,
                "InstanceType": settings.processing_instance_type,
                "VolumeSizeInGB": settings.processing_volume_size_gb,
            }
        },
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "processed",
                    "S3Output": {
                        "S3Uri": processed_uri,
                        "LocalPath": f"{CONTAINER_ROOT}/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "Environment": {"LABELFLOW_DATASET": run.dataset, "LABELFLOW_RUN_ID": run.run_id},
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.processing_max_runtime_seconds},
    }


class ShardPasses(NamedTuple):
    """The jobs a sharded input needs: a scan and a stats pass before the Process job, which reads both."""

    scan_job: dict[str, Any]
    stats_job: dict[str, Any]
    processing_job: dict[str, Any]


def shard_passes(request: dict[str, Any], processed_uri: str, names: tuple[str, str]) -> ShardPasses:
    """From the Process job's request over a sharded input: the scan pass (ids and counts of every part), the stats
    pass (each part's statistics without the whole input's duplicates), and the Process job given both, every
    instance reading every part's files (processing's labelflow_processing/shards.py); `names` are the passes' job
    names."""

    def folder_input(name: str) -> dict[str, Any]:
        return s3_input(name, f"{processed_uri}{name}/")

    def variant(name: str, arguments: list[str], inputs: list[dict[str, Any]], output: str) -> dict[str, Any]:
        app = request["AppSpecification"]
        config = request["ProcessingOutputConfig"]
        outputs = [{**item, "S3Output": {**item["S3Output"], "S3Uri": output}} for item in config["Outputs"]]
        return {
            **request,
            "ProcessingJobName": name,
            "AppSpecification": {**app, "ContainerArguments": [*app["ContainerArguments"], *arguments]},
            "ProcessingInputs": [*request["ProcessingInputs"], *inputs],
            "ProcessingOutputConfig": {**config, "Outputs": outputs},
        }

    scan_dir, stats_dir = f"{CONTAINER_ROOT}/input/scan", f"{CONTAINER_ROOT}/input/stats"
    return ShardPasses(
        scan_job=variant(names[0], ["--shard-pass", "scan"], [], f"{processed_uri}scan/"),
        stats_job=variant(
            names[1],
            ["--shard-pass", "stats", "--scan-dir", scan_dir],
            [folder_input("scan")],
            f"{processed_uri}stats/",
        ),
        processing_job={
            **request,
            "AppSpecification": {
                **request["AppSpecification"],
                "ContainerArguments": [
                    *request["AppSpecification"]["ContainerArguments"],
                    *("--scan-dir", scan_dir, "--stats-dir", stats_dir),
                ],
            },
            "ProcessingInputs": [*request["ProcessingInputs"], folder_input("scan"), folder_input("stats")],
        },
    )


def plan_processing(run: WorkflowState, s3: S3Client, sagemaker: SageMakerClient, settings: PlanSettings) -> PlanOutput:
    """Validate the landed object against its spec, ready its feature group, freeze inputs, and plan the job."""
    layout = RunLayout(run.dataset, run.run_id)
    spec, _ = load_dataset_spec(s3, run.bucket, run.dataset)
    resolved = probe_input(s3, run.bucket, run.key, run.version_id, spec, settings.max_records_per_run)
    code = load_processing_code(s3, run.bucket)
    model = model_artifact(s3, spec)
    lineage = model_lineage(s3, spec, model) if model is not None else None
    group = ensure_feature_group(
        sagemaker,
        feature_group_name(settings.feature_group_prefix, run.dataset),
        spec,
        FeatureStoreConfig(settings.feature_store_role_arn, settings.offline_store_s3_uri),
    )
    state_lineage, state = published_state(s3, run.bucket, spec)
    engine = choose_engine(spec, run.size, load_settings(SparkSettings))
    requested, single_because = (
        (1, "the Spark engine splits the input itself")
        if engine == "spark"
        else part_count(run.size, resolved, settings)
    )
    parts = requested
    if single_because:
        logger.info("input frozen as one part", extra={"run_id": run.run_id, "reason": single_because})
    key = cache_key(run, code.sha256, spec, model.etag if model else None, state, resolved, requested)
    processed_prefix = layout.processed_prefix(key)
    cache_hit = exists(s3, run.bucket, processed_prefix + PROCESSED_STATS)

    filename = run.key.rsplit("/", 1)[-1]
    if not cache_hit:
        # Jobs read copies of exactly these versions under the run prefix, never the mutable keys.
        parts = freeze_input(s3, run, layout, parts, resolved)
        if model is not None:
            frozen_model = S3Location(run.bucket, layout.model_key(model.key.rsplit("/", 1)[-1]))
            copy_version(s3, S3Location(model.bucket, model.key), model.version_id, frozen_model)
    spec_uri = put_json(s3, run.bucket, layout.spec_key, spec)
    processed_uri = uri(run.bucket, processed_prefix)
    job = processing_job_request(run, layout, code, spec, processed_uri, key, settings, state, resolved, parts)
    names = (
        job_name("lf", run.dataset, run.run_id, key[:8], "scan"),
        job_name("lf", run.dataset, run.run_id, key[:8], "stats"),
    )
    passes = shard_passes(job, processed_uri, names) if parts > 1 else None
    plan = PlanOutput(
        dataset=run.dataset,
        run_id=run.run_id,
        run_prefix=uri(run.bucket, layout.prefix),
        spec_uri=spec_uri,
        input_uri=uri(run.bucket, layout.input_key(filename if requested == 1 else "")),
        code_sha256=code.sha256,
        cache_key=key,
        cache_hit=cache_hit,
        processed_uri=processed_uri,
        model=lineage,
        feature_group=group,
        transform_state=state_lineage,
        processing_job=passes.processing_job if passes else job,
        scan_job=passes.scan_job if passes else None,
        stats_job=passes.stats_job if passes else None,
    )
    return with_engine(plan, engine, run, resolved, settings)
