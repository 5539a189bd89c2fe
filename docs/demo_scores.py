"""The demo model's prediction for every demo review, made by processing's own Scorer (run in the processing env).

    <processing python> docs/demo_scores.py SPEC CSV MODEL_DIR

with processing/ on PYTHONPATH; prints a JSON object: record id -> {"label", "confidence"}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.csv as pa_csv
from scoring import ModelConfig, load_model


def predictions(spec_path: Path, csv_path: Path, model_dir: Path) -> dict[str, dict[str, object]]:
    """Each record's most probable label and its probability, keyed by the spec's record id column."""
    spec = json.loads(spec_path.read_text())
    scorer = load_model(model_dir, ModelConfig.from_json(spec["model"]))
    as_text = {spec["record_id_column"]: "string", **dict.fromkeys(scorer.config.columns, "string")}
    table = pa_csv.read_csv(csv_path, convert_options=pa_csv.ConvertOptions(column_types=as_text))
    labels, confidences = scorer.predict({name: table.column(name).combine_chunks() for name in scorer.config.columns})
    ids = table.column(spec["record_id_column"]).to_pylist()
    return {
        str(record_id): {"label": str(label), "confidence": float(confidence)}
        for record_id, label, confidence in zip(ids, labels, confidences, strict=True)
    }


if __name__ == "__main__":
    spec_arg, csv_arg, model_arg = sys.argv[1:4]
    json.dump(predictions(Path(spec_arg), Path(csv_arg), Path(model_arg)), sys.stdout)
