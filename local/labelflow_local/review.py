"""Local human review: a Ground Truth stand-in that drives the real pre/post Lambdas with local workers.

Worker answers come from a backend: simulated workers (seeded, with a set accuracy) by default, an
answers file, or a person at the terminal.
Everything is written where and how Ground Truth writes it, so merge reads the same files.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from labelflow.layout import labeling_output_manifest_uri
from labelflow.review.manifests import answer_content, consolidation_item, output_line
from labelflow.s3 import S3Location, get_json, iter_jsonl, put_bytes, put_json
from labelflow_local.functions import FunctionError, FunctionRegistry


class WorkerAnswers(Protocol):
    """Answers for one task: (worker id, label) per worker."""

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]: ...


class SimulatedWorkers:
    """A seeded crowd: each answer is the true label with probability `accuracy`, else another label.

    Records whose label is not known get no answer (they end unlabeled), never a made-up one.

    Answers depend only on the seed and the record id, never on the order tasks arrive in.
    """

    def __init__(
        self,
        truth: Mapping[str, str],
        accuracy: float = 0.9,
        seed: int = 7,
        pool: int = 5,
        workers_per_task: int | None = None,
    ) -> None:
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError("accuracy must be between 0 and 1")
        if workers_per_task is not None and not 1 <= workers_per_task <= 9:
            raise ValueError("workers per task must be between 1 and 9, as in Ground Truth")
        self._truth = truth
        self._accuracy = accuracy
        self._seed = seed
        self._per_task = workers_per_task
        size = max(pool, workers_per_task or 0)
        self._pool = [f"local.simulated.worker-{number}" for number in range(1, size + 1)]

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        """`workers` is the job's NumberOfHumanWorkersPerDataObject, unless this crowd was told otherwise."""
        record_id = str(task_input["record_id"])
        labels: list[str] = list(task_input["labels"])
        rng = random.Random(f"{self._seed}:{record_id}")
        chosen = rng.sample(self._pool, min(self._per_task or workers, len(self._pool)))
        truth = self._truth.get(record_id)
        if truth is None:
            return []  # nothing to answer from: the record stays unlabeled, and the run says so
        answers = []
        for worker in chosen:
            if rng.random() < self._accuracy:
                answers.append((worker, truth))
            else:
                wrong = [label for label in labels if label != truth] or labels
                answers.append((worker, rng.choice(wrong)))
        return answers


def read_labels(path: Path) -> dict[str, str]:
    """A labels file: CSV with `record_id,label` columns, or a JSON object of record id → label."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json":
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a JSON object of record id to label")
        return {str(k): str(v) for k, v in loaded.items()}
    rows = csv.DictReader(io.StringIO(text))
    if not rows.fieldnames or not {"record_id", "label"} <= set(rows.fieldnames):
        raise ValueError(f"{path}: expected columns record_id,label")
    return {row["record_id"]: row["label"] for row in rows}


class AnswersFile:
    """Answers from a labels file (see read_labels): one file is one reviewer.

    Records the file does not cover get no answer, as tasks that expire do.
    """

    WORKER = "local.answers-file"

    def __init__(self, path: Path) -> None:
        self._labels = read_labels(path)

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        label = self._labels.get(str(task_input["record_id"]))
        if label is None or label not in task_input["labels"]:
            return []
        return [(self.WORKER, label)]


class TerminalReviewer:
    """A person at the terminal labels each record; an empty answer skips it."""

    WORKER = "local.terminal"

    def __init__(self, ask: Callable[[str], str] = input, say: Callable[[str], None] = print) -> None:
        self._ask = ask
        self._say = say

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        labels: list[str] = list(task_input["labels"])
        self._say(f"\n[{task_input['record_id']}]")
        rows = task_input.get("rows") or [{"column": "record", "value": task_input["text"]}]
        width = max(len(str(row["column"])) for row in rows)
        for row in rows:
            self._say(f"  {str(row['column']):<{width}}  {row['value']}")
        if suggestion := task_input.get("suggestion"):
            self._say(f"  (the model suggests {suggestion['label']}, {suggestion['confidence']} sure)")
        choices = "  ".join(f"{number}) {label}" for number, label in enumerate(labels, start=1))
        while True:
            reply = self._ask(f"{choices}  (enter to skip) > ").strip()
            if not reply:
                return []
            if reply.isdigit() and 1 <= int(reply) <= len(labels):
                return [(self.WORKER, labels[int(reply) - 1])]
            if reply in labels:
                return [(self.WORKER, reply)]
            self._say(f"pick 1-{len(labels)} or type a label")


class LocalGroundTruth:
    """Runs CreateLabelingJob requests to completion and answers with DescribeLabelingJob's shape."""

    def __init__(self, s3: Any, functions: FunctionRegistry, workers: WorkerAnswers, region: str, account: str) -> None:
        self._s3 = s3
        self._functions = functions
        self._workers = workers
        self._region = region
        self._account = account

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["LabelingJobName"]
        arn = f"arn:aws:sagemaker:{self._region}:{self._account}:labeling-job/{name.lower()}"
        attribute = request["LabelAttributeName"]
        task = request["HumanTaskConfig"]
        created = datetime.now(UTC)
        stamp = created.strftime("%Y-%m-%d_%H-%M-%S")
        output = S3Location.parse(request["OutputConfig"]["S3OutputPath"].rstrip("/") + f"/{name}/")
        describe: dict[str, Any] = {
            "LabelingJobName": name,
            "LabelingJobArn": arn,
            "LabelAttributeName": attribute,
            "CreationTime": created.isoformat(),
            "InputConfig": request["InputConfig"],
            "OutputConfig": request["OutputConfig"],
            "RoleArn": request["RoleArn"],
            "HumanTaskConfig": task,
        }
        manifest = S3Location.parse(request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])
        lines = list(iter_jsonl(self._s3, *manifest))
        categories_uri = S3Location.parse(request["LabelCategoryConfigS3Uri"])
        categories = [entry["label"] for entry in get_json(self._s3, *categories_uri)["labels"]]

        try:
            batch = self._collect_answers(arn, task, lines, output, stamp)
            request_key = f"{output.key}annotations/consolidation-request/iteration-1/{stamp}.json"
            put_bytes(self._s3, output.bucket, request_key, json.dumps(batch).encode(), "application/json")
            consolidated = self._functions.invoke(
                task["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"],
                {
                    "version": "2018-10-16",
                    "labelingJobArn": arn,
                    "labelCategories": categories,
                    "labelAttributeName": attribute,
                    "roleArn": request["RoleArn"],
                    "payload": {"s3Uri": f"s3://{output.bucket}/{request_key}"},
                },
            )
        except FunctionError as exc:
            describe.update(LabelingJobStatus="Failed", FailureReason=f"lambda failed: {exc}"[:1024])
            return describe
        put_json(
            self._s3,
            output.bucket,
            f"{output.key}annotations/consolidation-response/iteration-1/{stamp}.json",
            consolidated,
        )
        by_object = {entry["datasetObjectId"]: entry["consolidatedAnnotation"]["content"] for entry in consolidated}
        output_lines = [
            json.dumps(output_line(line, by_object.get(str(index)), name, attribute))
            for index, line in enumerate(lines)
        ]
        output_key = S3Location.parse(labeling_output_manifest_uri(request["OutputConfig"]["S3OutputPath"], name)).key
        put_bytes(self._s3, output.bucket, output_key, ("\n".join(output_lines) + "\n").encode(), "application/jsonl")
        labeled = len(by_object)
        describe.update(
            LabelingJobStatus="Completed",
            LabelCounters={
                "TotalLabeled": labeled,
                "HumanLabeled": labeled,
                "MachineLabeled": 0,
                "FailedNonRetryableError": len(lines) - labeled,
                "Unlabeled": 0,
            },
            LabelingJobOutput={"OutputDatasetS3Uri": f"s3://{output.bucket}/{output_key}"},
        )
        return describe

    def _collect_answers(
        self, arn: str, task: dict[str, Any], lines: list[dict[str, Any]], output: S3Location, stamp: str
    ) -> list[dict[str, Any]]:
        """Pre-annotation Lambda per line, then the workers; worker responses are saved like Ground Truth's."""
        workers = int(task.get("NumberOfHumanWorkersPerDataObject", 1))
        batch = []
        for index, line in enumerate(lines):
            pre = self._functions.invoke(
                task["PreHumanTaskLambdaArn"], {"version": "2018-10-16", "labelingJobArn": arn, "dataObject": line}
            )
            answers = self._workers.answer(pre["taskInput"], workers)
            responses = {
                "answers": [
                    {
                        "answerContent": answer_content(label),
                        "workerId": worker,
                        "workerMetadata": {"identityData": {"identityProviderType": "Local", "sub": worker}},
                    }
                    for worker, label in answers
                ]
            }
            put_json(
                self._s3,
                output.bucket,
                f"{output.key}annotations/worker-response/iteration-1/{index}/{stamp}.json",
                responses,
            )
            batch.append(consolidation_item(str(index), line, answers))
        return batch
