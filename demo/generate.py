"""Generate the labelflow demo: product reviews, their dataset spec, a sentiment model and a few bad inputs.

Everything comes from seeded random generators, so the data files are the same on every run. The model is a
scikit-learn pipeline (tf-idf, logistic regression) fitted on a separate sample drawn with another seed, then
measured on the demo rows: most reviews are clear-cut and scored with high confidence, while mixed, negated
and lukewarm ones land below the confidence threshold and go to human reviewers.

Usage: `make demo-data`, i.e. python demo/generate.py [--out DIR] with the processing image's Python and
packages (processing/image.json), so the pickled model loads in the processing step.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_SEED = 20260105
TRAIN_SEED = 7
DEMO_ROWS = 3000
TRAIN_ROWS = 4000
THRESHOLD = 0.8
LABELS = ("negative", "positive")
COLUMNS = (
    "review_id",
    "reviewed_at",
    "product_category",
    "helpful_votes",
    "price",
    "verified_purchase",
    "review_text",
)
# The answers are kept aside, in the answers-file format the local reviewers and checks read.
LABEL_COLUMNS = ("record_id", "label")
START = datetime(2026, 1, 5, tzinfo=UTC)
SPAN_DAYS = 100
TOKEN_PATTERN = re.compile(r"[a-z0-9']+")
ARTICLE_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiou])")

# --- vocabulary -------------------------------------------------------------------------------------------

STRONG_POSITIVE = ("excellent", "fantastic", "amazing", "perfect", "wonderful", "outstanding", "superb", "brilliant")
MILD_POSITIVE = ("good", "nice", "solid", "decent", "pleasant", "handy", "sturdy", "lovely")
STRONG_NEGATIVE = ("terrible", "awful", "horrible", "useless", "appalling", "dreadful", "worthless", "pathetic")
MILD_NEGATIVE = ("disappointing", "flimsy", "mediocre", "cheap", "poor", "overpriced", "annoying", "weak")
LUKEWARM = ("okay", "fine", "average", "ordinary", "acceptable", "standard")

CATEGORIES = {
    # category: (share of reviews, price range, items, aspects)
    "books": (0.3, (6.0, 45.0), ("book", "novel", "cookbook", "paperback", "guide"), ("writing", "plot", "binding")),
    "electronics": (
        0.3,
        (12.0, 320.0),
        ("charger", "speaker", "keyboard", "mouse", "webcam"),
        ("battery", "sound", "build quality", "setup"),
    ),
    "home": (0.2, (9.0, 160.0), ("lamp", "blender", "pillow", "kettle", "vacuum"), ("design", "material", "finish")),
    "toys": (
        0.2,
        (4.0, 90.0),
        ("puzzle", "doll", "kite", "board game", "toy truck"),
        ("paint", "packaging", "plastic"),
    ),
}
PEOPLE = ("son", "daughter", "wife", "husband", "mother", "father", "friend", "niece", "neighbour")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
COLOURS = ("blue", "grey", "white", "green", "brown", "red")
QUOTES = ("handle with care", "new and improved", "made to last", "best seller", "as seen on TV")

POSITIVE_SENTENCES = (
    "This {item} is {strong_pos}.",
    "The {aspect} is {mild_pos} and it feels {mild_pos2}.",
    "Really {strong_pos} {item}, I would buy it again.",
    "My {person} thinks it is {strong_pos}.",
    "{Strong_pos} value for the money.",
    "Works exactly as described, {mild_pos} quality.",
    "Five stars, the {aspect} is {strong_pos}.",
    "I love it and use it every day.",
    "Highly recommend this {item} to anyone.",
    "Very {mild_pos} {item} for the price.",
    "A {mild_pos}, {mild_pos2} {item} that does what it promises.",
)
NEGATIVE_SENTENCES = (
    "This {item} is {strong_neg}.",
    "The {aspect} is {mild_neg} and it feels {mild_neg2}.",
    "Really {strong_neg} {item}, I want my money back.",
    "My {person} thinks it is {strong_neg}.",
    "{Strong_neg} value for the money.",
    "It stopped working after {days} days, {mild_neg} quality.",
    "One star, the {aspect} is {strong_neg}.",
    "I regret buying it and sent it back.",
    "Do not waste your money on this {item}.",
    "Very {mild_neg} {item} for the price.",
    "A {mild_neg}, {mild_neg2} {item} that breaks its promises.",
)
NEUTRAL_SENTENCES = (
    "I bought it for my {person}.",
    "It arrived on {weekday} in a {colour} box.",
    "Shipping took {days} days.",
    'The label says "{quote}".',
    "The package had a receipt, a manual, and a small sticker.",
    "This is my {nth} order from this shop.",
    "The {item} is {colour}.",
)
POSITIVE_CLAUSES = (
    "the {aspect} is {mild_pos}",
    "it looks {mild_pos}",
    "it works well",
    "my {person} likes it",
    "it is {mild_pos} for the price",
)
NEGATIVE_CLAUSES = (
    "the {aspect} is {mild_neg}",
    "it broke after {days} days",
    "it stopped working within a week",
    "the {aspect} feels {mild_neg}",
    "my {person} did not like it",
)
LUKEWARM_SENTENCES = (
    "It is {lukewarm}, nothing special.",
    "A rather {lukewarm} {item}, about what I expected.",
    "Does the job I guess, {lukewarm} overall.",
    "It is {lukewarm} for now, we will see how it holds up.",
    "Neither here nor there, just a {lukewarm} {item}.",
)
NEGATED_SENTENCES = {
    # sentence: the label it really means
    "It is not {strong_pos} at all.": "negative",
    "Not {mild_pos}, to be honest.": "negative",
    "I would not call this {item} {mild_pos}.": "negative",
    "Honestly not {mild_neg}, I expected worse.": "positive",
    "Not as {mild_neg} as the other reviews say.": "positive",
}
# How often each kind of review appears; "clear" reviews are the easy ones.
REVIEW_KINDS = {"clear": 0.8, "mixed": 0.09, "negated": 0.05, "lukewarm": 0.06}


@dataclass(frozen=True)
class Review:
    """A review text and the sentiment it was written with."""

    text: str
    label: str


def _subject(rng: random.Random, category: str) -> dict[str, str]:
    """What one review is about: the same item, aspect and person in all of its sentences."""
    _, _, items, aspects = CATEGORIES[category]
    return {"item": rng.choice(items), "aspect": rng.choice(aspects), "person": rng.choice(PEOPLE)}


def _fill(template: str, rng: random.Random, subject: dict[str, str]) -> str:
    """Fill a template's placeholders: the review's subject, plus freshly drawn words."""
    words = {
        **subject,
        "weekday": rng.choice(WEEKDAYS),
        "colour": rng.choice(COLOURS),
        "quote": rng.choice(QUOTES),
        "days": str(rng.randint(2, 20)),
        "nth": rng.choice(("second", "third", "fifth", "tenth")),
        "strong_pos": rng.choice(STRONG_POSITIVE),
        "strong_neg": rng.choice(STRONG_NEGATIVE),
        "lukewarm": rng.choice(LUKEWARM),
    }
    words["mild_pos"], words["mild_pos2"] = rng.sample(MILD_POSITIVE, 2)
    words["mild_neg"], words["mild_neg2"] = rng.sample(MILD_NEGATIVE, 2)
    words["Strong_pos"] = words["strong_pos"].capitalize()
    words["Strong_neg"] = words["strong_neg"].capitalize()
    return ARTICLE_BEFORE_VOWEL.sub(r"\1n ", template.format(**words))


def _review_sentences(rng: random.Random, subject: dict[str, str]) -> tuple[list[str], str]:
    """The opinion sentences of one review and the label they really express."""
    kind = rng.choices(list(REVIEW_KINDS), weights=list(REVIEW_KINDS.values()))[0]
    if kind == "clear":
        label = "positive" if rng.random() < 0.6 else "negative"
        pool = POSITIVE_SENTENCES if label == "positive" else NEGATIVE_SENTENCES
        return [_fill(template, rng, subject) for template in rng.sample(pool, rng.randint(1, 2))], label
    if kind == "mixed":
        # "good but broke": the clause after "but" carries the verdict.
        label = rng.choice(LABELS)
        first, last = (
            (NEGATIVE_CLAUSES, POSITIVE_CLAUSES) if label == "positive" else (POSITIVE_CLAUSES, NEGATIVE_CLAUSES)
        )
        sentence = f"{_fill(rng.choice(first), rng, subject)}, but {_fill(rng.choice(last), rng, subject)}."
        return [sentence[0].upper() + sentence[1:]], label
    if kind == "negated":
        template, label = rng.choice(list(NEGATED_SENTENCES.items()))
        return [_fill(template, rng, subject)], label
    label = "positive" if rng.random() < 0.5 else "negative"
    return [_fill(rng.choice(LUKEWARM_SENTENCES), rng, subject)], label


def make_review(rng: random.Random, category: str) -> Review:
    """A short review (8 to 30 words) with its true sentiment."""
    while True:
        subject = _subject(rng, category)
        sentences, label = _review_sentences(rng, subject)
        for template in rng.sample(NEUTRAL_SENTENCES, rng.choice((0, 1, 1, 2))):
            sentences.insert(rng.randint(0, len(sentences)), _fill(template, rng, subject))
        text = " ".join(sentences)
        if 8 <= len(text.split()) <= 30:
            return Review(text, label)


def pick_category(rng: random.Random) -> str:
    """A product category, drawn with the category shares."""
    return rng.choices(list(CATEGORIES), weights=[share for share, *_ in CATEGORIES.values()])[0]


# --- the dataset ------------------------------------------------------------------------------------------


def make_rows(rng: random.Random, count: int) -> list[dict[str, str]]:
    """The demo rows, in review_id order with increasing review times."""
    offsets = sorted(rng.randrange(SPAN_DAYS * 86_400) for _ in range(count))
    rows = []
    for number, offset in enumerate(offsets, start=1):
        category = pick_category(rng)
        low, high = CATEGORIES[category][1]
        review = make_review(rng, category)
        # Most reviews get a handful of votes, a few popular ones get many.
        votes = rng.randint(60, 200) if rng.random() < 0.03 else min(200, int(rng.expovariate(1 / 10)))
        rows.append(
            {
                "review_id": f"r{number:05d}",
                "reviewed_at": (START + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "product_category": category,
                "helpful_votes": "" if rng.random() < 0.05 else str(votes),
                "price": "" if rng.random() < 0.05 else f"{rng.uniform(low, high):.2f}",
                "verified_purchase": "yes" if rng.random() < 0.8 else "no",
                "review_text": review.text,
                "true_label": review.label,
            }
        )
    return rows


def to_csv(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> str:
    """CSV text with a header and Unix line ends; cells with commas, quotes or newlines get quoted."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def dataset_spec(model_sha256: str) -> dict[str, object]:
    """The DatasetSpec of the demo (validated by labelflow.models.spec.DatasetSpec)."""
    return {
        "dataset": "reviews",
        "record_id_column": "review_id",
        "event_time_column": "reviewed_at",
        "display_columns": ["review_text", "product_category"],
        "features": [
            {
                "name": "product_category",
                "type": "categorical",
                "impute": "most_frequent",
                "encoding": "onehot",
                "categories": list(CATEGORIES),
            },
            {"name": "helpful_votes", "type": "numeric", "impute": "median", "scaling": "standard"},
            {"name": "price", "type": "numeric", "impute": "mean", "scaling": "minmax"},
            {
                "name": "verified_purchase",
                "type": "categorical",
                "impute": "most_frequent",
                "encoding": "ordinal",
                "categories": ["no", "yes"],
            },
        ],
        "labels": list(LABELS),
        "model": {
            "s3_uri": "s3://labelflow-demo/config/models/sentiment.joblib",
            "text_column": "review_text",
            "classes": list(LABELS),
            "sha256": model_sha256,
        },
        "confidence_threshold": THRESHOLD,
        "labeling": {"task_title": "Is this review positive or negative?", "workers_per_object": 3},
    }


# --- the model --------------------------------------------------------------------------------------------


def train_model(reviews: Sequence[Review], regularisation: float = 3.0) -> Any:
    """A scikit-learn text pipeline (tf-idf of words and word pairs, logistic regression) fit on the reviews.

    Run this script with the processing image's Python and scikit-learn (processing/image.json), so the
    pickled pipeline loads where it runs: `make demo-data`.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(token_pattern=TOKEN_PATTERN.pattern, ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(C=regularisation, max_iter=1000),
    )
    model.fit([review.text for review in reviews], [review.label for review in reviews])
    return model


def predict(model: Any, texts: Sequence[str]) -> list[tuple[str, float]]:
    """The most probable label and its probability, as processing/scoring.py computes them."""
    probabilities = model.predict_proba(list(texts))
    return [(str(model.classes_[row.argmax()]), round(float(row.max()), 6)) for row in probabilities]


@dataclass(frozen=True)
class Evaluation:
    """How the model does on the demo rows, split at the confidence threshold."""

    below_share: float
    accuracy_above: float
    accuracy_below: float
    accuracy: float


def evaluate(model: Any, reviews: Sequence[Review]) -> Evaluation:
    """How many reviews fall below the threshold, and how accurate the model is on each side of it."""
    above: list[bool] = []
    below: list[bool] = []
    for review, (label, confidence) in zip(reviews, predict(model, [r.text for r in reviews]), strict=True):
        (above if confidence >= THRESHOLD else below).append(label == review.label)
    return Evaluation(
        below_share=len(below) / len(reviews),
        accuracy_above=sum(above) / max(len(above), 1),
        accuracy_below=sum(below) / max(len(below), 1),
        accuracy=(sum(above) + sum(below)) / len(reviews),
    )


# --- writing ----------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    """Write UTF-8 text exactly as given (no newline translation), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the labelflow demo files.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="demo folder")
    out: Path = parser.parse_args(argv).out

    rows = make_rows(random.Random(DATA_SEED), DEMO_ROWS)
    training_rng = random.Random(TRAIN_SEED)
    training = [make_review(training_rng, pick_category(training_rng)) for _ in range(TRAIN_ROWS)]
    model = train_model(training)

    write(out / "data" / "reviews.csv", to_csv(rows, COLUMNS))
    labels = [{"record_id": row["review_id"], "label": row["true_label"]} for row in rows]
    write(out / "data" / "reviews.labels.csv", to_csv(labels, LABEL_COLUMNS))
    import joblib

    model_file = out / "model" / "sentiment.joblib"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_file)
    sha256 = hashlib.sha256(model_file.read_bytes()).hexdigest()
    write(out / "datasets" / "reviews.json", json.dumps(dataset_spec(sha256), indent=2) + "\n")
    sample = rows[:5]
    write(out / "data" / "bad" / "missing_column.csv", to_csv(sample, [c for c in COLUMNS if c != "price"]))
    write(out / "data" / "bad" / "empty.csv", "")
    write(out / "data" / "bad" / "header_only.csv", to_csv([], COLUMNS))

    result = evaluate(model, [Review(row["review_text"], row["true_label"]) for row in rows])
    print(f"wrote {len(rows)} reviews and the model to {out}")
    print(f"below the {THRESHOLD} threshold: {result.below_share:.1%} of the rows")
    print(f"accuracy at or above the threshold: {result.accuracy_above:.1%}")
    print(f"accuracy below the threshold: {result.accuracy_below:.1%}")
    print(f"overall accuracy: {result.accuracy:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
