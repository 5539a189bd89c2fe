"""The whole local workflow with a live Label Studio: the run waits on its review's task token while this test, as
three reviewers, answers every task through Label Studio's REST API; the run then succeeds with those labels."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from labelflow.models.labelstudio import AnnotationCreate, ChoiceResult, ChoiceValue, ProjectPage
from labelflow.review import labelstudio as ls
from labelflow_local.cli import main
from labelflow_local.demo import DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH
from labelflow_local.labelstudio import Started
from labelflow_local.review import read_labels
from tests.conftest import EVENTS
from tests.labelstudio.test_live import NewUser

pytestmark = pytest.mark.labelstudio

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"
# Bounds the waits on the run (the poller runs every second); not an assertion on speed.
_WAIT_SECONDS = 300.0


def wait_for_project(admin: ls.LabelStudioClient, known: set[int]) -> int:
    """The id of the first project that was not there before the run, once it exists."""
    deadline = time.monotonic() + _WAIT_SECONDS
    while time.monotonic() < deadline:
        fresh = [p.id for p in admin.get("/api/projects/", ProjectPage, page_size=100).results if p.id not in known]
        if fresh:
            return fresh[0]
        time.sleep(0.5)
    raise TimeoutError("the run made no Label Studio project")


def test_a_local_run_waits_for_label_studio_answers(label_studio: Started, tmp_path: Path) -> None:
    # Given a live Label Studio, three reviewers in it, and the demo sample's known labels
    admin = ls.LabelStudioClient(label_studio.url, label_studio.legacy_token)
    known = {p.id for p in admin.get("/api/projects/", ProjectPage, page_size=100).results}
    reviewers = [
        admin.call("POST", "/api/users/", NewUser(email=f"wf{n}@labelflow.local", username=f"wf{n}", first_name="W"))[
            "id"
        ]
        for n in (1, 2, 3)
    ]
    truth = read_labels(DEMO_TRUTH)
    workdir = tmp_path / "work"
    argv = [
        "run", str(SAMPLE), "--local", "--spec", str(DEMO_SPEC), "--model", str(DEMO_MODEL), "--workdir",
        str(workdir), "--reviewer", "labelstudio", "--labelstudio-url", label_studio.url,
        "--labelstudio-token", label_studio.personal_token, "--json",
    ]  # fmt: skip
    exit_codes: list[int] = []
    started = time.perf_counter()

    # When the run starts and, once its project exists, every task gets the three reviewers' answers
    run = threading.Thread(target=lambda: exit_codes.append(main(argv)), daemon=True)
    run.start()
    project = wait_for_project(admin, known)
    # One import request holds every task of the job (fewer than the client's batch of 500).
    tasks = list(ls.iter_tasks(admin, project))
    while not tasks:
        time.sleep(0.5)
        tasks = list(ls.iter_tasks(admin, project))
    assert run.is_alive(), "the run ended before anyone answered: it did not wait on its task token"
    for task in tasks:
        label = truth[str(task.data[ls.RECORD_ID_KEY])]
        choice = ChoiceResult(from_name="category", to_name=ls.column_key(0), value=ChoiceValue(choices=[label]))
        for user in reviewers:
            admin.call(
                "POST", f"/api/tasks/{task.id}/annotations/", AnnotationCreate(result=[choice], completed_by=user)
            )
    run.join(_WAIT_SECONDS)
    print(f"live workflow: {time.perf_counter() - started:.1f}s from start to SUCCEEDED")

    # Then the run succeeded, and the feature store holds the reviewers' labels for every reviewed record
    assert exit_codes == [0]
    (group,) = (workdir / "feature-store" / "online").glob("*.json")
    stored = json.loads(group.read_text())
    human = {record: values["label"] for record, values in stored.items() if values["label_source"] == "human"}
    assert sorted(human) == sorted(str(task.data[ls.RECORD_ID_KEY]) for task in tasks)
    assert all(label == truth[record] for record, label in human.items())
