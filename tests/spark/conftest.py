"""Run both engines on the same input: the single-machine job (preprocess.py) and the Spark job, in local mode.

Both run in subprocesses on venvs with the processing image's packages (the Spark one adds pyspark); the Spark
jobs of a test session share one Spark session, so the JVM starts once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labelflow_local.processing_env import ensure_processing_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from spark import spark_env, spark_python  # type: ignore[import-not-found]  # noqa: E402

RUN_JOBS = """
import json, sys
from labelflow_processing.readers import ReadAs
from labelflow_processing.spark.engine import Job, run, session
spark = session("labelflow-tests")
spark.sparkContext.setLogLevel("ERROR")
for raw in json.loads(sys.argv[1]):
    run(spark, Job(**{**raw, "read_as": ReadAs(**raw["read_as"])}))
spark.stop()
"""


@dataclass(frozen=True)
class Case:
    """One input, spec and model, laid out for both engines; `out(engine)` is where an engine's run writes."""

    root: Path
    read_as: dict[str, Any]
    model: Path | None

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    def out(self, engine: str) -> Path:
        return self.root / engine

    def preprocess(self, python: str, engine: str = "single") -> None:
        """The single-machine job, fitting a state."""
        model_dir = self.root / "model"
        model_dir.mkdir(exist_ok=True)
        if self.model:
            (model_dir / self.model.name).write_bytes(self.model.read_bytes())
        argv = ["--input-dir", str(self.input_dir), "--spec", str(self.spec), "--model-dir", str(model_dir)]
        argv += ["--output-dir", str(self.out(engine)), "--message-file", str(self.root / "message")]
        argv += ["--format", self.read_as["format"]]
        if self.read_as.get("delimiter"):
            argv += ["--delimiter", self.read_as["delimiter"]]
        done = subprocess.run(
            [python, str(ROOT / "processing" / "preprocess.py"), *argv], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    def spark_job(self, engine: str, state: Path | None = None) -> dict[str, Any]:
        """Arguments of a Spark run writing to `out(engine)`; with `state`, that state is applied."""
        return {
            "input": self.input_dir.as_uri(),
            "output": self.out(engine).as_uri(),
            "spec": self.spec.as_uri(),
            "read_as": self.read_as,
            "state": state.as_uri() if state else None,
            "model": self.model.as_uri() if self.model else None,
        }

    def lines(self, engine: str, name: str) -> list[Any]:
        text = (self.out(engine) / name).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    def document(self, engine: str, name: str) -> Any:
        return json.loads((self.out(engine) / name).read_text(encoding="utf-8"))


def run_spark_jobs(python: str, jobs: list[dict[str, Any]]) -> None:
    done = subprocess.run(
        [python, "-c", RUN_JOBS, json.dumps(jobs)], capture_output=True, text=True, env=spark_env(python)
    )
    assert done.returncode == 0, done.stderr[-5000:]


@pytest.fixture(scope="session")
def image_python() -> str:
    return str(ensure_processing_env())


@pytest.fixture(scope="session")
def pyspark_python() -> str:
    return str(spark_python())
