"""Local human review: a Ground Truth stand-in that drives the real pre/post Lambdas with local workers.

Worker answers come from a backend: simulated workers who know the labels (`--truth`), an answers file, or a
person at the terminal; with none of them nobody reviews, and reviewed records stay unlabeled.
Everything is written where and how Ground Truth writes it, so merge reads the same files; the job's
reviewers are described in `reviewers.json` beside its output, for run.json.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import queue
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from labelflow.layout import labeling_output_manifest_uri
from labelflow.models.reviewers import ReviewerLineage, reviewers_uri
from labelflow.review.manifests import answer_content, consolidation_item, output_line
from labelflow.s3 import S3Location, exists, get_json, iter_jsonl, put_bytes, put_json
from labelflow_local import store
from labelflow_local.functions import FunctionError, FunctionRegistry

T = TypeVar("T")


class WorkerAnswers(Protocol):
    """A review backend: answers for each task, as (worker id, label) per worker, and who they were."""

    def begin(self, total: int) -> None:
        """A job with `total` tasks starts."""

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]: ...

    def lineage(self) -> ReviewerLineage: ...


class NoReviewers:
    """Nobody to review: every task goes unanswered, so reviewed records end unlabeled and the run says so."""

    def begin(self, total: int) -> None:
        """Nothing to prepare."""

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        return []

    def lineage(self) -> ReviewerLineage:
        return ReviewerLineage(backend="none", workers_per_record=0)


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
        self._asked: int | None = None
        size = max(pool, workers_per_task or 0)
        self._pool = [f"local.simulated.worker-{number}" for number in range(1, size + 1)]

    def begin(self, total: int) -> None:
        """Nothing to prepare."""

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        """`workers` is the job's NumberOfHumanWorkersPerDataObject, unless this crowd was told otherwise."""
        record_id = str(task_input["record_id"])
        labels: list[str] = list(task_input["labels"])
        rng = random.Random(f"{self._seed}:{record_id}")
        self._asked = min(self._per_task or workers, len(self._pool))
        chosen = rng.sample(self._pool, self._asked)
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

    def lineage(self) -> ReviewerLineage:
        return ReviewerLineage(
            backend="simulated",
            workers_per_record=self._asked or self._per_task,
            seed=self._seed,
            simulated_accuracy=self._accuracy,
        )


class JobEnded(Exception):
    """A backend ends the labeling job early: DescribeLabelingJob then says `status` and `reason`."""

    def __init__(self, status: Literal["Failed", "Stopped"], reason: str | None) -> None:
        super().__init__(reason or status)
        self.status = status
        self.reason = reason


class EndsAfter:
    """Another backend's answers for the first `tasks` tasks of each job, then the job ends Failed or Stopped (for
    tests). Counted per thread: a job runs on one, and the jobs of a split review may run at once."""

    def __init__(
        self,
        workers: WorkerAnswers,
        tasks: int,
        status: Literal["Failed", "Stopped"] = "Failed",
        reason: str | None = "the work team's workers left",
    ) -> None:
        self._workers = workers
        self._tasks = tasks
        self._ending = (status, reason)
        self._job = threading.local()

    def begin(self, total: int) -> None:
        self._job.given = 0
        self._workers.begin(total)

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        if self._job.given >= self._tasks:
            raise JobEnded(*self._ending)
        self._job.given += 1
        return self._workers.answer(task_input, workers)

    def lineage(self) -> ReviewerLineage:
        return self._workers.lineage()


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


def refuse_unknown_labels(path: Path, given: Mapping[str, str], labels: Sequence[str]) -> None:
    """ValueError naming the first records whose label is not one of `labels` (the spec's)."""
    strays = [f"{record_id} ({label!r})" for record_id, label in given.items() if label not in labels]
    if strays:
        more = f" and {len(strays) - 3} more" if len(strays) > 3 else ""
        raise ValueError(
            f"{path}: labels not in the spec ({', '.join(labels)}) for records {', '.join(strays[:3])}{more}"
        )


class AnswersFile:
    """Answers from a labels file (see read_labels): one file is one reviewer.

    With the spec's labels, a file giving any other label is refused at once. Records the file does not cover
    get no answer, as tasks that expire do.
    """

    WORKER = "local.answers-file"

    def __init__(self, path: Path, labels: Sequence[str] | None = None) -> None:
        self._labels = read_labels(path)
        if labels is not None:
            refuse_unknown_labels(path, self._labels, labels)

    def begin(self, total: int) -> None:
        """Nothing to prepare."""

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        label = self._labels.get(str(task_input["record_id"]))
        if label is None or label not in task_input["labels"]:
            return []
        return [(self.WORKER, label)]

    def lineage(self) -> ReviewerLineage:
        return ReviewerLineage(backend="answers-file", workers_per_record=1)


def task_fingerprint(task_input: dict[str, Any]) -> str:
    """What the reviewer was shown (not the model's suggestion): an answer is reused only for the same record."""
    shown = {key: task_input.get(key) for key in ("record_id", "text", "rows", "image")}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


class SavedAnswers:
    """A person's answers as JSON Lines, appended as each is given, so quitting or a crash loses none."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._labels: dict[str, str] = {}
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        # After a crash mid-line, the next answer starts on a line of its own.
        self._torn = bool(text) and not text.endswith("\n")
        if text:
            for line in text.splitlines():
                try:
                    saved = json.loads(line)
                    self._labels[saved["fingerprint"]] = str(saved["label"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash: that one answer is asked again

    def __len__(self) -> int:
        return len(self._labels)

    def get(self, fingerprint: str) -> str | None:
        return self._labels.get(fingerprint)

    def add(self, record_id: str, fingerprint: str, label: str) -> None:
        self._labels[fingerprint] = label
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"record_id": record_id, "fingerprint": fingerprint, "label": label})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(("\n" if self._torn else "") + line + "\n")
        self._torn = False


QUIT = frozenset({"q", "quit"})


class TerminalReviewer:
    """A person at the terminal labels each record, with progress; enter skips, q (or Ctrl-C, Ctrl-D) stops.

    With `saved`, every answer is kept in that file as it is given, and a later run over the same records
    reuses them instead of asking again. Once stopped, the remaining records stay unlabeled.
    """

    WORKER = "local.terminal"

    def __init__(
        self, ask: Callable[[str], str] = input, say: Callable[[str], None] = print, saved: Path | None = None
    ) -> None:
        self._ask = ask
        self._say = say
        self._saved = SavedAnswers(saved) if saved is not None else None
        self._stopped = False
        self._position = 0
        self._total = 0
        self._answered = 0

    def begin(self, total: int) -> None:
        self._position, self._total, self._answered = 0, total, 0
        kept = f"; {len(self._saved)} earlier answers in {self._saved.path}" if self._saved is not None else ""
        self._say(f"{total} records to review (enter skips one, q stops and keeps your answers{kept})")

    def answer(self, task_input: dict[str, Any], workers: int) -> list[tuple[str, str]]:
        self._position += 1
        labels: list[str] = list(task_input["labels"])
        fingerprint = task_fingerprint(task_input)
        earlier = self._saved.get(fingerprint) if self._saved is not None else None
        if earlier in labels:
            self._answered += 1
            return [(self.WORKER, str(earlier))]
        if self._stopped:
            return []
        self._show(task_input)
        label = self._ask_label(labels)
        if label is None:
            return []
        self._answered += 1
        if self._saved is not None:
            self._saved.add(str(task_input["record_id"]), fingerprint, label)
        return [(self.WORKER, label)]

    def lineage(self) -> ReviewerLineage:
        return ReviewerLineage(backend="terminal", workers_per_record=1)

    def _show(self, task_input: dict[str, Any]) -> None:
        self._say(f"\n[{self._position} of {self._total}, {self._answered} answered] {task_input['record_id']}")
        rows = task_input.get("rows") or [{"column": "record", "value": task_input["text"]}]
        if image := task_input.get("image"):
            rows = [{"column": "image", "value": image}]
        width = max(len(str(row["column"])) for row in rows)
        for row in rows:
            self._say(f"  {str(row['column']):<{width}}  {row['value']}")
        if suggestion := task_input.get("suggestion"):
            self._say(f"  (the model suggests {suggestion['label']}, {suggestion['confidence']} sure)")

    def _ask_label(self, labels: list[str]) -> str | None:
        """The label picked (by number or name); None for a skip or a stop. Anything else is asked again."""
        choices = "  ".join(f"{number}) {label}" for number, label in enumerate(labels, start=1))
        while True:
            try:
                reply = self._ask(f"{choices}  (enter skips, q stops) > ").strip()
            except EOFError:
                self._stop("end of input")
                return None
            except KeyboardInterrupt:
                self._stop("interrupted")
                return None
            if reply in labels:
                return reply
            if reply.isdigit() and 1 <= int(reply) <= len(labels):
                return labels[int(reply) - 1]
            if not reply:
                return None
            if reply.lower() in QUIT:
                self._stop("stopped")
                return None
            self._say(f"{reply!r} is not a label: pick 1-{len(labels)}, type a label, enter to skip or q to stop")

    def _stop(self, why: str) -> None:
        self._stopped = True
        kept = (
            f", all kept in {self._saved.path}: run the same command again to go on" if self._saved is not None else ""
        )
        self._say(f"\n{why}: {self._answered} of {self._total} answered{kept}; the rest stay unlabeled")


class MainThreadPrompt:
    """Asks on the main thread for a reviewer on another (the state machine's worker): only it gets Ctrl-C."""

    def __init__(self, read: Callable[[str], str] = input) -> None:
        self._read = read
        self._questions: queue.Queue[str] = queue.Queue()
        self._replies: queue.Queue[str | BaseException] = queue.Queue()

    def ask(self, prompt: str) -> str:
        """Called by the reviewer: blocks until the main thread has the reply, and re-raises Ctrl-C or Ctrl-D."""
        self._questions.put(prompt)
        reply = self._replies.get()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def run(self, work: Callable[[], T]) -> T:
        """`work` on a worker thread while this thread answers its questions; its result or its error."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                outcome.append(work())
            except BaseException as exc:  # handed to the main thread, which raises it
                failure.append(exc)

        worker = threading.Thread(target=target, name="labelflow-run", daemon=True)
        worker.start()
        while worker.is_alive():
            try:
                prompt = self._questions.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                self._replies.put(self._read(prompt))
            except (EOFError, KeyboardInterrupt) as exc:
                self._replies.put(exc)
        if failure:
            raise failure[0]
        return outcome[0]


class LocalGroundTruth:
    """Runs CreateLabelingJob requests to completion and answers with DescribeLabelingJob's shape."""

    def __init__(self, s3: Any, functions: FunctionRegistry, workers: WorkerAnswers, region: str, account: str) -> None:
        self._s3 = s3
        self._functions = functions
        self._workers = workers
        self._region = region
        self._account = account
        # The jobs of a split review run at once in the Map; one local crowd (a person at the terminal) takes them
        # one at a time.
        self._one_job = threading.Lock()

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run the job to its end; its DescribeLabelingJob response."""
        with self._one_job:
            return self._run(request)

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["LabelingJobName"]
        arn = f"arn:aws:sagemaker:{self._region}:{self._account}:labeling-job/{name.lower()}"
        attribute = request["LabelAttributeName"]
        task = request["HumanTaskConfig"]
        created = datetime.now(UTC)
        stamp = created.strftime("%Y-%m-%d_%H-%M-%S")
        output_path = request["OutputConfig"]["S3OutputPath"]
        output = S3Location.parse(output_path.rstrip("/") + f"/{name}/")
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

        # Ground Truth's own files: straight into moto's store when this process holds the bucket (see store.py).
        writer: Any = store.direct_store(output.bucket, self._region, self._account) or self._s3
        try:
            batch, answered_by, ended = self._collect_answers(arn, task, lines, output, stamp, writer)
            self._record_reviewers(output_path, name, answered_by, writer)
            by_object = self._consolidate(request, arn, categories, output, stamp, batch, writer) if batch else {}
        except FunctionError as exc:
            describe.update(LabelingJobStatus="Failed", FailureReason=f"lambda failed: {exc}"[:1024])
            return describe
        if batch:
            # Ground Truth writes the output manifest as tasks are done: a job that ended early has lines only for
            # the objects it reached (SageMaker developer guide, "Labeling job output data").
            output_lines = [
                json.dumps(output_line(line, by_object.get(str(index)), name, attribute))
                for index, line in enumerate(lines[: len(batch)])
            ]
            output_key = S3Location.parse(labeling_output_manifest_uri(output_path, name)).key
            body = ("\n".join(output_lines) + "\n").encode()
            put_bytes(writer, output.bucket, output_key, body, "application/jsonl")
            describe["LabelingJobOutput"] = {"OutputDatasetS3Uri": f"s3://{output.bucket}/{output_key}"}
        labeled = len(by_object)
        describe.update(
            LabelingJobStatus=ended.status if ended else "Completed",
            LabelCounters={
                "TotalLabeled": labeled,
                "HumanLabeled": labeled,
                "MachineLabeled": 0,
                "FailedNonRetryableError": len(batch) - labeled,
                "Unlabeled": len(lines) - len(batch),
            },
        )
        if ended is not None and ended.reason:
            describe["FailureReason"] = ended.reason
        return describe

    def _consolidate(
        self,
        request: dict[str, Any],
        arn: str,
        categories: list[str],
        output: S3Location,
        stamp: str,
        batch: list[dict[str, Any]],
        writer: Any,
    ) -> dict[str, Any]:
        """The post-annotation Lambda over the batch, its request and response saved like Ground Truth's; the
        consolidated content per dataset object id."""
        task = request["HumanTaskConfig"]
        request_key = f"{output.key}annotations/consolidation-request/iteration-1/{stamp}.json"
        put_bytes(writer, output.bucket, request_key, json.dumps(batch).encode(), "application/json")
        consolidated = self._functions.invoke(
            task["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"],
            {
                "version": "2018-10-16",
                "labelingJobArn": arn,
                "labelCategories": categories,
                "labelAttributeName": request["LabelAttributeName"],
                "roleArn": request["RoleArn"],
                "payload": {"s3Uri": f"s3://{output.bucket}/{request_key}"},
            },
        )
        response_key = f"{output.key}annotations/consolidation-response/iteration-1/{stamp}.json"
        put_bytes(writer, output.bucket, response_key, json.dumps(consolidated).encode(), "application/json")
        return {entry["datasetObjectId"]: entry["consolidatedAnnotation"]["content"] for entry in consolidated}

    def _record_reviewers(self, output_path: str, job: str, answered_by: set[str], writer: Any) -> None:
        """The backend's lineage, with the workers who answered counted, beside the job's output."""
        lineage = self._workers.lineage().model_copy(update={"workers": len(answered_by)})
        location = S3Location.parse(reviewers_uri(output_path, job))
        put_json(writer, location.bucket, location.key, lineage.model_dump(mode="json"))

    def _shown(self, task_input: dict[str, Any]) -> bool:
        """False for an image task whose object is missing: the worker's page cannot load it, so nobody answers."""
        image = task_input.get("image")
        if not image:
            return True
        location = S3Location.parse(str(image))
        return exists(self._s3, location.bucket, location.key)

    def _collect_answers(
        self,
        arn: str,
        task: dict[str, Any],
        lines: list[dict[str, Any]],
        output: S3Location,
        stamp: str,
        writer: Any,
    ) -> tuple[list[dict[str, Any]], set[str], JobEnded | None]:
        """Pre-annotation Lambda per line, then the workers; worker responses are saved like Ground Truth's.

        Returns the consolidation request's items, the workers who answered, and the backend's early end if it
        ended the job (the items then cover only the lines before it).
        """
        workers = int(task.get("NumberOfHumanWorkersPerDataObject", 1))
        self._workers.begin(len(lines))
        batch: list[dict[str, Any]] = []
        answered_by: set[str] = set()
        for index, line in enumerate(lines):
            pre = self._functions.invoke(
                task["PreHumanTaskLambdaArn"], {"version": "2018-10-16", "labelingJobArn": arn, "dataObject": line}
            )
            shown = pre["taskInput"]
            try:
                answers = self._workers.answer(shown, workers) if self._shown(shown) else []
            except JobEnded as ended:
                return batch, answered_by, ended
            answered_by.update(worker for worker, _ in answers)
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
            response_key = f"{output.key}annotations/worker-response/iteration-1/{index}/{stamp}.json"
            put_bytes(writer, output.bucket, response_key, json.dumps(responses).encode(), "application/json")
            batch.append(consolidation_item(str(index), line, answers))
        return batch, answered_by, None
