"""Run the processing job, or a piece of its engine, in the processing image's environment (processing/image.json).

The engine needs numpy and pyarrow, which only the image's venv has, so every test runs it in a subprocess on
the image's Python, as the deployed job runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labelflow_local.processing_env import ensure_processing_env

ROOT = Path(__file__).resolve().parents[3]
PROCESSING = ROOT / "processing"
DEMO = ROOT / "demo"

try:
    from labelflow.formats import ResolvedInput, format_from_key
    from labelflow.models.spec import DatasetSpec
except ImportError:  # the layer is not installed: import it from the source tree
    sys.path.insert(0, str(ROOT / "layers" / "labelflow"))
    from labelflow.formats import ResolvedInput, format_from_key
    from labelflow.models.spec import DatasetSpec

HEADER = "id,ts,text,num,cat"
LABELS = ["negative", "positive"]


def make_spec(features: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """A validated DatasetSpec, dumped to JSON the way the pipeline hands it to the script."""
    fields: dict[str, Any] = {
        "dataset": "test",
        "record_id_column": "id",
        "event_time_column": "ts",
        "display_columns": ["text"],
        "features": [
            {"name": "num", "type": "numeric", "impute": "mean"},
            {"name": "cat", "type": "categorical", "impute": "most_frequent"},
        ]
        if features is None
        else features,
        "labels": LABELS,
    }
    fields.update(overrides)
    return DatasetSpec.model_validate(fields).model_dump(mode="json")


def demo_spec(**overrides: Any) -> dict[str, Any]:
    """The demo's reviews spec, validated and dumped as planning hands it to the job (defaults filled in)."""
    fields = json.loads((DEMO / "datasets" / "reviews.json").read_text(encoding="utf-8"))
    return DatasetSpec.model_validate({**fields, **overrides}).model_dump(mode="json")


def read_as(name: str = "input.csv", **told: Any) -> list[str]:
    """The reading arguments planning passes (ResolvedInput's), for a file called `name`.

    The format its extension names (csv when none), gzip when it ends in .gz, "," for CSV; `told` overrides any.
    """
    by_key, gzipped = format_from_key(name)
    fields: dict[str, Any] = {"format": by_key or "csv", "gzip": gzipped, **told}
    if fields["format"] == "csv":
        fields.setdefault("delimiter", ",")
    return ResolvedInput.model_validate(fields).container_arguments()


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


@dataclass
class Outcome:
    code: int
    out: Path
    message_file: Path
    stderr: str

    def _lines(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / name).read_text(encoding="utf-8").splitlines()]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self._lines("records.jsonl")

    @property
    def rejected(self) -> list[dict[str, Any]]:
        return self._lines("rejected.jsonl")

    @property
    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.out / "stats.json").read_text(encoding="utf-8"))
        return result

    @property
    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.out / "state.json").read_text(encoding="utf-8"))
        return result

    @property
    def message(self) -> str:
        return self.message_file.read_text(encoding="utf-8").strip()


@pytest.fixture(scope="session")
def image_python() -> str:
    return str(ensure_processing_env())


@dataclass
class Job:
    """Lays out the container's folders under a temp folder and runs preprocess.py on the image's Python."""

    python: str
    root: Path

    def run(
        self,
        data: str | bytes | Mapping[str, str | bytes] | None,
        spec: dict[str, Any],
        name: str = "input.csv",
        extra: list[str] | None = None,
        model: Path | None = None,
        state: bytes | None = None,
        read: list[str] | None = None,
    ) -> Outcome:
        """Run on `data` (one file called `name`, or {name: content}); `state` is applied when given.

        The files are read as `read` says, by default as `read_as` says for the first file's name.
        """
        job = self.root / f"job{len(list(self.root.glob('job*')))}"
        input_dir, model_dir = job / "input" / "data", job / "input" / "model"
        input_dir.mkdir(parents=True)
        model_dir.mkdir()
        files = data if isinstance(data, Mapping) else {name: data} if data is not None else {}
        for file_name, content in files.items():
            path = input_dir / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        if model is not None:
            shutil.copy(model, model_dir / model.name)
        spec_file = job / "input" / "spec" / "spec.json"
        spec_file.parent.mkdir(parents=True)
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        out, message_file = job / "output", job / "opt" / "ml" / "output" / "message"
        argv = ["--input-dir", str(input_dir), "--spec", str(spec_file), "--model-dir", str(model_dir)]
        argv += ["--output-dir", str(out), "--message-file", str(message_file), *(extra or [])]
        argv += read_as(next(iter(files), name)) if read is None else read
        if state is not None:
            state_dir = job / "input" / "state"
            state_dir.mkdir(parents=True)
            (state_dir / "state.json").write_bytes(state)
            argv += ["--state-dir", str(state_dir)]
        done = subprocess.run([self.python, str(PROCESSING / "preprocess.py"), *argv], capture_output=True, text=True)
        return Outcome(done.returncode, out, message_file, done.stderr)


@pytest.fixture
def job(image_python: str, tmp_path: Path) -> Job:
    return Job(image_python, tmp_path)


def in_image(python: str, code: str, *args: str) -> Any:
    """Run `code` (with `args`) on the image's Python, processing/ importable; it prints one JSON value, returned."""
    done = subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, cwd=PROCESSING, env={"PYTHONPATH": str(PROCESSING)}
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
