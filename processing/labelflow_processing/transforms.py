"""The feature transforms: statistics that merge across batches, a fit that turns them into a state, a pure apply.

A numeric feature imputes (mean, median, most_frequent, constant), then scales (standard: population std of
the imputed column; minmax); a categorical one imputes (most_frequent, constant), then encodes (onehot,
ordinal) against the spec's fixed categories, a value outside them going nowhere (`unknown: ignore`: one-hot
all 0, ordinal -1) or to its own bucket (`unknown: other`: `<name>__other`, ordinal len(categories)). Ties of
most_frequent go to the smallest value, so no choice depends on row order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelflow_processing.config import FatalInputError, FeatureSpec
from labelflow_processing.selection import Observed

# Categorical counts kept in the state for a feature without a category list: the most frequent values.
TOP_COUNTS = 100
# Beyond 2**52 / 10**6 every double is already a multiple of 10**-6 at most one ulp away: no rounding needed.
ROUNDING_LIMIT = 2.0**52 / 1e6
_COMPACT_EVERY = 32


def _scale_of(*magnitudes: float) -> float:
    """A power of two at least half the largest magnitude (1 for all zeros): dividing by it is exact."""
    largest = max(magnitudes)
    return math.ldexp(1.0, math.frexp(largest)[1] - 1) if largest > 0 else 1.0


@dataclass(frozen=True)
class Moments:
    """Count, mean, population std, min and max of finite values, mergeable in any grouping (Chan et al.).

    Means and deviations are computed on values divided by a power of two near their magnitude, so huge finite
    values (1e300) never overflow a sum of squares; the std is kept rather than the variance for that reason.
    """

    count: int = 0
    mean: float = 0.0
    std: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        if not len(values):
            return cls()
        low, high = float(values.min()), float(values.max())
        scale = _scale_of(abs(low), abs(high))
        scaled = values / scale
        mean = float(scaled.mean())
        std = math.sqrt(float(np.square(scaled - mean).mean()))
        return cls(len(values), mean * scale, std * scale, low, high)

    @classmethod
    def constant(cls, count: int, value: float) -> Moments:
        return cls(count, value, 0.0, value, value) if count else cls()

    def merge(self, other: Moments) -> Moments:
        if not other.count:
            return self
        if not self.count:
            return other
        scale = _scale_of(abs(self.mean), abs(other.mean), self.std, other.std)
        n_a, n_b = self.count, other.count
        total = n_a + n_b
        mean_a, mean_b = self.mean / scale, other.mean / scale
        delta = mean_b - mean_a
        m2 = n_a * (self.std / scale) ** 2 + n_b * (other.std / scale) ** 2 + delta * delta * (n_a * n_b / total)
        return Moments(
            total,
            (mean_a + delta * (n_b / total)) * scale,
            math.sqrt(m2 / total) * scale,
            min(self.min, other.min),
            max(self.max, other.max),
        )

    def to_json(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
        return {"count": self.count, "mean": self.mean, "std": self.std, "min": self.min, "max": self.max}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Moments:
        if not raw["count"]:
            return cls()
        return cls(int(raw["count"]), float(raw["mean"]), float(raw["std"]), float(raw["min"]), float(raw["max"]))


class ValueCounts:
    """How often each value occurs, kept as Arrow tables that are merged and compacted as they grow."""

    def __init__(self, values: pa.Array | None = None) -> None:
        self._parts: list[pa.Table] = []
        if values is not None:
            counted = pc.value_counts(values.drop_null())
            if len(counted):
                self._parts.append(pa.Table.from_arrays(counted.flatten(), names=["value", "count"]))

    @classmethod
    def from_table(cls, table: pa.Table) -> ValueCounts:
        """Counts already aggregated elsewhere (a Spark job): a (value, count) table, one row per value."""
        counts = cls()
        counts._parts.append(table.select(["value", "count"]))
        return counts

    def merge(self, other: ValueCounts) -> None:
        self._parts += other._parts
        if len(self._parts) >= _COMPACT_EVERY:
            self._parts = [self.table()]

    def table(self) -> pa.Table:
        """(value, count) rows, most frequent first, ties by value."""
        if not self._parts:
            return pa.table({"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        merged = pa.concat_tables(self._parts).group_by("value").aggregate([("count", "sum")])
        merged = merged.rename_columns(["value", "count"])
        return merged.take(pc.sort_indices(merged, [("count", "descending"), ("value", "ascending")]))

    def most_frequent(self) -> Any:
        table = self.table()
        return table.column("value")[0].as_py() if table.num_rows else None


@dataclass
class FeatureStats:
    """What an input says about a feature over its accepted rows, the fit's material and drift's: computed per
    batch (`of`), then merged in batch order."""

    spec: FeatureSpec
    fitting: bool
    missing: int = 0
    moments: Moments = field(default_factory=Moments)
    counts: ValueCounts = field(default_factory=ValueCounts)
    observed: Observed = field(default_factory=Observed)

    @classmethod
    def of(cls, spec: FeatureSpec, fitting: bool, column: np.ndarray | pa.Array) -> FeatureStats:
        """A batch's: float64 with NaN for missing (numeric), text with null for missing (categorical)."""
        if isinstance(column, pa.Array):
            return cls(spec, fitting, column.null_count, counts=ValueCounts(column))
        present = column[~np.isnan(column)]
        stats = cls(spec, fitting, len(column) - len(present), Moments.of(present))
        if fitting and spec.impute == "median":
            stats.observed = Observed.of(present)
        elif fitting and spec.impute == "most_frequent":
            stats.counts = ValueCounts(pa.array(present))
        return stats

    def merge(self, other: FeatureStats) -> None:
        self.missing += other.missing
        self.moments = self.moments.merge(other.moments)
        self.counts.merge(other.counts)
        self.observed.merge(other.observed)


def fit(spec: FeatureSpec, stats: FeatureStats) -> dict[str, Any]:
    """A feature's state from the statistics of its accepted rows."""
    return _fit_numeric(spec, stats) if spec.numeric else _fit_categorical(spec, stats)


def _constant(spec: FeatureSpec) -> Any:
    fill = spec.fill_value
    if spec.numeric:
        try:
            return float(str(fill))
        except ValueError as exc:
            raise FatalInputError(f"fill_value for {spec.name} is not a number: {fill!r}") from exc
    return str(int(fill)) if isinstance(fill, float) and fill.is_integer() else str(fill)


def _fit_numeric(spec: FeatureSpec, stats: FeatureStats) -> dict[str, Any]:
    impute: float | None = None
    if spec.impute == "constant":
        impute = _constant(spec)
    elif spec.impute == "mean" and stats.moments.count:
        impute = stats.moments.mean
    elif spec.impute == "median":
        impute = stats.observed.median()
    elif spec.impute == "most_frequent":
        impute = stats.counts.most_frequent()
    if stats.missing and impute is None:
        raise _cannot_impute(spec)
    # The scaler is fitted on the imputed column, as an imputer followed by a scaler would be.
    imputed = stats.moments.merge(Moments.constant(stats.missing, impute or 0.0))
    scaler = None
    if spec.scaling and imputed.count:
        std = 0.0 if imputed.min == imputed.max else imputed.std
        scaler = {"mean": imputed.mean, "std": std, "min": imputed.min, "max": imputed.max}
    return {
        "transform": spec.transform(),
        "fit": {**stats.moments.to_json(), "missing": stats.missing},
        "impute_value": impute,
        "scaler": scaler,
    }


def _fit_categorical(spec: FeatureSpec, stats: FeatureStats) -> dict[str, Any]:
    impute: str | None = None
    if spec.impute == "constant":
        impute = _constant(spec)
    elif spec.impute == "most_frequent":
        impute = stats.counts.most_frequent()
    if stats.missing and impute is None:
        raise _cannot_impute(spec)
    table = stats.counts.table()
    seen = dict(zip(table.column("value").to_pylist(), table.column("count").to_pylist(), strict=True))
    count = sum(seen.values())
    fitted: dict[str, Any] = {"count": count, "missing": stats.missing}
    if spec.categories:
        fitted["counts"] = {category: seen.get(category, 0) for category in spec.categories}
        fitted["unknown"] = count - sum(fitted["counts"].values())
    else:
        fitted["counts"] = dict(list(seen.items())[:TOP_COUNTS])
        fitted["distinct"] = len(seen)
    return {"transform": spec.transform(), "fit": fitted, "impute_value": impute}


def _cannot_impute(spec: FeatureSpec) -> FatalInputError:
    return FatalInputError(f"cannot impute {spec.name}: the accepted rows have no value for it")


# --- apply ------------------------------------------------------------------------------------------------


def apply_numeric(spec: FeatureSpec, state: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """Imputed, scaled and rounded to 6 places (-0.0 becomes 0.0); NaN where a result is out of float range."""
    missing = np.isnan(values)
    if missing.any():
        if state["impute_value"] is None:
            raise _cannot_impute(spec)
        values = np.where(missing, float(state["impute_value"]), values)
    scaler = state["scaler"]
    if scaler is not None and spec.scaling == "standard":
        values = _shift_and_scale(values, scaler["mean"], scaler["std"])
    elif scaler is not None and spec.scaling == "minmax":
        values = _shift_and_scale(values, scaler["min"], scaler["max"] * 0.5 - scaler["min"] * 0.5, halved=True)
    small = np.abs(values) < ROUNDING_LIMIT
    with np.errstate(over="ignore"):  # the rounding of large values overflows, and is not used
        rounded = np.where(small, np.round(values, 6), values) + 0.0
    return np.where(np.isfinite(rounded), rounded, np.nan)


def _shift_and_scale(values: np.ndarray, offset: float, spread: float, halved: bool = False) -> np.ndarray:
    """(x - offset) / spread, 0 when spread is 0, on halves so that the difference cannot overflow."""
    half_spread = spread if halved else spread * 0.5
    if half_spread == 0:
        return np.zeros_like(values)
    with np.errstate(over="ignore"):
        scaled: np.ndarray = (values * 0.5 - offset * 0.5) / half_spread
    return scaled


def output_names(spec: FeatureSpec) -> list[str]:
    """The output feature columns of a feature, as labelflow.models.spec.output_features names them."""
    if spec.encoding == "onehot":
        return [f"{spec.name}__{category}" for category in _buckets(spec)]
    return [spec.name]


def _buckets(spec: FeatureSpec) -> list[str]:
    return [*spec.categories, *(["other"] if spec.unknown == "other" else [])]


def encode(spec: FeatureSpec, state: dict[str, Any], values: pa.Array) -> np.ndarray | pa.Array:
    """Imputed text, or for an encoded feature its bucket: the category's index, -1 unknown, len(categories) other."""
    if values.null_count:
        if state["impute_value"] is None:
            raise _cannot_impute(spec)
        values = values.fill_null(state["impute_value"])
    if spec.encoding is None:
        return values
    index = pc.index_in(values, value_set=pa.array(spec.categories, pa.string()))
    unknown = -1 if spec.unknown == "ignore" else len(spec.categories)
    codes: np.ndarray = index.fill_null(unknown).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes


def encoded_outputs(spec: FeatureSpec) -> list[dict[str, int]]:
    """For each bucket (-1 first, then 0..), the output columns and their values."""
    buckets = range(-1, len(_buckets(spec)))
    if spec.encoding == "onehot":
        names = output_names(spec)
        return [{name: int(index == bucket) for index, name in enumerate(names)} for bucket in buckets]
    return [{spec.name: bucket} for bucket in buckets]
