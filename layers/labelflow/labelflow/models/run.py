"""run.json: the lineage and outcome of one run, written when it ends, whichever way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _RunModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class InputLineage(_RunModel):
    bucket: str
    key: str
    version_id: str | None
    etag: str
    size: int


class ModelLineage(_RunModel):
    """The model a run loaded: this exact object version, its content hash and classes."""

    s3_uri: str
    version_id: str | None
    sha256: str
    classes: list[str]


class RunCounts(_RunModel):
    """Every input record ends in exactly one bucket: rejected, unlabeled, ingested or failed to ingest."""

    records_in: int | None = None
    rejected: int | None = None
    auto_labeled: int | None = None
    sent_to_review: int | None = None
    human_labeled: int | None = None
    model_labeled: int | None = None
    unlabeled: int | None = None
    ingested: int | None = None
    ingest_failed: int | None = None


class RunArtifacts(_RunModel):
    spec_uri: str | None = None
    processed_uri: str | None = None
    auto_labeled_uri: str | None = None
    review_manifest_uri: str | None = None
    review_output_manifest_uri: str | None = None
    labeled_uri: str | None = None
    unlabeled_uri: str | None = None
    ingest_failures_uri: str | None = None
    quarantine_uri: str | None = None


class RunError(_RunModel):
    error: str
    cause: str


RunStatus = Literal["SUCCEEDED", "PARTIAL", "FAILED"]


class RunManifest(_RunModel):
    run_id: str
    dataset: str
    status: RunStatus
    execution_id: str
    started_at: str
    finished_at: str
    input: InputLineage
    code_sha256: str | None = None
    cache_key: str | None = None
    cache_hit: bool | None = None
    model: ModelLineage | None = None
    processing_job: str | None = None
    labeling_job: str | None = None
    feature_group: str | None = None
    counts: RunCounts
    artifacts: RunArtifacts
    error: RunError | None = None
