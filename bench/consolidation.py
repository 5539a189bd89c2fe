"""Benchmark consolidation against majority vote and crowd-kit's Dawid-Skene, OneCoin, GLAD and MACE.

Batches of several sizes (by default 200 to 10,000 objects: a labeling job holds at most
`labeling.objects_per_job`, 1000 by default, so mid-size batches are the common case) with three labels, answered
by a pool of 40 workers: most are decent but
class-dependent (they drift toward the common label), a fifth are spammers (one answer regardless of the object,
or uniform noise), and one is an adversary (answers the next label on purpose). Five settings, as in issue 8:

    balanced-5           every object answered 5 times
    balanced-3+single    3 answers, 20% of objects only 1
    balanced-2+single    2 answers, 20% of objects only 1
    imbalanced-5         label priors 0.70 / 0.25 / 0.05, 5 answers
    imbalanced-3+single  the same priors, 3 answers, 20% of objects only 1

For each setting and size the candidates run in turn (their order rotating) on the same answers of every seed; the
table shows medians over seeds of accuracy, recall and precision of the rarest label (a candidate can buy recall by
calling common objects rare), and seconds (of the call alone), and marks the best accuracy. Ours runs in this venv;
crowd-kit's candidates (majority vote included) run in a venv of their own, built once under ~/.cache/labelflow/,
one child per candidate, setting and size that simulates the same crowds from the same seeds, so numpy and pandas
stay out of the dev venv. Then the post-annotation Lambda runs in-process over moto on the balanced-5 batch of the
largest size: wall time (median of `--repeat`) and peak Python memory (tracemalloc) of the handler call.

    python bench/consolidation.py [--objects 200 400 800 1600 10000] [--seeds 3] [--repeat 5]
        [--skip crowdkit-glad] [--setting balanced-5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvs import cached_venv

CROWDKIT_VERSION = "1.4.2"

LABELS = ["a", "b", "c"]
WORKERS = 40
SETTINGS: dict[str, tuple[list[float], int, float]] = {
    # name: (label priors, answers per object, share of objects with a single answer)
    "balanced-5": ([1 / 3, 1 / 3, 1 / 3], 5, 0.0),
    "balanced-3+single": ([1 / 3, 1 / 3, 1 / 3], 3, 0.2),
    "balanced-2+single": ([1 / 3, 1 / 3, 1 / 3], 2, 0.2),
    "imbalanced-5": ([0.70, 0.25, 0.05], 5, 0.0),
    "imbalanced-3+single": ([0.70, 0.25, 0.05], 3, 0.2),
}
Answers = list[tuple[int, str, str]]  # (object, worker, label)


@dataclass(frozen=True)
class Crowd:
    truth: list[str]
    answers: Answers


def simulate(priors: list[float], per_object: int, single: float, objects: int, seed: int) -> Crowd:
    """Ground truth and answers for one setting; the worker pool is drawn from the same seed."""
    rng = random.Random(seed)
    behaviours = [_worker(rng, index) for index in range(WORKERS)]
    activity = [rng.uniform(0.3, 1.7) for _ in range(WORKERS)]
    truth = rng.choices(LABELS, weights=priors, k=objects)
    answers: Answers = []
    for i, label in enumerate(truth):
        count = 1 if rng.random() < single else per_object
        chosen: set[int] = set()
        while len(chosen) < count:
            chosen.add(rng.choices(range(WORKERS), weights=activity)[0])
        answers.extend((i, f"w{w:02d}", behaviours[w](label)) for w in sorted(chosen))
    return Crowd(truth, answers)


def _worker(rng: random.Random, index: int) -> Callable[[str], str]:
    if index == 0:  # the adversary: the next label, nine times in ten
        return lambda t: LABELS[(LABELS.index(t) + 1) % len(LABELS)] if rng.random() < 0.9 else t
    if index <= 4:  # spammers who always give the same answer
        fixed = LABELS[index % len(LABELS)]
        return lambda t: fixed
    if index <= 8:  # spammers who answer at random
        return lambda t: rng.choice(LABELS)
    # Decent workers, better on the common label, whose mistakes lean toward it.
    skill = [rng.uniform(0.75, 0.95), rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.85)]

    def answer(t: str) -> str:
        k = LABELS.index(t)
        if rng.random() < skill[k]:
            return t
        wrong = [label for label in LABELS if label != t]
        return rng.choices(wrong, weights=[3.0 if label == "a" else 1.0 for label in wrong])[0]

    return answer


# --- candidates ---------------------------------------------------------------------------------------------


def ours(crowd: Crowd) -> dict[int, str]:
    from labelflow.review.consolidation import Vote, consolidate_votes

    by_object: dict[str, list[Vote]] = {}
    for task, worker, label in crowd.answers:
        by_object.setdefault(str(task), []).append(Vote(worker, label))
    return {int(oid): result.label for oid, result in consolidate_votes(by_object, LABELS).items()}


def crowdkit(name: str) -> Callable[[Crowd], dict[int, str]]:
    def run(crowd: Crowd) -> dict[int, str]:
        import pandas as pd
        from crowdkit.aggregation import (  # type: ignore[import-not-found]
            GLAD,
            MACE,
            DawidSkene,
            MajorityVote,
            OneCoinDawidSkene,
        )

        models: dict[str, Any] = {
            "majority": MajorityVote(),
            "crowdkit-ds": DawidSkene(n_iter=100),
            "crowdkit-onecoin": OneCoinDawidSkene(n_iter=100),
            "crowdkit-glad": GLAD(n_iter=100, silent=True),
            "crowdkit-mace": MACE(random_state=0),
        }
        frame = pd.DataFrame(crowd.answers, columns=["task", "worker", "label"])
        return {int(task): str(label) for task, label in models[name].fit_predict(frame).items()}

    return run


CROWDKIT = ["majority", "crowdkit-ds", "crowdkit-onecoin", "crowdkit-glad", "crowdkit-mace"]
CANDIDATES: dict[str, Callable[[Crowd], dict[int, str]]] = {"ours": ours, **{name: crowdkit(name) for name in CROWDKIT}}


def crowdkit_python() -> str:
    """A venv with this Python and crowd-kit (numpy, pandas, scikit-learn)."""
    return cached_venv("crowd-kit", CROWDKIT_VERSION, sys.executable)


def timed(name: str, crowd: Crowd) -> tuple[dict[int, str], float]:
    """One candidate's labels on this crowd, and the seconds its call took."""
    start = time.perf_counter()
    predicted = CANDIDATES[name](crowd)
    return predicted, time.perf_counter() - start


def run_candidate(name: str, setting: str, seeds: int, objects: int, python: str) -> list[tuple[dict[int, str], float]]:
    """Ours in this process; crowd-kit's in its venv, on the crowds it simulates from the same seeds."""
    if name == "ours":
        return [timed(name, simulate(*SETTINGS[setting], objects, seed)) for seed in range(seeds)]
    args = ["--candidate", name, "--setting", setting, "--seeds", str(seeds), "--objects", str(objects)]
    child = subprocess.run([python, __file__, *args], check=True, capture_output=True, text=True)
    return [
        ({int(task): label for task, label in run["predicted"].items()}, run["seconds"])
        for run in json.loads(child.stdout)
    ]


def score(crowd: Crowd, predicted: dict[int, str], minority: str) -> tuple[float, float, float]:
    """Accuracy, and the rare label's recall and precision."""
    right = sum(predicted.get(i) == t for i, t in enumerate(crowd.truth))
    rare = [i for i, t in enumerate(crowd.truth) if t == minority]
    called = [i for i, label in predicted.items() if label == minority]
    found = sum(crowd.truth[i] == minority for i in called)
    return right / len(crowd.truth), found / max(1, len(rare)), found / max(1, len(called))


def measure(setting: str, objects: int, seeds: int, names: list[str], python: str) -> dict[str, list[float]]:
    """Per candidate, the medians over seeds of accuracy, rare-label recall and precision, and seconds."""
    priors = SETTINGS[setting][0]
    minority = LABELS[priors.index(min(priors))]
    crowds = [simulate(*SETTINGS[setting], objects, seed) for seed in range(seeds)]
    shift = objects % len(names)
    rows = {}
    for name in names[shift:] + names[:shift]:
        runs = run_candidate(name, setting, seeds, objects, python)
        scores = [
            (*score(crowd, labels, minority), seconds) for crowd, (labels, seconds) in zip(crowds, runs, strict=True)
        ]
        rows[name] = [statistics.median(column) for column in zip(*scores, strict=True)]
    return rows


# --- the Lambda ---------------------------------------------------------------------------------------------


def lambda_run(crowd: Crowd, repeat: int) -> tuple[float, float]:
    """Median seconds and peak MiB (tracemalloc) of the post-annotation handler on this batch, over moto."""
    import boto3
    from moto import mock_aws

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `functions`
    from functions.gt_post_annotation import app
    from labelflow import aws
    from labelflow_local.functions import LocalContext

    request: dict[int, dict[str, Any]] = {}
    for task, worker, label in crowd.answers:
        entry = request.setdefault(task, {"datasetObjectId": str(task), "dataObject": {"content": "text"}})
        content = json.dumps({"category": {"label": label}})
        entry.setdefault("annotations", []).append({"workerId": worker, "annotationData": {"content": content}})
    event = {
        "version": "2018-10-16",
        "labelingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/bench",
        "labelCategories": LABELS,
        "labelAttributeName": "label",
        "payload": {"s3Uri": "s3://bench/request.json"},
    }
    with mock_aws():
        aws.reset_clients()
        boto3.client("s3").create_bucket(Bucket="bench")
        boto3.client("s3").put_object(Bucket="bench", Key="request.json", Body=json.dumps(list(request.values())))
        context = LocalContext("GtPostAnnotationFunction", "arn:aws:lambda:us-east-1:123456789012:function:bench")
        app.lambda_handler(event, context)
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            app.lambda_handler(event, context)
            seconds.append(time.perf_counter() - start)
        tracemalloc.start()
        app.lambda_handler(event, context)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return statistics.median(seconds), peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, nargs="+", default=[200, 400, 800, 1600, 10_000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip", action="append", default=[], help="candidate to leave out (repeatable)")
    parser.add_argument("--setting", action="append", choices=list(SETTINGS), help="only this setting (repeatable)")
    parser.add_argument("--candidate", help=argparse.SUPPRESS)  # a child: run one candidate, print JSON
    args = parser.parse_args()
    if args.candidate:
        # Imported before the clock starts, as in a warm process.
        import crowdkit.aggregation  # type: ignore[import-not-found]  # noqa: F401

        runs = [
            timed(args.candidate, simulate(*SETTINGS[args.setting[0]], args.objects[0], seed))
            for seed in range(args.seeds)
        ]
        print(json.dumps([{"predicted": predicted, "seconds": seconds} for predicted, seconds in runs]))
        return
    names = [name for name in CANDIDATES if name not in args.skip]
    python = crowdkit_python() if set(names) & set(CROWDKIT) else sys.executable
    print(f"{len(LABELS)} labels, {WORKERS} workers, medians over {args.seeds} seeds; * marks the best accuracy")
    header = f"{'accuracy':>10}{'rare recall':>13}{'precision':>11}{'seconds':>10}"
    print(f"{'setting':22}{'objects':>8}  {'candidate':18}{header}")
    for setting in args.setting or SETTINGS:
        for objects in args.objects:
            rows = measure(setting, objects, args.seeds, names, python)
            best = max(row[0] for row in rows.values())
            for name in names:
                accuracy, recall, precision, seconds = rows[name]
                mark = "*" if accuracy == best else " "
                scores = f"{accuracy:10.4f}{mark}{recall:12.4f}{precision:11.4f}{seconds:10.3f}"
                print(f"{setting:22}{objects:8}  {name:18}{scores}")
    largest = max(args.objects)
    seconds, peak = lambda_run(simulate(*SETTINGS["balanced-5"], largest, 0), args.repeat)
    print(f"post-annotation Lambda, balanced-5 batch of {largest}: {seconds:.3f} s, peak {peak:.1f} MiB (tracemalloc)")


if __name__ == "__main__":
    main()
