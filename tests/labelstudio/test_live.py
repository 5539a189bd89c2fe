"""review/labelstudio.py against a live Label Studio: project, import, reviewers' annotations, webhook, read-back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from labelflow.models.labelstudio import AnnotationCreate, ChoiceResult, ChoiceValue
from labelflow.models.spec import DatasetSpec
from labelflow.review import labelstudio as ls
from labelflow.review.manifests import human_labels
from labelflow_local.labelstudio import Started

pytestmark = pytest.mark.labelstudio

DEMO_SPEC = Path(__file__).resolve().parents[2] / "demo" / "datasets" / "reviews.json"
SECRET = "live-test-secret"
# Webhooks are sent from Label Studio's request thread right after the annotation is saved; this bounds the wait.
_WEBHOOK_WAIT_SECONDS = 20.0


class NewUser(BaseModel):
    """POST /api/users/ (label_studio/users/api.py UserAPI, users/serializers.py BaseUserSerializer fields)."""

    email: str
    username: str
    first_name: str


def review_lines(spec: DatasetSpec) -> list[dict[str, Any]]:
    texts = {
        "r-001": "Stopped working after two days. <b>Avoid</b> & return it.",
        "r-002": "Does exactly what it says; I'd buy it again.",
        "r-003": "Fine, I guess.",
    }
    return [
        {
            "source": text,
            "record_id": record_id,
            "labels": spec.labels,
            "display": {"review_text": text, "product_category": "home"},
            "model_label": "positive",
            "model_confidence": 0.6,
        }
        for record_id, text in texts.items()
    ]


@pytest.fixture
def webhook_inbox() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """An HTTP endpoint on 127.0.0.1 keeping every request's headers and body."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Inbox(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Inbox)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/labelstudio-webhook", received
    server.shutdown()
    server.server_close()


def annotate(admin: ls.LabelStudioClient, task_id: int, user_id: int, label: str) -> None:
    """A reviewer's submission, as the labeling page posts it (tasks/api.py AnnotationsListAPI)."""
    choice = ChoiceResult(from_name="category", to_name=ls.column_key(0), value=ChoiceValue(choices=[label]))
    admin.call("POST", f"/api/tasks/{task_id}/annotations/", AnnotationCreate(result=[choice], completed_by=user_id))


def test_review_round_trip(label_studio: Started, webhook_inbox: tuple[str, list[Any]]) -> None:
    # Given the demo spec (three reviewers per record), three review lines, and a live Label Studio
    spec = DatasetSpec.model_validate_json(DEMO_SPEC.read_text())
    lines = review_lines(spec)
    client = ls.LabelStudioClient(label_studio.url, label_studio.personal_token)
    admin = ls.LabelStudioClient(label_studio.url, label_studio.legacy_token)

    # When the review job's project is ensured twice and the lines imported twice
    project = ls.ensure_project(client, spec, "labelflow-reviews-live-1", image=False)
    again = ls.ensure_project(client, spec, "labelflow-reviews-live-1", image=False)
    imported = ls.import_review(client, project, lines, spec)
    reimported = ls.import_review(client, project, lines, spec)

    # Then one project holds one task per line, each with the model's prediction
    assert again.id == project.id
    assert (imported, reimported) == (3, 0)
    tasks = {str(task.data["record_id"]): task for task in ls.iter_tasks(client, project.id, page_size=2)}
    assert sorted(tasks) == ["r-001", "r-002", "r-003"]
    assert tasks["r-001"].data["column_0"] == lines[0]["source"]

    # And when a webhook is set and three reviewers answer two records, one reviewer the third
    url, received = webhook_inbox
    ls.ensure_webhook(client, project.id, url, SECRET)
    reviewers = [
        admin.call(
            "POST",
            "/api/users/",
            NewUser(email=f"reviewer{n}@labelflow.local", username=f"reviewer{n}", first_name="R"),
        )["id"]
        for n in (1, 2, 3)
    ]
    answers = {
        "r-001": ["negative"] * 3,
        "r-002": ["positive"] * 3,
        "r-003": ["negative"],
    }
    for record_id, given in answers.items():
        for user_id, label in zip(reviewers, given, strict=False):
            annotate(admin, tasks[record_id].id, user_id, label)

    # Then the webhook brought the shared secret and an annotation action for the project
    deadline = time.monotonic() + _WEBHOOK_WAIT_SECONDS
    while len(received) < 7 and time.monotonic() < deadline:
        time.sleep(0.1)
    headers, body = received[0]
    event = ls.webhook_event(body)
    assert ls.secret_matches(headers, SECRET)
    assert event is not None and event.action == "ANNOTATION_CREATED"
    assert event.project is not None and event.project.id == project.id

    # And reading the project back gives each reviewer's answer, r-003 not finished yet
    read = list(ls.iter_tasks(client, project.id, page_size=2))
    assert not ls.finished(read, spec.labeling.workers_per_object)
    by_record = ls.answers_by_record(read)
    assert {record: [label for _, label in given] for record, given in by_record.items()} == answers
    assert len({worker for worker, _ in by_record["r-001"]}) == 3

    # And the output manifest has the consolidated labels merge reads, as Ground Truth's path writes them
    output = ls.output_lines(lines, by_record, spec.labels, "labelflow-reviews-live-1")
    labels = human_labels(output)
    assert {record: label for record, (label, _) in labels.items()} == {
        "r-001": "negative",
        "r-002": "positive",
        "r-003": "negative",
    }
    assert [line["label"]["votes"] for line in output] == [3, 3, 1]
    assert [line["record_id"] for line in output] == ["r-001", "r-002", "r-003"]
    assert json.dumps(output)
