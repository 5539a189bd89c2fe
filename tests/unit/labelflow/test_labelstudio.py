"""review/labelstudio.py against a stub Label Studio on 127.0.0.1 answering with recorded shapes.

Every request the client sends is checked against the recorded contract of its endpoint
(tests/contracts/labelstudio/*.json, each citing Label Studio's source or docs).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from labelflow.models.groundtruth import ConsolidationRequestItem
from labelflow.models.labelstudio import Project, ProjectPage, Task
from labelflow.models.spec import DatasetSpec
from labelflow.review import labelstudio as ls
from labelflow.review.consolidation import consolidation_response
from labelflow.review.manifests import consolidation_item, human_labels, output_line
from tests.labelstudio.fake_server import Request, json_api

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "labelstudio"
ROUTES = {
    ("POST", r"/api/token/refresh/"): "token_refresh",
    ("GET", r"/api/projects/"): "project_list",
    ("POST", r"/api/projects/"): "project_create",
    ("POST", r"/api/projects/\d+/import"): "import",
    ("GET", r"/api/tasks/"): "task_list",
    ("POST", r"/api/tasks/\d+/annotations/"): "annotation_create",
    ("GET", r"/api/webhooks/"): "webhook_list",
    ("POST", r"/api/webhooks/"): "webhook_create",
}


def contract(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACTS / f"{name}.json").read_text())
    return loaded


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class StubLabelStudio:
    """Answers each (method, path) with queued (status, body) pairs, the last one repeating; records requests."""

    url: str = ""
    answers: dict[tuple[str, str], list[tuple[int, Any]]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        self.answers.setdefault((method, path), []).append((status, body))

    def recorded(self, name: str, path: str | None = None) -> None:
        """Answer an endpoint with its recorded response."""
        shape = contract(name)
        self.answer(shape["method"], path or shape["path"], shape["status"], shape["response"])

    def to(self, method: str, path: str) -> list[Sent]:
        return [s for s in self.sent if s.method == method and s.path == path]

    def reply(self, sent: Sent) -> tuple[int, Any]:
        self.sent.append(sent)
        queue = self.answers.get((sent.method, sent.path))
        if not queue:
            return 404, {"detail": "Not found."}
        return queue.pop(0) if len(queue) > 1 else queue[0]


def check_against_contract(sent: Sent) -> None:
    """The request's endpoint is a recorded one and it sends only the fields Label Studio reads there."""
    names = [
        name for (method, pattern), name in ROUTES.items() if method == sent.method and re.fullmatch(pattern, sent.path)
    ]
    assert names, f"no recorded contract for {sent.method} {sent.path}"
    shape = contract(names[0])
    assert set(sent.query) <= set(shape.get("query_fields", [])), (sent.path, sent.query)
    if names[0] == "token_refresh":
        assert "Authorization" not in sent.headers
    else:
        assert re.fullmatch(r"(Bearer|Token) \S+", sent.headers.get("Authorization", "")), sent.headers
    if "request_fields" in shape:
        assert isinstance(sent.body, dict)
        assert set(sent.body) <= set(shape["request_fields"]), sent.body
        assert set(shape.get("required_fields", [])) <= set(sent.body)
    if "actions" in shape:
        assert set(sent.body["actions"]) <= set(shape["actions"])
    if "request_item_fields" in shape:
        assert isinstance(sent.body, list)
        for item in sent.body:
            assert set(item) <= set(shape["request_item_fields"])
            for prediction in item.get("predictions", []):
                assert set(prediction) <= set(shape["prediction_fields"])
                for region in prediction["result"]:
                    assert set(region) <= set(shape["result_fields"])


@pytest.fixture
def stub() -> Iterator[StubLabelStudio]:
    state = StubLabelStudio()

    def reply(request: Request) -> tuple[int, Any]:
        path, query = urlsplit(request.path)[2:4]
        return state.reply(Sent(request.method, path, dict(parse_qsl(query)), request.headers, request.body))

    with json_api(reply) as url:
        state.url = url
        yield state
    for sent in state.sent:
        check_against_contract(sent)


def jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (the stub never checks signatures)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


PERSONAL = jwt({"token_type": "refresh", "exp": 4_102_444_800, "user_id": 1})
LEGACY = "0123456789abcdef0123456789abcdef01234567"


def spec(**overrides: Any) -> DatasetSpec:
    raw: dict[str, Any] = {
        "dataset": "reviews",
        "record_id_column": "review_id",
        "display_columns": ["review_text", "product_category"],
        "labels": ["negative", "positive"],
        "labeling": {"task_title": "Is this review positive or negative?", "workers_per_object": 3},
        "model": {
            "s3_uri": "s3://labelflow-demo/config/models/sentiment.joblib",
            "text_column": "review_text",
            "classes": ["negative", "positive"],
            "sha256": "86b8e239ad3bb0f71f45d8d4ea88018029bbd10d52a1dcc69f63b222471c3203",
        },
    }
    raw.update(overrides)
    return DatasetSpec.model_validate(raw)


def review_line(record_id: str, text: str = "The blender broke.", **extra: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "source": text,
        "record_id": record_id,
        "labels": ["negative", "positive"],
        "display": {"review_text": text, "product_category": "home"},
        "model_label": "positive",
        "model_confidence": 0.55,
    }
    line.update(extra)
    return line


def client(stub: StubLabelStudio, token: str = PERSONAL, **options: Any) -> ls.LabelStudioClient:
    return ls.LabelStudioClient(stub.url, token, backoff_seconds=0.0, **options)


def access(expires: float = 4_102_444_800) -> dict[str, str]:
    return {"access": jwt({"token_type": "access", "exp": expires, "user_id": 1})}


# The labeling config


def test_label_config_shows_the_display_columns_and_categories_escaped() -> None:
    # Given a spec whose column names, categories and title hold XML's special characters
    tricky = spec(
        display_columns=['text <"quoted">', "a&b"],
        labels=["<neg>", "pos & 'ok'"],
        labeling={"task_title": "Is it <b>good</b>?"},
        model=None,
    )

    # When the labeling config is built
    config = ls.label_config(tricky, image=False)
    root = ET.fromstring(config)

    # Then it is well-formed XML whose headers and choices read back as the spec's own strings, in order
    headers = [tag.get("value") for tag in root.iter("Header")]
    assert headers == ["Is it <b>good</b>?", 'text <"quoted">', "a&b"]
    assert [tag.get("value") for tag in root.iter("Choice")] == ["<neg>", "pos & 'ok'"]
    # And each column's value comes from its own task-data key, and answers are named like Ground Truth's
    assert [tag.get("value") for tag in root.iter("Text")] == ["$column_0", "$column_1", "$suggestion"]
    choices = next(root.iter("Choices"))
    assert choices.get("name") == "category"
    assert choices.get("toName") == "column_0"
    assert choices.get("choice") == "single-radio"


def test_label_config_for_images_uses_an_image_tag() -> None:
    # Given a spec for image records
    # When the config is built for images
    root = ET.fromstring(ls.label_config(spec(display_columns=["image"]), image=True))

    # Then the image is the object to classify and no column text is shown
    assert [tag.get("value") for tag in root.iter("Image")] == ["$image"]
    assert next(root.iter("Choices")).get("toName") == "image"
    assert [tag.get("name") for tag in root.iter("Text")] == ["suggestion"]


def test_project_title_is_deterministic_and_fits() -> None:
    # Given a long job name and a config
    job = "labelflow-reviews-20261202t063326z-a1b2c3d4-review-1"
    config = ls.label_config(spec(), image=False)

    # When the title is made twice, and once for another config
    title = ls.project_title(job, config)
    again = ls.project_title(job, config)
    other = ls.project_title(job, ls.label_config(spec(labels=["bad", "good"], model=None), image=False))

    # Then it is stable, fits Label Studio's 50 characters, starts with the job and changes with the config
    assert title == again
    assert len(title) <= 50
    assert title.startswith(job[:20])
    assert other != title


def test_task_import_carries_the_shown_values_and_the_prediction() -> None:
    # Given a review line with the model's suggestion
    line = review_line("r1", "Loud <b>motor</b> & slow")

    # When it becomes a task
    task = ls.task_import(line, spec(), "sha256:86b8e239ad3b")

    # Then the task data holds what the Ground Truth task shows, keyed by the config's tags
    assert task.data == {
        "record_id": "r1",
        "column_0": "Loud <b>motor</b> & slow",
        "column_1": "home",
        "suggestion": "The model suggests positive (55% sure). It is often wrong on records sent to you.",
    }
    # And the suggestion is a prediction with the model's confidence as its score
    [prediction] = task.predictions
    assert prediction.model_version == "sha256:86b8e239ad3b"
    assert prediction.score == 0.55
    assert prediction.result[0].model_dump() == {
        "from_name": "category",
        "to_name": "column_0",
        "type": "choices",
        "value": {"choices": ["positive"]},
    }


def test_task_import_of_an_image_and_of_an_unscored_record() -> None:
    # Given an image line and a line the model did not score
    image = {"source-ref": "s3://bucket/cats/1.png", "record_id": "i1", "labels": ["negative", "positive"]}
    unscored = review_line("r2", model_label=None, model_confidence=None)

    # When they become tasks, the image through a URL signer
    image_task = ls.task_import(image, spec(), "v1", image_url=lambda uri: uri.replace("s3://", "https://signed/"))
    plain = ls.task_import(unscored, spec(), "v1")

    # Then the image is signed, and the unscored record has no prediction and an empty suggestion
    assert image_task.data["image"] == "https://signed/bucket/cats/1.png"
    assert ls.is_image_review([image]) is True
    assert ls.is_image_review([unscored]) is False
    assert plain.predictions == []
    assert plain.data["suggestion"] == ""


# Authentication, retries and errors


def test_personal_token_is_refreshed_once_and_sent_as_bearer(stub: StubLabelStudio) -> None:
    # Given Label Studio answering the refresh and the project list
    stub.answer("POST", "/api/token/refresh/", 200, access())
    stub.recorded("project_list")

    # When two calls are made with a personal access token
    api = client(stub)
    api.get("/api/projects/", ProjectPage)
    api.get("/api/projects/", ProjectPage)

    # Then one refresh sent the token, and both calls carried the access token as a bearer token
    [refresh] = stub.to("POST", "/api/token/refresh/")
    assert refresh.body == {"refresh": PERSONAL}
    calls = stub.to("GET", "/api/projects/")
    assert [c.headers["Authorization"] for c in calls] == [f"Bearer {access()['access']}"] * 2


def test_expired_access_token_and_401_refresh_again(stub: StubLabelStudio) -> None:
    # Given an access token that expires at t=1000, and a clock we move
    now = [0.0]
    stub.answer("POST", "/api/token/refresh/", 200, access(expires=1000))
    stub.answer("GET", "/api/projects/", 200, contract("project_list")["response"])
    stub.answer("GET", "/api/projects/", 401, {"detail": "Given token not valid for any token type"})
    stub.answer("GET", "/api/projects/", 200, contract("project_list")["response"])
    api = client(stub, clock=lambda: now[0])

    # When one call is made before expiry, one after, and the server then rejects the access token once
    api.get("/api/projects/", ProjectPage)
    now[0] = 990.0
    api.get("/api/projects/", ProjectPage)

    # Then the token was refreshed at first, near expiry, and after the 401
    assert len(stub.to("POST", "/api/token/refresh/")) == 3
    assert len(stub.to("GET", "/api/projects/")) == 3


def test_legacy_token_is_sent_as_token(stub: StubLabelStudio) -> None:
    # Given a legacy token
    stub.recorded("project_list")

    # When a call is made
    client(stub, LEGACY).get("/api/projects/", ProjectPage)

    # Then it goes as `Token`, with no refresh
    assert stub.to("GET", "/api/projects/")[0].headers["Authorization"] == f"Token {LEGACY}"
    assert stub.to("POST", "/api/token/refresh/") == []


def test_transient_answers_are_retried(stub: StubLabelStudio) -> None:
    # Given Label Studio answering 503 then 429 before the list
    stub.answer("GET", "/api/projects/", 503, {})
    stub.answer("GET", "/api/projects/", 429, {})
    stub.recorded("project_list")

    # When the list is asked for
    page = client(stub, LEGACY).get("/api/projects/", ProjectPage)

    # Then the third attempt answered
    assert page.results[0].title == "My project"
    assert len(stub.to("GET", "/api/projects/")) == 3


def test_persistent_5xx_is_unavailable(stub: StubLabelStudio) -> None:
    # Given Label Studio answering 502 to every attempt
    stub.answer("GET", "/api/projects/", 502, {})

    # When the list is asked for
    # Then the failure says to try later, after every attempt was made
    with pytest.raises(ls.LabelStudioUnavailable, match="kept answering 502"):
        client(stub, LEGACY).get("/api/projects/", ProjectPage)
    assert len(stub.to("GET", "/api/projects/")) == 6


def test_unreachable_server_names_the_url() -> None:
    # Given a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    # When a call is made
    # Then the error names the URL and what to check
    with pytest.raises(ls.LabelStudioUnavailable, match=f"{url} cannot be reached: check the URL"):
        ls.LabelStudioClient(url, LEGACY, backoff_seconds=0.0).get("/api/projects/", ProjectPage)


@pytest.mark.parametrize(
    ("token", "method", "path", "status", "message"),
    [
        (PERSONAL, "POST", "/api/token/refresh/", 401, "rejected the personal access token: create one"),
        (PERSONAL, "POST", "/api/token/refresh/", 404, "Label Studio 1.14 or later"),
        (LEGACY, "GET", "/api/projects/", 401, "disables legacy tokens by default: use a personal access token"),
        (LEGACY, "GET", "/api/projects/", 400, r"refused GET /api/projects/ \(400\); fields in question: \['title'\]"),
    ],
)
def test_refusals_say_what_to_fix(
    stub: StubLabelStudio, token: str, method: str, path: str, status: int, message: str
) -> None:
    # Given Label Studio refusing one call
    stub.answer(method, path, status, {"title": ["bad"]} if status == 400 else {"detail": "no"})

    # When the project list is asked for
    # Then the error says what the user can do
    with pytest.raises(ls.LabelStudioError, match=message):
        client(stub, token).get("/api/projects/", ProjectPage)


def test_missing_project_is_named(stub: StubLabelStudio) -> None:
    # Given a project that does not exist (the stub answers 404)
    # When its tasks are listed
    # Then the error says it was deleted or the URL is wrong
    with pytest.raises(ls.LabelStudioError, match="project or task was deleted, or the URL points elsewhere"):
        list(ls.iter_tasks(client(stub, LEGACY), 99))


# Projects, import, read-back


def test_ensure_project_reuses_the_exact_title(stub: StubLabelStudio) -> None:
    # Given a project list (title search is icontains) holding a similar title and the exact one
    config = ls.label_config(spec(), image=False)
    title = ls.project_title("job-1", config)
    page = contract("project_list")["response"]
    similar = {**page["results"][0], "id": 6, "title": title + "x"}
    exact = {**page["results"][0], "id": 7, "title": title}
    stub.answer("GET", "/api/projects/", 200, {**page, "count": 2, "results": [similar, exact]})

    # When the job's project is ensured
    project = ls.ensure_project(client(stub, LEGACY), spec(), "job-1", image=False)

    # Then the exact one is reused and nothing is created
    assert project.id == 7
    assert stub.to("GET", "/api/projects/")[0].query == {"title": title, "page_size": "100"}
    assert stub.to("POST", "/api/projects/") == []


def test_ensure_project_creates_it(stub: StubLabelStudio) -> None:
    # Given no project with the title
    stub.answer("GET", "/api/projects/", 200, {"count": 0, "next": None, "previous": None, "results": []})
    stub.recorded("project_create")

    # When the job's project is ensured
    project = ls.ensure_project(client(stub, LEGACY), spec(), "job-1", image=False)

    # Then it is created with the spec's config, one annotation per reviewer on every task, and no pre-selection
    assert project.id == 1
    [create] = stub.to("POST", "/api/projects/")
    assert create.body["label_config"] == ls.label_config(spec(), image=False)
    assert create.body["maximum_annotations"] == 3
    assert create.body["overlap_cohort_percentage"] == 100
    assert create.body["show_collab_predictions"] is False
    assert create.body["title"] == ls.project_title("job-1", create.body["label_config"])


def test_import_review_skips_records_already_imported(stub: StubLabelStudio) -> None:
    # Given a project holding record r1 already
    stub.recorded("task_list")
    stub.recorded("import", "/api/projects/1/import")
    project = Project(id=1, title="t")
    lines = [review_line("r1"), review_line("r2"), review_line("r3", model_label=None, model_confidence=None)]

    # When the review is imported
    sent = ls.import_review(client(stub, LEGACY), project, lines, spec())

    # Then only r2 and r3 go, with their predictions where the model made one
    assert sent == 2
    [imported] = stub.to("POST", "/api/projects/1/import")
    assert [task["data"]["record_id"] for task in imported.body] == ["r2", "r3"]
    assert [len(task.get("predictions", [])) for task in imported.body] == [1, 0]
    assert imported.body[0]["predictions"][0]["score"] == 0.55


def test_iter_tasks_pages_to_the_total(stub: StubLabelStudio) -> None:
    # Given three tasks over two pages
    task = contract("task_list")["response"]["tasks"][0]
    first = {
        "total": 3,
        "total_annotations": 0,
        "total_predictions": 0,
        "tasks": [{**task, "id": 1}, {**task, "id": 2}],
    }
    second = {**first, "tasks": [{**task, "id": 3}]}
    stub.answer("GET", "/api/tasks/", 200, first)
    stub.answer("GET", "/api/tasks/", 200, second)

    # When the project's tasks are read with pages of two
    tasks = list(ls.iter_tasks(client(stub, LEGACY), 1, page_size=2))

    # Then all three come, from pages 1 and 2, with annotations asked for
    assert [t.id for t in tasks] == [1, 2, 3]
    queries = [sent.query for sent in stub.to("GET", "/api/tasks/")]
    assert [q["page"] for q in queries] == ["1", "2"]
    assert all(q["fields"] == "all" and q["project"] == "1" for q in queries)


def annotated(record_id: str, *answers: tuple[int, str | None]) -> Task:
    """A task as the task list returns it, with one annotation per (user id, label); None is a skip."""
    recorded = contract("task_list")["response"]["tasks"][0]
    base = recorded["annotations"][0]
    annotations = [
        {
            **base,
            "id": n,
            "completed_by": user,
            "was_cancelled": label is None,
            "result": [] if label is None else [{**base["result"][0], "value": {"choices": [label]}}],
        }
        for n, (user, label) in enumerate(answers)
    ]
    return Task.model_validate(
        {**recorded, "data": {**recorded["data"], "record_id": record_id}, "annotations": annotations}
    )


def test_output_lines_match_the_ground_truth_path() -> None:
    # Given three review lines, their tasks annotated by three users (one skipped), and one task nobody did
    lines = [review_line("r1"), review_line("r2"), review_line("r3")]
    tasks = [
        annotated("r1", (1, "negative"), (2, "negative"), (3, "positive")),
        annotated("r2", (1, "positive"), (2, None), (3, "positive")),
        annotated("r3"),
    ]

    # When the answers are read and the output manifest built
    answers = ls.answers_by_record(tasks)
    lines_out = ls.output_lines(lines, answers, ["negative", "positive"], "job-1")

    # Then the answers are per worker, skips left out
    assert answers["r2"] == [("labelstudio-user-1", "positive"), ("labelstudio-user-3", "positive")]
    # And the lines are exactly what the Ground Truth consolidation writes for the same answers
    items = [
        ConsolidationRequestItem.model_validate(consolidation_item(str(i), line, answers[line["record_id"]]))
        for i, line in enumerate(lines)
    ]
    expected = consolidation_response(items, ["negative", "positive"], "label", "labelstudio/job-1")
    by_object = {entry["datasetObjectId"]: entry["consolidatedAnnotation"]["content"] for entry in expected}
    expected_lines = [output_line(line, by_object.get(str(i)), "job-1") for i, line in enumerate(lines)]
    for got, want in zip(lines_out, expected_lines, strict=True):
        got["label-metadata"].pop("creation-date", None)
        want["label-metadata"].pop("creation-date", None)
    assert lines_out == expected_lines
    # And merge reads r1 and r2 as human-labeled and r3 as unanswered
    labels = human_labels(lines_out)
    assert labels["r2"][0] == "positive"
    assert "r3" not in labels
    assert lines_out[2]["label-metadata"]["failure-reason"] == "no worker answered"


def test_finished_counts_skips() -> None:
    # Given tasks with three annotations (one a skip) and with two
    done = annotated("r1", (1, "negative"), (2, None), (3, "positive"))
    open_ = annotated("r2", (1, "negative"), (2, "negative"))

    # When completion is judged for three reviewers per record
    # Then only a task with three annotations is finished
    assert ls.finished([done], 3) is True
    assert ls.finished([done, open_], 3) is False


# Webhooks


def test_ensure_webhook_sends_the_secret_header(stub: StubLabelStudio) -> None:
    # Given a project without webhooks
    stub.recorded("webhook_list")
    stub.recorded("webhook_create")

    # When the webhook is ensured
    hook = ls.ensure_webhook(client(stub, LEGACY), 1, "https://labelflow.example/webhook", "s3cret")

    # Then it is created for the annotation actions, with the payload and the secret header
    assert hook.id == 3
    [create] = stub.to("POST", "/api/webhooks/")
    assert create.body["headers"] == {"X-Labelflow-Webhook-Secret": "s3cret"}
    assert create.body["send_payload"] is True
    assert set(create.body["actions"]) == {
        "ANNOTATION_CREATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
    }
    assert stub.to("GET", "/api/webhooks/")[0].query == {"project": "1"}


def test_ensure_webhook_reuses_an_existing_one(stub: StubLabelStudio) -> None:
    # Given the project's webhook exists
    stub.answer("GET", "/api/webhooks/", 200, [contract("webhook_create")["response"]])

    # When it is ensured again
    hook = ls.ensure_webhook(client(stub, LEGACY), 1, "https://labelflow.example/webhook", "s3cret")

    # Then nothing is created
    assert hook.id == 3
    assert stub.to("POST", "/api/webhooks/") == []


@pytest.mark.parametrize("name", ["webhook_annotation_created", "webhook_annotations_deleted"])
def test_recorded_webhook_bodies_parse(name: str) -> None:
    # Given a body Label Studio sends
    recorded = contract(name)

    # When it is parsed
    event = ls.webhook_event(json.dumps(recorded["body"]))

    # Then its action and project are read, and the recorded headers carry the secret
    assert event is not None
    assert event.action == recorded["body"]["action"]
    assert event.project is not None and event.project.id == 2
    assert ls.secret_matches(recorded["headers"], "s3cret")


def test_webhook_event_rejects_other_bodies() -> None:
    # Given bodies that are not webhook events
    # When they are parsed
    # Then they are not taken as hints
    assert ls.webhook_event(b"not json") is None
    assert ls.webhook_event(b'{"no": "action"}') is None


@pytest.mark.parametrize(
    ("headers", "secret", "matches"),
    [
        ({"x-labelflow-webhook-secret": "s3cret"}, "s3cret", True),
        ({"X-Labelflow-Webhook-Secret": "s3cre"}, "s3cret", False),
        ({}, "s3cret", False),
        ({"X-Labelflow-Webhook-Secret": ""}, "", False),
    ],
)
def test_secret_matches(headers: dict[str, str], secret: str, matches: bool) -> None:
    # Given a webhook request's headers and the configured secret
    # When they are compared
    # Then only the exact secret matches (an unset secret never does)
    assert ls.secret_matches(headers, secret) is matches
