"""Label Studio as a review backend: the same contract as Ground Truth (review manifest in, output manifest out).

A project per review job (found again by a deterministic title) shows the dataset spec's display columns and
categories; each review-manifest line becomes a task with the model's suggestion as a prediction; the annotations
read back become the per-worker answers that `consolidation` turns into `manifests.output_line`s, exactly as the
post-annotation Lambda does for Ground Truth. Endpoints and payloads are those of label-studio 1.23.2 (the files
named beside each call); the client speaks urllib3, which the Lambda runtime ships with botocore.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

import urllib3
from pydantic import BaseModel, ValidationError
from urllib3.exceptions import HTTPError
from urllib3.util import Retry

from labelflow.errors import LabelStudioError as LabelStudioError
from labelflow.errors import LabelStudioUnavailable as LabelStudioUnavailable
from labelflow.models.groundtruth import ConsolidationRequestItem
from labelflow.models.labelstudio import (
    PROJECT_TITLE_MAX,
    Annotation,
    ChoiceResult,
    ChoiceValue,
    ImportResponse,
    PredictionImport,
    Project,
    ProjectCreate,
    ProjectPage,
    Task,
    TaskImport,
    TaskPage,
    TokenRefreshRequest,
    TokenRefreshResponse,
    Webhook,
    WebhookActionName,
    WebhookCreate,
    WebhookEvent,
)
from labelflow.models.spec import DatasetSpec
from labelflow.review.consolidation import consolidation_response
from labelflow.review.manifests import LABEL_ATTRIBUTE, consolidation_item, output_line
from labelflow.review.tasks import CLASSIFIER_NAME, task_input

TokenKind = Literal["auto", "personal", "legacy"]
M = TypeVar("M", bound=BaseModel)

IMAGE_NAME = "image"
SUGGESTION_NAME = "suggestion"
RECORD_ID_KEY = "record_id"
WEBHOOK_SECRET_HEADER = "X-Labelflow-Webhook-Secret"
ANNOTATION_ACTIONS: tuple[WebhookActionName, ...] = (
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
)
# 429 and the gateway errors mean the request was not served; a plain 500 is a bug that a retry repeats.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_ATTEMPTS = 5
# simplejwt's ACCESS_TOKEN_LIFETIME default is 5 minutes (label-studio 1.23.2 does not override it); refresh a
# little before the `exp` claim so a request in flight does not carry an expiring token.
_EXPIRY_MARGIN_SECONDS = 30.0
_PAGE_SIZE = 100
_IMPORT_BATCH = 500


def column_key(index: int) -> str:
    """The task-data key (and tag name) of the spec's index-th display column."""
    return f"column_{index}"


class LabelStudioClient:
    """Label Studio's REST API with a personal access token (refreshed to a bearer token) or a legacy token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        token_kind: TokenKind = "auto",
        pool: urllib3.PoolManager | None = None,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._kind = _token_kind(token) if token_kind == "auto" else token_kind
        self._retries = Retry(
            total=_ATTEMPTS,
            backoff_factor=backoff_seconds,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=None,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._pool = pool or urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_seconds))
        self._clock = clock
        self._access: str | None = None
        self._access_expires = 0.0

    def get(self, path: str, model: type[M], **query: str | int) -> M:
        return self._parse(model, self.call("GET", path, query=query), path)

    def post(self, path: str, body: BaseModel | Sequence[BaseModel], model: type[M], **query: str | int) -> M:
        return self._parse(model, self.call("POST", path, body=body, query=query), path)

    def call(
        self,
        method: str,
        path: str,
        body: BaseModel | Sequence[BaseModel] | None = None,
        query: Mapping[str, str | int] | None = None,
    ) -> Any:
        """One API call's JSON answer; a 401 with a personal token refreshes the bearer token and tries once more."""
        payload = None if body is None else _json_bytes(body)
        status, answer = self._send(method, path, payload, query or {})
        if status == 401 and self._kind == "personal":
            self._access = None
            status, answer = self._send(method, path, payload, query or {})
        if status >= 400:
            raise self._failure(method, path, status, answer)
        return answer

    def _send(self, method: str, path: str, payload: bytes | None, query: Mapping[str, str | int]) -> tuple[int, Any]:
        headers = {"Authorization": self._authorization(), "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        target = self.url + path + (f"?{urlencode(query)}" if query else "")
        return self._request(method, target, payload, headers)

    def _request(self, method: str, url: str, payload: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
        try:
            response = self._pool.request(method, url, body=payload, headers=headers, retries=self._retries)
        except HTTPError as exc:
            raise LabelStudioUnavailable(
                f"label studio at {self.url} cannot be reached: check the URL and that the server is running"
            ) from exc
        if response.status in _RETRY_STATUSES:
            raise LabelStudioUnavailable(f"label studio at {self.url} kept answering {response.status}; try later")
        try:
            return response.status, json.loads(response.data) if response.data else None
        except ValueError:
            return response.status, None

    def _authorization(self) -> str:
        if self._kind == "legacy":
            return f"Token {self._token}"
        if self._access is None or self._clock() >= self._access_expires - _EXPIRY_MARGIN_SECONDS:
            self._refresh()
        return f"Bearer {self._access}"

    def _refresh(self) -> None:
        """A short-lived access token from the personal access token (jwt_auth/urls.py: api/token/refresh/)."""
        body = _json_bytes(TokenRefreshRequest(refresh=self._token))
        status, answer = self._request(
            "POST", self.url + "/api/token/refresh/", body, {"Content-Type": "application/json"}
        )
        if status in (400, 401, 403):
            raise LabelStudioError(
                f"label studio at {self.url} rejected the personal access token: create one under Account & "
                "Settings > Personal Access Token and store it in the secret"
            )
        if status == 404:
            raise LabelStudioError(
                f"{self.url} has no /api/token/refresh/: check the URL points at Label Studio 1.14 or later, or use "
                "a legacy token"
            )
        access = self._parse(TokenRefreshResponse, answer, "/api/token/refresh/").access
        self._access = access
        self._access_expires = _expiry(access) or self._clock() + 300.0

    def _failure(self, method: str, path: str, status: int, answer: Any) -> LabelStudioError:
        if status in (401, 403):
            kind = "personal access token" if self._kind == "personal" else "legacy token"
            hint = (
                "; Label Studio 1.14+ disables legacy tokens by default: use a personal access token"
                if self._kind == "legacy"
                else ""
            )
            return LabelStudioError(f"label studio at {self.url} refused the {kind} for {method} {path}{hint}")
        if status == 404:
            return LabelStudioError(
                f"label studio at {self.url} has no {path}: the project or task was deleted, or the URL points "
                "elsewhere"
            )
        fields = sorted(answer) if isinstance(answer, dict) else []
        return LabelStudioError(f"label studio refused {method} {path} ({status}); fields in question: {fields}")

    def _parse(self, model: type[M], answer: Any, path: str) -> M:
        try:
            return model.model_validate(answer)
        except ValidationError as exc:
            raise LabelStudioError(
                f"label studio at {self.url} answered {path} with an unexpected shape: is it Label Studio 1.14+?"
            ) from exc


def _json_bytes(body: BaseModel | Sequence[BaseModel]) -> bytes:
    if not isinstance(body, BaseModel):
        return json.dumps([item.model_dump(mode="json", exclude_none=True, by_alias=True) for item in body]).encode()
    return body.model_dump_json(exclude_none=True, by_alias=True).encode()


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """A JWT's payload, unverified (Label Studio verifies it); None for anything that is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def _token_kind(token: str) -> TokenKind:
    """Personal access tokens are JWT refresh tokens; legacy tokens are 40 hex digits (DRF's authtoken)."""
    return "personal" if _jwt_claims(token) is not None else "legacy"


def _expiry(token: str) -> float | None:
    exp = (_jwt_claims(token) or {}).get("exp")
    return float(exp) if isinstance(exp, int | float) else None


def _attr(value: str) -> str:
    """A value escaped for an XML attribute, as Liquid's `escape` does for the Ground Truth template."""
    return html.escape(value, quote=True)


def label_config(spec: DatasetSpec, image: bool) -> str:
    """The labeling config (Label Studio XML) for the spec: the display columns as a table of name and value (or
    the image), the model's suggestion as text, and one choice per category, named like the Ground Truth
    template's classifier so answers read the same."""
    target = IMAGE_NAME if image else column_key(0)
    if image:
        record = f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true"/>'
    else:
        record = "\n".join(
            f'    <View style="display: flex; gap: 1em"><Header value="{_attr(column)}" size="6"/>'
            f'<Text name="{column_key(index)}" value="${column_key(index)}"/></View>'
            for index, column in enumerate(spec.display_columns)
        )
        record = f'  <View style="border: 1px solid #ccc; padding: 4px 8px">\n{record}\n  </View>'
    choices = "\n".join(f'    <Choice value="{_attr(label)}"/>' for label in spec.labels)
    return (
        "<View>\n"
        f'  <Header value="{_attr(spec.labeling.task_title)}"/>\n'
        f"{record}\n"
        f'  <Text name="{SUGGESTION_NAME}" value="${SUGGESTION_NAME}"/>\n'
        f'  <Choices name="{CLASSIFIER_NAME}" toName="{target}" choice="single-radio" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def instructions(image: bool) -> str:
    """The project's instructions (HTML), in the Ground Truth template's words."""
    thing = "image" if image else "record (each row is one of its columns)"
    return (
        f"<p>Look at the {thing} and pick the one label that describes it best.</p>"
        "<p>The model's suggestion is shown when it made one; records come to you because the model was not sure, "
        "so judge for yourself.</p>"
    )


def project_title(job_name: str, config: str) -> str:
    """A title that names the review job and changes with the labeling config; at most Label Studio's 50 chars."""
    digest = hashlib.sha256(f"{job_name}\n{config}".encode()).hexdigest()[:10]
    return f"{job_name[: PROJECT_TITLE_MAX - len(digest) - 1]} {digest}"


def is_image_review(lines: Iterable[dict[str, Any]]) -> bool:
    """Whether reviewers see images: the first line's task shows one (a dataset's records are all one kind)."""
    first = next(iter(lines), None)
    return first is not None and task_input(first)["image"] is not None


def ensure_project(client: LabelStudioClient, spec: DatasetSpec, job_name: str, image: bool) -> Project:
    """The review job's project: the one with its deterministic title, else a new one (projects/api.py)."""
    config = label_config(spec, image)
    title = project_title(job_name, config)
    # ProjectFilterSet's `title` is icontains, so the exact title is matched here.
    found = client.get("/api/projects/", ProjectPage, title=title, page_size=_PAGE_SIZE)
    for project in found.results:
        if project.title == title:
            return project
    create = ProjectCreate(
        title=title,
        description=f"labelflow review of dataset {spec.dataset}, job {job_name}",
        label_config=config,
        expert_instruction=instructions(image),
        maximum_annotations=spec.labeling.workers_per_object,
    )
    return client.post("/api/projects/", create, Project)


def model_version(spec: DatasetSpec) -> str:
    """The model's name in predictions: its pinned digest, else its file name."""
    if spec.model is None:
        return "none"
    return f"sha256:{spec.model.sha256[:12]}" if spec.model.sha256 else spec.model.s3_uri.rsplit("/", 1)[-1]


def task_import(
    line: dict[str, Any], spec: DatasetSpec, version: str, image_url: Callable[[str], str] = str
) -> TaskImport:
    """One review-manifest line as a task: what `tasks.task_input` shows, keyed by the config's tag names, and the
    model's suggestion as a prediction with its confidence as the score."""
    shown = task_input(line)
    values = {row["column"]: str(row["value"]) for row in shown["rows"]}
    data = {RECORD_ID_KEY: shown["record_id"], SUGGESTION_NAME: ""}
    for index, column in enumerate(spec.display_columns):
        data[column_key(index)] = values.get(column, "")
    if shown["image"]:
        data[IMAGE_NAME] = image_url(shown["image"])
    suggestion = shown["suggestion"]
    if suggestion is None or suggestion["label"] not in spec.labels:
        return TaskImport(data=data)
    data[SUGGESTION_NAME] = (
        f"The model suggests {suggestion['label']} ({suggestion['confidence']} sure). "
        "It is often wrong on records sent to you."
    )
    target = IMAGE_NAME if shown["image"] else column_key(0)
    choice = ChoiceResult(from_name=CLASSIFIER_NAME, to_name=target, value=ChoiceValue(choices=[suggestion["label"]]))
    prediction = PredictionImport(model_version=version, score=line.get("model_confidence"), result=[choice])
    return TaskImport(data=data, predictions=[prediction])


def iter_tasks(client: LabelStudioClient, project_id: int, page_size: int = _PAGE_SIZE) -> Iterator[Task]:
    """Every task of the project with its annotations, page by page (data_manager/api.py TaskListAPI); without an
    ordering asked for, tasks come by id (data_manager/managers.py apply_ordering), so pages stay put while
    reviewers annotate."""
    page, seen = 1, 0
    while True:
        found = client.get(
            "/api/tasks/", TaskPage, project=project_id, page=page, page_size=page_size, fields="all", resolve_uri=0
        )
        yield from found.tasks
        seen += len(found.tasks)
        # A page past the last one is a 404 (DRF's PageNumberPagination), so stop on the total.
        if not found.tasks or seen >= found.total:
            return
        page += 1


def import_review(
    client: LabelStudioClient,
    project: Project,
    lines: list[dict[str, Any]],
    spec: DatasetSpec,
    image_url: Callable[[str], str] = str,
) -> int:
    """Import the lines whose record is not in the project yet (a retried start imports nothing twice); how many
    were sent (data_import/api.py ImportAPI)."""
    present = {str(task.data.get(RECORD_ID_KEY)) for task in iter_tasks(client, project.id)}
    version = model_version(spec)
    tasks = [task_import(line, spec, version, image_url) for line in lines if str(line["record_id"]) not in present]
    for start in range(0, len(tasks), _IMPORT_BATCH):
        client.post(f"/api/projects/{project.id}/import", tasks[start : start + _IMPORT_BATCH], ImportResponse)
    return len(tasks)


def worker_id(annotation: Annotation) -> str:
    """The reviewer who made an annotation, as a consolidation worker id."""
    user = annotation.completed_by
    ident = user.get("id") if isinstance(user, dict) else user
    return f"labelstudio-user-{ident}" if ident is not None else f"labelstudio-annotation-{annotation.id}"


def chosen_label(annotation: Annotation) -> str | None:
    """The category an annotation picked; None for a skipped task or any other result."""
    if annotation.was_cancelled:
        return None
    for item in annotation.result:
        choices = item.value.get("choices")
        if item.from_name == CLASSIFIER_NAME and isinstance(choices, list) and len(choices) == 1:
            return str(choices[0])
    return None


def answers_by_record(tasks: Iterable[Task]) -> dict[str, list[tuple[str, str]]]:
    """record id → each reviewer's (worker id, label), the answers the consolidation takes."""
    answers: dict[str, list[tuple[str, str]]] = {}
    for task in tasks:
        given = answers.setdefault(str(task.data.get(RECORD_ID_KEY)), [])
        for annotation in task.annotations:
            label = chosen_label(annotation)
            if label is not None:
                given.append((worker_id(annotation), label))
    return answers


def finished(tasks: Iterable[Task], workers: int) -> bool:
    """Whether every task has as many annotations (skips included) as the spec asks reviewers per record."""
    return all(len(task.annotations) >= workers for task in tasks)


def output_lines(
    lines: list[dict[str, Any]],
    answers: Mapping[str, list[tuple[str, str]]],
    categories: list[str],
    job_name: str,
    attribute: str = LABEL_ATTRIBUTE,
) -> list[dict[str, Any]]:
    """The output manifest Ground Truth's path writes: the same consolidation over the same request items, then
    one `output_line` per review line (a record nobody answered says so)."""
    items = [
        ConsolidationRequestItem.model_validate(
            consolidation_item(str(index), line, answers.get(str(line["record_id"]), []))
        )
        for index, line in enumerate(lines)
    ]
    response = consolidation_response(items, categories, attribute, f"labelstudio/{job_name}")
    content = {entry["datasetObjectId"]: entry["consolidatedAnnotation"]["content"] for entry in response}
    return [output_line(line, content.get(str(index)), job_name, attribute) for index, line in enumerate(lines)]


def ensure_webhook(client: LabelStudioClient, project_id: int, url: str, secret: str) -> Webhook:
    """The project's webhook to `url`, sending the shared secret in a header (webhooks/api.py WebhookListAPI)."""
    existing = client.call("GET", "/api/webhooks/", query={"project": project_id})
    for raw in existing if isinstance(existing, list) else []:
        hook = Webhook.model_validate(raw)
        if hook.url == url and hook.project == project_id:
            return hook
    create = WebhookCreate(
        project=project_id,
        url=url,
        send_payload=True,
        headers={WEBHOOK_SECRET_HEADER: secret},
        actions=list(ANNOTATION_ACTIONS),
    )
    return client.post("/api/webhooks/", create, Webhook)


def secret_matches(headers: Mapping[str, str], secret: str) -> bool:
    """Whether a webhook request carries the shared secret (header names compared case-insensitively), checked
    in constant time."""
    given = next((value for name, value in headers.items() if name.lower() == WEBHOOK_SECRET_HEADER.lower()), "")
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


def webhook_event(body: bytes | str) -> WebhookEvent | None:
    """A webhook body as a hint of which project moved; None for a body that is not one."""
    try:
        return WebhookEvent.model_validate_json(body)
    except ValidationError:
        return None
