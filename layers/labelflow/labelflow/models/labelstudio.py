"""Label Studio's REST payloads that labelflow sends or reads (checked against label-studio 1.23.2's source).

Requests are built from these models and dumped with `exclude_none`; responses are read with `extra="ignore"`, so
fields Label Studio adds in later versions never break a read.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# PROJECT_TITLE_MIN_LEN and PROJECT_TITLE_MAX_LEN (label_studio/core/settings/base.py).
PROJECT_TITLE_MAX = 50
ProjectTitle = Annotated[str, Field(min_length=3, max_length=PROJECT_TITLE_MAX)]
# WebhookAction (label_studio/webhooks/models.py).
WebhookActionName = Literal[
    "PROJECT_CREATED",
    "PROJECT_UPDATED",
    "PROJECT_DELETED",
    "TASKS_CREATED",
    "TASKS_DELETED",
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "LABEL_LINK_CREATED",
    "LABEL_LINK_UPDATED",
    "LABEL_LINK_DELETED",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class TokenRefreshRequest(_Request):
    """POST /api/token/refresh/ (simplejwt's TokenRefreshSerializer)."""

    refresh: str


class TokenRefreshResponse(_Response):
    """TokenRefreshResponseSerializer (label_studio/jwt_auth/serializers.py)."""

    access: str


class ProjectCreate(_Request):
    """POST /api/projects/: the Project fields labelflow sets (label_studio/projects/models.py)."""

    title: ProjectTitle
    description: str
    label_config: str
    expert_instruction: str
    show_instruction: bool = True
    show_skip_button: bool = True
    enable_empty_annotation: bool = False
    # Off: the suggestion is shown as a line of text, as in the Ground Truth template, not pre-selected.
    show_collab_predictions: bool = False
    maximum_annotations: int = Field(ge=1)
    overlap_cohort_percentage: int = Field(default=100, ge=0, le=100)


class Project(_Response):
    id: int
    title: str
    label_config: str | None = None
    maximum_annotations: int = 1


class ProjectPage(_Response):
    """GET /api/projects/: DRF's PageNumberPagination (ProjectListPagination)."""

    count: int
    next: str | None = None
    results: list[Project]


class ChoiceValue(_Request):
    choices: list[str] = Field(min_length=1)


class ChoiceResult(_Request):
    """One region of a `<Choices>` result: how annotations and predictions name the chosen label."""

    from_name: str
    to_name: str
    type: Literal["choices"] = "choices"
    value: ChoiceValue


class PredictionImport(_Request):
    model_version: str
    score: float | None = None
    result: list[ChoiceResult]


class TaskImport(_Request):
    """One element of the JSON list POSTed to /api/projects/{id}/import."""

    data: dict[str, str]
    predictions: list[PredictionImport] = Field(default_factory=list)


class ImportResponse(_Response):
    """ImportAPI's 201: counts from the Community edition's synchronous import, or an import id (Enterprise)."""

    task_count: int | None = None
    prediction_count: int | None = None
    import_id: int | None = Field(default=None, alias="import")


class AnnotationResultItem(_Response):
    from_name: str | None = None
    to_name: str | None = None
    type: str | None = None
    value: dict[str, Any] = Field(default_factory=dict)


class Annotation(_Response):
    """An annotation as the Data Manager's task list serializes it (AnnotationsDMFieldSerializer)."""

    id: int
    result: list[AnnotationResultItem] = Field(default_factory=list)
    # A user id here; some serializers expand it to the user object.
    completed_by: int | dict[str, Any] | None = None
    was_cancelled: bool = False


class Task(_Response):
    id: int
    data: dict[str, Any]
    annotations: list[Annotation] = Field(default_factory=list)


class TaskPage(_Response):
    """GET /api/tasks/: TaskPagination's response (label_studio/data_manager/api.py)."""

    tasks: list[Task]
    total: int


class AnnotationCreate(_Request):
    """POST /api/tasks/{id}/annotations/: what a reviewer's submission carries (annotation_request_schema)."""

    result: list[ChoiceResult]
    completed_by: int | None = None
    was_cancelled: bool = False
    lead_time: float | None = None


class WebhookCreate(_Request):
    """POST /api/webhooks/ (WebhookSerializer, label_studio/webhooks/serializers.py)."""

    project: int
    url: str
    send_payload: bool = False
    send_for_all_actions: bool = False
    # HEADERS_SCHEMA: at most 10 headers, names of letters, digits, `-` and `_`.
    headers: dict[Annotated[str, Field(pattern=r"^[a-zA-Z0-9-_]+$")], str] = Field(max_length=10)
    is_active: bool = True
    actions: list[WebhookActionName]


class Webhook(_Response):
    id: int
    project: int | None = None
    url: str


class _Ref(_Response):
    id: int


class WebhookAnnotation(_Response):
    id: int
    task: int | None = None


class WebhookEvent(_Response):
    """A webhook body (run_webhook_sync, label_studio/webhooks/utils.py): `action`, and with `send_payload` the
    entity and its project. Unsigned and sent once, so only a hint that a project moved."""

    action: str
    project: _Ref | None = None
    annotation: WebhookAnnotation | list[WebhookAnnotation] | None = None
    annotations: list[_Ref] | None = None
    task: _Ref | list[_Ref] | None = None


class LabelStudioSecret(_Response):
    """The Secrets Manager secret (JSON) naming the Label Studio server and labelflow's token for it."""

    url: str = Field(pattern=r"^https?://[^/\s]+", description="Label Studio's base URL")
    token: str = Field(min_length=1, description="a personal access token (1.14+) or a legacy token")
    webhook_secret: str | None = Field(
        default=None, min_length=16, description="the shared secret webhooks carry; without it no webhook is set"
    )


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ReviewStart(_Stored):
    """StartLabelStudioReview's event: one HumanLabeling iteration, its job as routing planned it, and its token."""

    task_token: str = Field(min_length=1)
    bucket: str
    dataset: str
    run_id: str
    spec_uri: str
    job: dict[str, Any] = Field(description="the CreateLabelingJob fields routing planned, SageMaker-cased")


class PendingReview(_Stored):
    """A review waiting in Label Studio: what the poller needs to finish it and complete the task token."""

    job_name: str
    project_id: int
    project_url: str
    task_token: str
    deadline: float = Field(description="epoch seconds after which what was labeled is merged and the rest is not")
    bucket: str
    dataset: str
    run_id: str
    manifest_uri: str
    output_path: str
    records: int = Field(ge=0)
    workers_per_object: int = Field(ge=1)
    labels: list[str]


class PendingIndex(_Stored):
    """The small object under the pending prefix the poller lists: where the pending review lives."""

    review_key: str
