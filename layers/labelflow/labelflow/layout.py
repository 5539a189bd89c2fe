"""Where every object lives in the data bucket; the only module that spells out S3 keys."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

RAW_PREFIX = "raw/"
CONFIG_DATASETS_PREFIX = "config/datasets/"
CODE_PREFIX = "artifacts/code/"
PROCESSING_CODE_POINTER = "artifacts/code/processing.json"
QUARANTINE_PREFIX = "quarantine/"
# One rule for dataset names, wherever a name is built from one: S3 keys, execution names, SageMaker job
# names (letters, digits, hyphens; labeling job names are case-insensitive) and feature group names.
# Here rather than in models/spec.py so the trigger can check keys without importing pydantic models.
DATASET_NAME_PATTERN = r"^[a-z](-?[a-z0-9])*$"
DATASET_NAME_MAX = 63
_DATASET = re.compile(DATASET_NAME_PATTERN)
_JOB_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9-]+")
FEATURE_GROUP_NAME_MAX = 64


def dataset_of(key: str) -> str | None:
    """The dataset a raw key belongs to (`raw/<dataset>/<file>`), or None for keys labelflow ignores."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "raw" or not parts[-1]:
        return None
    if len(parts[1]) > DATASET_NAME_MAX or not _DATASET.match(parts[1]):
        return None
    return parts[1]


def run_id_for(bucket: str, key: str, version: str) -> str:
    """A deterministic run id for one object version: replays map to the same run."""
    return hashlib.sha256(f"{bucket}\0{key}\0{version}".encode()).hexdigest()[:20]


def _shortened(text: str, room: int) -> str:
    """`text` in at most `room` chars: as it is when it fits, else cut and ended by a hash of the whole, so
    distinct texts stay distinct."""
    if len(text) <= room:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    if room < len(digest) + 2:
        raise ValueError(f"cannot shorten {text!r} to {room} characters")
    return f"{text[: room - len(digest) - 1].rstrip('-_')}-{digest}"


def bounded_name(head: str, tail: str, limit: int) -> str:
    """`<head>-<tail>` in at most `limit` chars. The tail (what makes the name unique) is never cut; a head too
    long for the limit is shortened and ends in a hash of itself."""
    if not tail:
        return _shortened(head, limit)
    return f"{_shortened(head, limit - len(tail) - 1)}-{tail}"


def execution_name(dataset: str, run_id: str) -> str:
    """Step Functions execution names allow 80 chars of [0-9A-Za-z_-]."""
    return bounded_name(dataset, run_id, 80)


def job_name(prefix: str, dataset: str, *unique: str) -> str:
    """A SageMaker job name (letters, digits, hyphens, at most 63 chars): `<prefix>-<dataset>-<unique...>`."""
    tail = _JOB_NAME_UNSAFE.sub("-", "-".join(unique)).strip("-")
    return bounded_name(_JOB_NAME_UNSAFE.sub("-", f"{prefix}-{dataset}").strip("-"), tail, 63)


def feature_group_name(prefix: str, dataset: str) -> str:
    """A dataset's feature group, `<prefix>-<dataset>` in at most 64 chars (Feature Store's limit).

    The prefix is the stack name, so stacks can share an account, and IAM scopes grants to `<prefix>-*`: it is
    kept whole, and a dataset name too long to fit is shortened and ends in a hash of itself.
    """
    room = FEATURE_GROUP_NAME_MAX - len(prefix) - 1
    if room < 10:
        raise ValueError(f"stack name {prefix!r} is too long to prefix feature group names (at most 53 characters)")
    return f"{prefix}-{_shortened(dataset, room)}"


def labeling_output_manifest_uri(output_path: str, job_name: str) -> str:
    """Ground Truth's output manifest: <S3OutputPath>/<job name>/manifests/output/output.manifest (SageMaker
    developer guide, "Labeling job output data", output directories)."""
    return f"{output_path.rstrip('/')}/{job_name}/manifests/output/output.manifest"


def dataset_spec_keys(dataset: str) -> list[str]:
    base = f"{CONFIG_DATASETS_PREFIX}{dataset}"
    return [f"{base}.json"]


def code_prefix(sha256: str) -> str:
    return f"{CODE_PREFIX}{sha256}/"


@dataclass(frozen=True)
class RunLayout:
    """Keys under `runs/<dataset>/<run_id>/` for one run."""

    dataset: str
    run_id: str

    @property
    def prefix(self) -> str:
        return f"runs/{self.dataset}/{self.run_id}/"

    def input_key(self, filename: str) -> str:
        return f"{self.prefix}input/data/{filename}"

    def model_key(self, filename: str) -> str:
        return f"{self.prefix}input/model/{filename}"

    @property
    def spec_key(self) -> str:
        return f"{self.prefix}input/spec/spec.json"

    def processed_prefix(self, cache_key: str) -> str:
        return f"{self.prefix}processed/{cache_key[:16]}/"

    @property
    def labeling_prefix(self) -> str:
        return f"{self.prefix}labeling/"

    @property
    def auto_labeled_key(self) -> str:
        return f"{self.labeling_prefix}auto-labeled.jsonl"

    @property
    def review_manifest_key(self) -> str:
        return f"{self.labeling_prefix}review.manifest"

    @property
    def label_categories_key(self) -> str:
        return f"{self.labeling_prefix}label-categories.json"

    @property
    def review_output_prefix(self) -> str:
        return f"{self.labeling_prefix}output/"

    @property
    def labeled_key(self) -> str:
        return f"{self.prefix}labeled/labeled.jsonl"

    @property
    def unlabeled_key(self) -> str:
        return f"{self.prefix}labeled/unlabeled.jsonl"

    @property
    def ingest_failures_key(self) -> str:
        return f"{self.prefix}labeled/ingest-failures.jsonl"

    def ingest_folder(self, attempt: str | None = None) -> str:
        """Where an ingestion keeps its checkpoint: the run's own (`attempt` None) or one reingest's."""
        return f"{self.prefix}labeled/{attempt or 'ingest'}"

    def ingest_failures_key_of(self, attempt: str | None = None) -> str:
        """The gathered failures of the run's ingestion, or of one reingest."""
        return self.ingest_failures_key if attempt is None else f"{self.ingest_folder(attempt)}/ingest-failures.jsonl"

    @property
    def run_manifest_key(self) -> str:
        return f"{self.prefix}run.json"

    def quarantine_key(self, filename: str) -> str:
        """Where a rejected input's copy goes; its error report is `quarantine_report_key` beside it."""
        return f"{QUARANTINE_PREFIX}{self.dataset}/{self.run_id}/{filename}"

    @property
    def quarantine_report_key(self) -> str:
        return f"{QUARANTINE_PREFIX}{self.dataset}/{self.run_id}/error.json"


PROCESSED_RECORDS = "records.jsonl"
PROCESSED_STATS = "stats.json"
PROCESSED_REJECTED = "rejected.jsonl"


def audit_prefix(dataset: str, model_sha256: str) -> str:
    """Where the audit labels of one dataset and model are gathered, one file per run."""
    return f"artifacts/audit/{dataset}/{model_sha256}/"


def audit_key(dataset: str, model_sha256: str, run_id: str) -> str:
    """One run's audit labels: written once, by its merge step."""
    return f"{audit_prefix(dataset, model_sha256)}{run_id}.jsonl"


def transform_state_key(dataset: str, fingerprint: str) -> str:
    """The published transform state of a dataset for one `transform_fingerprint`: written once, never replaced."""
    return f"artifacts/state/{dataset}/{fingerprint}/state.json"


def dataset_memory_prefixes(dataset: str) -> tuple[str, ...]:
    """What a dataset carries from one run to the next: its published transform states and its audit labels."""
    return f"artifacts/state/{dataset}/", f"artifacts/audit/{dataset}/"
