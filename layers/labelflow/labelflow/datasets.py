"""Dataset specs and input checks: what a dataset is, and whether a landed file can be one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from pydantic import ValidationError

from labelflow.aws import error_code, raise_if_retryable
from labelflow.errors import ConfigError, InvalidInputError, ManifestError
from labelflow.formats import ResolvedInput, resolve_input, rows_per_byte
from labelflow.layout import dataset_spec_keys
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location, get_bytes

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Enough bytes to hold any sane header line (of gzip data too, inflated).
HEADER_PROBE_BYTES = 64 * 1024
# Routing and merging each stream a run's records through one Lambda, at about 80,000-100,000 records/s on one
# vCPU (bench/RESULTS.md, "Scale"); 10M records take them minutes of their 900 s, and ingestion fans out.
RUN_BOUND = "routing and merging each read a run's records in one Lambda within its 900 s timeout"


def _parse_spec(body: bytes, where: str) -> DatasetSpec:
    try:
        return DatasetSpec.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid dataset spec {where}: {problems}") from exc


def load_dataset_spec(s3: S3Client, bucket: str, dataset: str) -> tuple[DatasetSpec, str]:
    """The dataset's spec from config/datasets/, with the URI it was read from."""
    for key in dataset_spec_keys(dataset):
        try:
            body = get_bytes(s3, bucket, key)
        except ManifestError:
            continue
        spec = _parse_spec(body, f"s3://{bucket}/{key}")
        if spec.dataset != dataset:
            raise ConfigError(f"spec s3://{bucket}/{key} declares dataset '{spec.dataset}', expected '{dataset}'")
        return spec, f"s3://{bucket}/{key}"
    raise ConfigError(f"no dataset spec for '{dataset}' at s3://{bucket}/{dataset_spec_keys(dataset)[0]}")


def read_run_spec(s3: S3Client, spec_uri: str) -> DatasetSpec:
    """The frozen copy of the spec a run was planned with."""
    location = S3Location.parse(spec_uri)
    return _parse_spec(get_bytes(s3, location.bucket, location.key), spec_uri)


def check_input(key: str, head: bytes, spec: DatasetSpec, where: str) -> ResolvedInput:
    """How to read the landed file, from its key and first bytes; InvalidInputError when it cannot be this dataset."""
    resolved = resolve_input(key, head, spec.input, where, spec.required_columns)
    if resolved.columns is not None and resolved.format == "csv":
        missing = [column for column in spec.required_columns if column not in resolved.columns]
        if missing:
            raise InvalidInputError(f"{where} is missing required columns: {', '.join(missing)}")
    return resolved


def check_size(where: str, size: int, head: bytes, resolved: ResolvedInput, max_rows: int) -> None:
    """Refuse an object with more rows than one run can ingest, estimated from its first bytes."""
    per_byte = rows_per_byte(head, resolved)
    if per_byte is None or size <= len(head):
        return
    estimated = int(size * per_byte)
    if estimated > max_rows:
        raise InvalidInputError(
            f"{where} holds about {estimated:,} rows (estimated from its first {len(head):,} bytes) and one run"
            f" takes at most {max_rows:,} (MAX_RECORDS_PER_RUN; {RUN_BOUND}): split it into files of at most"
            f" {max_rows:,} rows"
        )


def probe_input(
    s3: S3Client, bucket: str, key: str, version_id: str | None, spec: DatasetSpec, max_rows: int
) -> ResolvedInput:
    """Check a landed object's size, format and header without reading it whole; returns how to read it."""
    where = f"s3://{bucket}/{key}"
    extra = {"VersionId": version_id} if version_id else {}
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **extra)  # type: ignore[arg-type]
        size = int(head["ContentLength"])
        if size == 0:
            raise InvalidInputError(f"{where} is empty")
        probe = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_PROBE_BYTES - 1}", **extra)  # type: ignore[arg-type]
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404", "NoSuchVersion", "NotFound"):
            raise InvalidInputError(f"{where} (version {version_id}) no longer exists") from exc
        raise_if_retryable(exc, f"read {where}")
        raise
    body = probe["Body"].read()
    resolved = check_input(key, body, spec, where)
    check_size(where, size, body, resolved, max_rows)
    return resolved
