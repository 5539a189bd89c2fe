"""The small JSON documents passed between states; every step adds its own section to the workflow state."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labelflow.errors import LabelflowError
from labelflow.layout import labeling_output_manifest_uri
from labelflow.models.run import (
    AuditOutcome,
    FeatureGroupLineage,
    ModelLineage,
    ThresholdChoice,
    TransformStateLineage,
)
from labelflow.models.spec import ReviewBackendName


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class RunInput(_Payload):
    """The execution input: one object version under raw/<dataset>/."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str = ""
    size: int = Field(ge=0)
    dataset: str
    run_id: str
    received_at: str
    # StartExecution answers a repeat of a running execution's name and input with that execution (it is
    # idempotent for STANDARD workflows, Step Functions API reference): the invocation's id makes each delivery's
    # input its own, so a repeated delivery is refused (ExecutionAlreadyExists) and never counted as a start.
    delivery_id: str | None = None


# Where a run's processing runs: one SageMaker Processing job, or Spark on EMR Serverless.
Engine = Literal["single", "spark"]


class PlanOutput(_Payload):
    dataset: str
    run_id: str
    run_prefix: str
    spec_uri: str
    input_uri: str
    code_sha256: str
    cache_key: str
    cache_hit: bool
    processed_uri: str
    model: ModelLineage | None = Field(default=None, description="the model this run scores with; none: all to review")
    feature_group: FeatureGroupLineage = Field(description="the group ingestion writes to, checked against the spec")
    transform_state: TransformStateLineage = Field(description="the published state processing applies, or none yet")
    processing_job: dict[str, Any] = Field(description="CreateProcessingJob fields, SageMaker-cased")
    scan_job: dict[str, Any] | None = Field(
        default=None, description="an input cut into parts: the pass hashing every part's ids before Process"
    )
    stats_job: dict[str, Any] | None = Field(
        default=None, description="an input cut into parts: the pass taking each part's statistics before Process"
    )
    engine: Engine = Field(
        default="single", description="the processing engine: one SageMaker Processing container, or Spark"
    )
    spark_job: dict[str, Any] | None = Field(
        default=None, description="StartJobRun fields, Step Functions-cased (less ApplicationId, ExecutionRoleArn)"
    )


# A Spark job run's fields, as Step Functions may spell them: AWS documents no output for
# emr-serverless:startJobRun.sync (its page says only that it waits for SUCCESS); the integration's documented
# responses are PascalCase (startApplication returns {"ApplicationId": ...}), the API's own camelCase.
JOB_RUN_FIELDS: dict[str, tuple[str, str]] = {
    "job_name": ("JobRunId", "jobRunId"),
    "job_arn": ("Arn", "arn"),
    "status": ("State", "state"),
}


class ProcessingResult(_Payload):
    """What the state machine keeps of the processing step: DescribeProcessingJob's name, ARN and status (Process's
    ResultSelector picks them), or the Spark job run RunSparkJob stores as returned."""

    job_name: str
    job_arn: str | None = None
    status: str

    @model_validator(mode="before")
    @classmethod
    def _from_job_run(cls, value: Any) -> Any:
        """A Spark job run, flat or under JobRun, in either casing; a .sync task only returns a run that succeeded."""
        if not isinstance(value, dict) or "job_name" in value:
            return value
        job_run = value.get("JobRun") or value.get("jobRun") or value
        picked = {
            field: next((job_run[name] for name in names if name in job_run), None)
            for field, names in JOB_RUN_FIELDS.items()
        }
        return {**picked, "status": picked["status"] or "SUCCESS"}


class RoutingOutput(_Payload):
    total: int
    auto_labeled: int = Field(description="records auto-labeled and not reviewed")
    to_review: int = Field(description="records sent to review, the audited confident ones included")
    threshold: float
    threshold_choice: ThresholdChoice | None = Field(default=None, description="how the threshold was chosen")
    audit: AuditOutcome | None = Field(
        default=None, description="the audit sample drawn (its confident records are in both files); none at rate 0"
    )
    auto_labeled_uri: str = Field(description="model labels of the auto-labeled and of the audited confident records")
    review_manifest_uri: str | None = None
    labeling_jobs: list[dict[str, Any]] = Field(
        default_factory=list,
        description="CreateLabelingJob fields of each job the review is split over, SageMaker-cased; the ASL "
        "passes them through",
    )
    transform_state: TransformStateLineage | None = Field(
        default=None, description="the plan's state, with what processing used and whether its fit was published"
    )
    review_backend: ReviewBackendName | None = Field(
        default=None, description="the spec's review.backend; unset: the deployment's ReviewBackend, set by the ASL"
    )


# DescribeLabelingJob's LabelingJobStatus values for a job that ended before its objects were all labeled
# (botocore sagemaker 2017-07-24 service-2.json, LabelingJobStatus).
ENDED_EARLY = frozenset({"Failed", "Stopped"})


class LabelingResult(_Payload):
    """What the state machine keeps of DescribeLabelingJob."""

    job_name: str
    status: str
    output_path: str = Field(description="OutputConfig.S3OutputPath, a required member of DescribeLabelingJob")
    counters: dict[str, int] = Field(default_factory=dict)
    failure_reason: str | None = Field(default=None, description="FailureReason of a job that ended Failed or Stopped")
    manifest_uri: str | None = Field(default=None, description="the input manifest of a job that ended early")

    @property
    def ended_early(self) -> bool:
        """The job ended Failed or Stopped: only part of its objects may have been labeled."""
        return self.status in ENDED_EARLY

    @property
    def output_manifest_uri(self) -> str:
        """Where Ground Truth writes the job's output manifest (derived: LabelingJobOutput is optional)."""
        return labeling_output_manifest_uri(self.output_path, self.job_name)


class IngestBatch(_Payload):
    """One ingest batch: a run of whole lines of the labeled file, read with a ranged GetObject."""

    index: int = Field(ge=0)
    first_byte: int = Field(ge=0)
    last_byte: int = Field(ge=0, description="inclusive, as in an HTTP Range")
    records: int = Field(ge=1)


class MergeOutput(_Payload):
    labeled_uri: str
    labeled: int
    model: int
    human: int
    unlabeled: int
    unlabeled_uri: str | None = None
    audit: AuditOutcome | None = Field(default=None, description="routing's audit sample, with what came back")
    batches: list[IngestBatch] = Field(
        default_factory=list, description="the labeled file split for IngestFeatures' Map, one Lambda per batch"
    )
    ingest_concurrency: int = Field(default=1, ge=1, le=40, description="the Map's MaxConcurrencyPath")


class IngestOutput(_Payload):
    feature_group: str
    ingested: int
    failed: int
    failures_uri: str | None = None


class IngestBatchInput(_Payload):
    """One iteration of IngestFeatures' Map: where to write one batch of a run's labeled file."""

    bucket: str
    dataset: str
    run_id: str
    feature_group: str
    labeled_uri: str
    batch: IngestBatch


class BatchOutcome(_Payload):
    """What one Map iteration reports: its batch's counts and failures file, or the error it stopped with."""

    index: int = Field(ge=0)
    ingested: int = 0
    failed: int = 0
    failures_uri: str | None = None
    error: StepError | None = None


class ReingestInput(_Payload):
    """A manual execution's input `{"reingest": {...}}`: re-send the failed records of a finished run."""

    bucket: str
    dataset: str
    run_id: str


class StepError(_Payload):
    """A Catch result: the ASL error name and its cause."""

    error: str = Field(alias="Error")
    cause: str = Field(default="", alias="Cause")


class _EndedJob(BaseModel):
    """The DescribeLabelingJob response the .sync integration gives as the cause of States.TaskFailed."""

    model_config = ConfigDict(extra="ignore")

    LabelingJobName: str
    LabelingJobStatus: str
    OutputConfig: dict[str, Any]
    InputConfig: dict[str, Any] = Field(default_factory=dict)
    FailureReason: str | None = None
    LabelCounters: dict[str, int] = Field(default_factory=dict)


def ended_job(error: StepError) -> LabelingResult:
    """The job a caught labeling error describes; LabelflowError when it is not a job that ended Failed or Stopped."""
    try:
        job = _EndedJob.model_validate_json(error.cause)
    except ValidationError as exc:
        raise LabelflowError(f"labeling stopped with {error.error}, not a job that ended: {error.cause[:300]}") from exc
    if job.LabelingJobStatus not in ENDED_EARLY:
        raise LabelflowError(f"labeling job {job.LabelingJobName} raised {error.error} as {job.LabelingJobStatus}")
    return LabelingResult(
        job_name=job.LabelingJobName,
        status=job.LabelingJobStatus,
        output_path=str(job.OutputConfig.get("S3OutputPath", "")),
        counters=job.LabelCounters,
        failure_reason=job.FailureReason,
        manifest_uri=job.InputConfig.get("DataSource", {}).get("S3DataSource", {}).get("ManifestS3Uri"),
    )


class LabelingEnded(_Payload):
    """A HumanLabeling iteration whose job ended Failed or Stopped: the caught error, merge goes on."""

    labeling_error: StepError


class WorkflowState(RunInput):
    """The state document: the run input plus one section per finished step."""

    plan: PlanOutput | None = None
    processing: ProcessingResult | None = None
    routing: RoutingOutput | None = None
    labeling: list[LabelingResult | LabelingEnded] | None = Field(
        default=None, description="one entry per labeling job, in the order routing planned them"
    )
    merge: MergeOutput | None = None
    ingest_batches: list[BatchOutcome] | None = Field(default=None, description="IngestFeatures' Map result")
    ingest: IngestOutput | None = Field(default=None, description="the batches gathered by FinalizeRun")
    error: StepError | None = None

    def require_plan(self) -> PlanOutput:
        if self.plan is None:
            raise ValueError("workflow state has no plan section")
        return self.plan

    def require_routing(self) -> RoutingOutput:
        if self.routing is None:
            raise ValueError("workflow state has no routing section")
        return self.routing

    def labeling_outcomes(self) -> list[LabelingResult]:
        """Each labeling job as it ended: its .sync result, or the job that ended early, read from its error."""
        return [
            ended_job(entry.labeling_error) if isinstance(entry, LabelingEnded) else entry
            for entry in self.labeling or []
        ]

    def require_merge(self) -> MergeOutput:
        if self.merge is None:
            raise ValueError("workflow state has no merge section")
        return self.merge


class ReingestState(_Payload):
    """The state document of a reingest execution."""

    reingest: ReingestInput
    ingest: IngestOutput | None = None
    error: StepError | None = None

    @property
    def run_id(self) -> str:
        return self.reingest.run_id


class FinalizeInput(_Payload):
    state: WorkflowState
    execution_id: str
    started_at: str


class FinalizeReingestInput(_Payload):
    """FinalizeRun's input at the end of a reingest execution."""

    state: ReingestState
    execution_id: str
    started_at: str


class StartedExecution(_Payload):
    """What the trigger reports for each object it looked at."""

    key: str
    version_id: str | None = None
    status: str = Field(description="started | duplicate | ignored")
    execution_name: str | None = None
    execution_arn: str | None = None
    reason: str | None = None


class TriggerResult(_Payload):
    executions: list[StartedExecution]
