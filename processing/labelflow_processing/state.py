"""The fitted transform state (one versioned JSON artifact) and the drift of an input against it.

    {"format": "labelflow.transform-state", "version": 1, "features": {<name>: <feature state>, ...}}

A numeric feature's state: `transform` (its spec less name and column), `fit` (count, missing, mean,
population std, min and max of the non-missing values it was fitted on: they merge across batches and
shards), `impute_value` (the value used) and `scaler` (mean, std, min, max of the imputed column; null
without scaling). A categorical one's: `transform`, `fit` (count, missing, `counts` per category and
`unknown` when the spec lists categories, else the most frequent values and `distinct`) and `impute_value`.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from labelflow_processing.config import FatalInputError, Spec
from labelflow_processing.transforms import FeatureStats, Moments, fit

STATE_FORMAT = "labelflow.transform-state"
STATE_VERSION = 1
STATE_FILE = "state.json"


def fit_state(spec: Spec, stats: dict[str, FeatureStats]) -> bytes:
    """Fit every feature and return the state file's bytes."""
    features = {feature.name: fit(feature, stats[feature.name]) for feature in spec.features}
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, "features": features}
    return (json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def read_state(state_dir: Path) -> bytes | None:
    """The bytes of `state_dir/state.json`, None when there is none."""
    path = state_dir / STATE_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FatalInputError(f"cannot read the transform state {path}: {exc}") from exc


def parse_state(raw: bytes, spec: Spec) -> dict[str, Any]:
    """The state's features; FatalInputError when it is not a state this code reads or not the spec's."""
    try:
        document = json.loads(raw)
        kind, version, features = document["format"], document["version"], document["features"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FatalInputError(f"the transform state is not a {STATE_FORMAT} file: {exc!r}") from exc
    if kind != STATE_FORMAT or version != STATE_VERSION:
        raise FatalInputError(
            f"the transform state is {kind!r} version {version!r}, not {STATE_FORMAT} {STATE_VERSION}"
        )
    expected = [feature.name for feature in spec.features]
    if list(features) != expected:
        raise FatalInputError(f"the transform state has features {list(features)}, the spec {expected}: refit it")
    for feature in spec.features:
        if features[feature.name].get("transform") != feature.transform():
            raise FatalInputError(f"the transform state's feature {feature.name!r} differs from the spec's: refit it")
    result: dict[str, Any] = features
    return result


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def drift(spec: Spec, states: dict[str, Any], stats: dict[str, FeatureStats]) -> dict[str, Any]:
    """Per feature, how this input's accepted rows compare with the data the state was fitted on."""
    report: dict[str, Any] = {}
    for feature in spec.features:
        current, state = stats[feature.name], states[feature.name]
        if feature.numeric:
            report[feature.name] = _numeric_drift(current, Moments.from_json(state["fit"]))
        else:
            report[feature.name] = _categorical_drift(current, feature.categories)
    return report


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _numeric_drift(current: FeatureStats, fitted: Moments) -> dict[str, Any]:
    moments = current.moments
    shift: float | None = None
    if moments.count and fitted.count:
        shift = 0.0 if fitted.std == 0 else (moments.mean * 0.5 - fitted.mean * 0.5) / (fitted.std * 0.5)
    return {
        "mean": moments.mean if moments.count else None,
        "std": moments.std if moments.count else None,
        "mean_shift": round(shift, 6) if shift is not None and math.isfinite(shift) else None,
        "missing_share": _share(current.missing, moments.count + current.missing),
    }


def _categorical_drift(current: FeatureStats, categories: tuple[str, ...]) -> dict[str, Any]:
    table = current.counts.table()
    present = sum(table.column("count").to_pylist())
    unknown: float | None = None
    if categories:
        known = set(categories)
        outside = sum(
            n
            for value, n in zip(table.column("value").to_pylist(), table.column("count").to_pylist(), strict=True)
            if value not in known
        )
        unknown = _share(outside, present)
    return {"unknown_share": unknown, "missing_share": _share(current.missing, present + current.missing)}
