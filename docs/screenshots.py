"""The docs' screenshot of Label Studio's labeling page for a demo record (docs/labelstudio-labeling.png).

    .venv/bin/python docs/screenshots.py [--out docs/labelstudio-labeling.png]

The demo model scores the demo reviews (processing's Scorer, in the processing env) and the records go through
routing's own split; the first one sent to review is imported, with the model's suggestion as a prediction, into
the demo dataset's project on a private Label Studio started on 127.0.0.1 (labelflow_local.labelstudio). Debian's
headless Chromium, driven by Playwright from a cached venv, logs in as its admin and saves the task's labeling
page. Needs nothing beyond 127.0.0.1 and the package registries (first run: Label Studio and Playwright venvs,
and Debian's chromium when it is missing).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labelflow.layout import job_name
from labelflow.models.spec import DatasetSpec
from labelflow.review import labelstudio as ls
from labelflow.routing import RoutedRecord, split_by_confidence
from labelflow_local.labelstudio import LocalLabelStudio, Started
from labelflow_local.processing_env import ensure_processing_env

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "demo" / "datasets" / "reviews.json"
DATA = ROOT / "demo" / "data" / "reviews.csv"
MODEL_DIR = ROOT / "demo" / "model"
OUT = ROOT / "docs" / "labelstudio-labeling.png"
PLAYWRIGHT_VERSION = "1.65.2"
WIDTH, HEIGHT = 1280, 900


def chromium() -> str:
    """Debian's chromium, installed with apt-get when it is missing and we are root."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=True)
        found = shutil.which("chromium")
    if found is None:
        raise SystemExit("docs/screenshots.py needs Debian's chromium: sudo apt-get install -y chromium")
    return found


def playwright_python() -> str:
    """The python of a cached venv with Playwright (bench/venvs.py); its browser download is never used."""
    sys.path.insert(0, str(ROOT / "bench"))
    # bench/ is a folder of scripts on no import path mypy knows, so its module is loaded by name.
    venvs = importlib.import_module("venvs")
    return str(venvs.cached_venv("playwright", PLAYWRIGHT_VERSION, sys.executable))


def demo_predictions() -> dict[str, Any]:
    """record id -> the demo model's {"label", "confidence"}, from docs/demo_scores.py in the processing env."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "processing")}
    done = subprocess.run(
        [str(ensure_processing_env(quiet=True)), str(ROOT / "docs" / "demo_scores.py"), str(SPEC), str(DATA)]
        + [str(MODEL_DIR)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    scores: dict[str, Any] = json.loads(done.stdout)
    return scores


def review_line(spec: DatasetSpec) -> dict[str, Any]:
    """The first demo record that routing sends to review, as its review-manifest line."""
    if spec.confidence_threshold is None:
        raise SystemExit(f"{SPEC.name} must pin confidence_threshold for the screenshot")
    scores = demo_predictions()
    with DATA.open(newline="") as handle:
        records: list[RoutedRecord] = [
            {
                "record_id": row[spec.record_id_column],
                "display": {column: row[column] for column in spec.display_columns},
                "prediction": scores.get(row[spec.record_id_column]),
            }
            for row in csv.DictReader(handle)
        ]
    sent: list[dict[str, Any]] = []
    split_by_confidence(records, spec.labels, spec.confidence_threshold, lambda _: None, sent.append)
    if not sent:
        raise SystemExit(f"the demo model is sure of every record in {DATA.name}: nothing to review")
    return sent[0]


def labeling_page(started: Started, spec: DatasetSpec, line: dict[str, Any]) -> tuple[str, list[str]]:
    """Import the line into the demo's review project; the path of its task's labeling page and the texts that
    page must show: the record's columns and values and the model's suggestion."""
    client = ls.LabelStudioClient(started.url, started.personal_token)
    project = ls.ensure_project(client, spec, job_name("lf", spec.dataset, "demo", "review"), image=False)
    ls.import_review(client, project, [line], spec)
    task = next(task for task in ls.iter_tasks(client, project.id) if task.data[ls.RECORD_ID_KEY] == line["record_id"])
    # /projects/<id>/data/ is the data manager's page (label_studio/data_manager/urls.py); its app opens the
    # labeling view of the task named by `?task=`.
    shown = [*spec.display_columns, *line["display"].values(), str(task.data[ls.SUGGESTION_NAME])]
    return f"/projects/{project.id}/data/?task={task.id}", shown


def screenshot(started: Started, spec: DatasetSpec, page: str, texts: list[str], out: Path) -> None:
    """Log in as the admin in headless Chromium, wait for `texts` and a choice per category on `page` and save it to
    `out` (docs/browser.py in the Playwright venv)."""
    request = {
        "chromium": chromium(),
        "url": started.url,
        "email": started.admin_email,
        "password": started.admin_password,
        "page": page,
        "texts": texts,
        "choices": spec.labels,
        "out": str(out),
        "width": WIDTH,
        "height": HEIGHT,
    }
    subprocess.run(
        [playwright_python(), str(ROOT / "docs" / "browser.py")], input=json.dumps(request), text=True, check=True
    )


def take(out: Path) -> dict[str, Any]:
    """Take the screenshot in a fresh Label Studio; the record shown, for the report."""
    spec = DatasetSpec.model_validate_json(SPEC.read_text())
    line = review_line(spec)
    with (
        tempfile.TemporaryDirectory(prefix="labelflow-screenshot-") as data_dir,
        LocalLabelStudio(Path(data_dir)) as started,
    ):
        page, texts = labeling_page(started, spec, line)
        screenshot(started, spec, page, texts, out)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    start = time.monotonic()
    line = take(args.out)
    print(
        f"{args.out}: record {line['record_id']}, model says {line['model_label']} ({line['model_confidence']}), "
        f"{time.monotonic() - start:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
