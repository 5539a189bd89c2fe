"""run.json: the lineage and outcome of one run, written when it ends, whichever way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from labelflow.models.reviewers import ReviewerLineage


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


class FeatureGroupLineage(_RunModel):
    """The dataset's feature group: created from the spec by this run's planning, or an existing one that matched it."""

    name: str
    created: bool = Field(description="true: this run created it; false: it existed and matched the spec")


class TransformStateLineage(_RunModel):
    """The fitted transform state a run used: the dataset's published one, or one it fitted itself."""

    uri: str = Field(description="where the dataset's state for this fingerprint is published")
    fingerprint: str = Field(description="labelflow.models.spec.transform_fingerprint of the run's spec")
    applied: bool = Field(description="true: the published state was applied; false: this run fitted one")
    version_id: str | None = Field(default=None, description="the applied state's S3 version")
    sha256: str | None = Field(default=None, description="of the state.json processing used (its stats.json)")
    published: bool | None = Field(
        default=None,
        description="runs that fitted: true when their state is the published one, false when another run's fit "
        "was published first (this run's features came from its own fit)",
    )


class ThresholdChoice(_RunModel):
    """The confidence threshold a run routed with, and how it was chosen."""

    threshold: float = Field(description="records whose model confidence reaches it are auto-labeled")
    method: Literal["certified", "fixed"] = Field(
        description="certified: from audit labels, at the spec's target accuracy; fixed: the spec's (or the "
        "deployment's) confidence_threshold"
    )
    reason: str = Field(description="why this threshold, in one sentence")
    target_accuracy: float | None = None
    confidence: float | None = Field(default=None, description="the probability the target accuracy is met")
    certified_lower_bound: float | None = Field(
        default=None, description="Clopper-Pearson lower bound on auto-label accuracy at the threshold"
    )
    audit_labels: int = Field(default=0, description="audit labels at or above the threshold the test rests on")
    audit_errors: int = Field(default=0, description="the model's errors among them")
    audit_labels_total: int = Field(default=0, description="audit labels gathered for this dataset and model")


class AuditOutcome(_RunModel):
    """This run's audit sample, and the measured accuracy of its auto-labels once reviewers answered."""

    rate: float = Field(description="the share of scored records drawn")
    sampled: int = Field(description="records drawn (confident or not; the others are reviewed anyway)")
    confident: int = Field(description="drawn records that were also auto-labeled, sent to review as well")
    answered: int = Field(default=0, description="drawn records a reviewer labeled: this run's audit labels")
    auto_labeled_answered: int = Field(default=0, description="of those, records that were auto-labeled")
    auto_label_accuracy: float | None = Field(
        default=None, description="the model's accuracy on them: the measured accuracy of this run's auto-labels"
    )
    labels_uri: str | None = Field(default=None, description="this run's audit labels file")


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


class ReingestLineage(_RunModel):
    """One `labelflow reingest` of the run's failed records, and what the run was before it."""

    execution_id: str
    started_at: str
    finished_at: str
    resent: int = Field(description="failed records sent again")
    ingested: int
    failed: int
    previous_status: RunStatus
    previous_error: RunError | None = None
    error: RunError | None = Field(default=None, description="why the reingest itself stopped")


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
    transform_state: TransformStateLineage | None = None
    processing_job: str | None = None
    labeling_job: str | None = Field(default=None, description="the labeling job; the first one when there were more")
    labeling_jobs: list[str] = Field(default_factory=list, description="every labeling job the review was split over")
    labeling_ended: str | None = Field(
        default=None, description="why the labeling job ended Failed or Stopped; its unlabeled records say so too"
    )
    feature_group: FeatureGroupLineage | None = None
    threshold: ThresholdChoice | None = None
    audit: AuditOutcome | None = None
    reviewers: ReviewerLineage | None = Field(
        default=None, description="who reviewed the run's records; None when none were sent to review"
    )
    counts: RunCounts
    artifacts: RunArtifacts
    error: RunError | None = None
    reason: str | None = Field(default=None, description="why the run did not succeed, in one sentence")
    reingests: list[ReingestLineage] = Field(default_factory=list)
