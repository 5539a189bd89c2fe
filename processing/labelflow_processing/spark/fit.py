"""The kept rows' statistics as Spark aggregations, in a few passes, for transforms.py's fit and the drift.

Pass 1: row count, and per numeric feature count, mean, population std, min, max and, for a median, bounds
around it from percentile_approx. Pass 2 (medians only): the values between the bounds, and how many lie
below, so the exact median is selected on the driver among a few hundred values. Pass 3: every value count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from labelflow_processing.config import FatalInputError, FeatureSpec, Spec
from labelflow_processing.pipeline import feature_field
from labelflow_processing.selection import Observed
from labelflow_processing.transforms import FeatureStats, Moments, ValueCounts

# percentile_approx's accuracy: the rank of the value it returns is within count / accuracy of the rank asked.
ACCURACY = 10_000
# The bounds asked for: two accuracy steps either side of the median, so its ranks lie between them.
BELOW, ABOVE = 0.5 - 2 / ACCURACY, 0.5 + 2 / ACCURACY


class _Median(Observed):
    """An exact median computed by Spark."""

    def __init__(self, value: float | None) -> None:
        super().__init__()
        self._median = value

    def median(self) -> float | None:
        return self._median


def _middle_ranks(count: int) -> list[int]:
    """The ranks (0 is the smallest) whose values make the median, as selection.Observed.median takes them."""
    middle = count // 2
    return [middle] if count % 2 else [middle - 1, middle]


def _sort_key(value: float) -> tuple[float, float]:
    """selection.py's order: -0.0 before 0.0."""
    return value, math.copysign(1.0, value)


def _median_of(values: list[float]) -> float:
    """selection.Observed.median's arithmetic on the middle value(s): halves first, so no sum overflows."""
    return values[0] if len(values) == 1 else values[0] * 0.5 + values[1] * 0.5


def _medians(frame: DataFrame, bounds: dict[str, tuple[int, float, float]]) -> dict[str, float]:
    """Exact medians of the features with (count, low bound, high bound), from the values between the bounds."""
    aggregates: list[Column] = []
    for index, (name, (_, low, high)) in enumerate(bounds.items()):
        value = F.col(f"`{name}`")
        aggregates.append(F.count(F.when(value < low, 1)).alias(f"below{index}"))
        aggregates.append(F.collect_list(F.when((value >= low) & (value <= high), value)).alias(f"held{index}"))
    row = frame.agg(*aggregates).first()
    assert row is not None
    medians: dict[str, float] = {}
    for index, (name, (count, _, _)) in enumerate(bounds.items()):
        below, held = int(row[f"below{index}"]), sorted(row[f"held{index}"], key=_sort_key)
        ranks = [rank - below for rank in _middle_ranks(count)]
        if all(0 <= rank < len(held) for rank in ranks):
            medians[name] = _median_of([held[rank] for rank in ranks])
        else:
            medians[name] = _sorted_median(frame, name, count)
    return medians


def _sorted_median(frame: DataFrame, name: str, count: int) -> float:
    """The exact median by a full sort: for when the approximate bounds missed it."""
    ranks = _middle_ranks(count)
    value = F.col(f"`{name}`")
    rows = frame.select(value).where(value.isNotNull()).orderBy(value).offset(ranks[0]).limit(len(ranks)).collect()
    return _median_of(sorted((row[0] for row in rows), key=_sort_key))


def _counted(spec: Spec, fitting: bool) -> list[FeatureSpec]:
    """The features whose value counts the fit or the drift read: categorical ones, most_frequent numeric ones."""
    return [f for f in spec.features if not f.numeric or (fitting and f.impute == "most_frequent")]


def _value_counts(frame: DataFrame, features: list[FeatureSpec]) -> dict[str, ValueCounts]:
    """Every feature's value counts in one aggregation over (feature, value) pairs."""
    if not features:
        return {}
    pairs = [
        F.struct(
            F.lit(index).alias("k"),
            (F.lit(None) if f.numeric else F.col(f"`{feature_field(f)}`")).cast("string").alias("s"),
            (F.col(f"`{feature_field(f)}`") if f.numeric else F.lit(None)).cast("double").alias("d"),
        )
        for index, f in enumerate(features)
    ]
    pair = F.explode(F.array(*pairs)).alias("p")
    exploded = frame.select(pair).select("p.k", "p.s", "p.d").where(F.col("s").isNotNull() | F.col("d").isNotNull())
    found: defaultdict[int, list[tuple[Any, int]]] = defaultdict(list)
    for row in exploded.groupBy("k", "s", "d").count().collect():
        found[row["k"]].append((row["d"] if features[row["k"]].numeric else row["s"], row["count"]))
    counts = {}
    for index, feature in enumerate(features):
        kind = pa.float64() if feature.numeric else pa.string()
        values, numbers = [v for v, _ in found[index]], [n for _, n in found[index]]
        table = pa.table({"value": pa.array(values, kind), "count": pa.array(numbers, pa.int64())})
        counts[feature.name] = ValueCounts.from_table(table)
    return counts


def feature_stats(frame: DataFrame, spec: Spec, fitting: bool) -> dict[str, FeatureStats]:
    """FeatureStats.of merged over every kept row, from Spark aggregations."""
    numeric = [f for f in spec.features if f.numeric]
    aggregates: list[Column] = [F.count("*").alias("rows")]
    for index, feature in enumerate(numeric):
        value = F.col(f"`{feature_field(feature)}`")
        band = F.percentile_approx(value, [BELOW, ABOVE], ACCURACY) if _median(feature, fitting) else F.lit(None)
        aggregates += [
            F.count(value).alias(f"c{index}"),
            F.avg(value).alias(f"m{index}"),
            F.stddev_pop(value).alias(f"s{index}"),
            F.min(value).alias(f"a{index}"),
            F.max(value).alias(f"b{index}"),
            band.alias(f"p{index}"),
        ]
    totals = frame.agg(*aggregates).first()
    assert totals is not None
    rows = int(totals["rows"])
    stats: dict[str, FeatureStats] = {}
    bounds: dict[str, tuple[int, float, float]] = {}
    for index, feature in enumerate(numeric):
        count = int(totals[f"c{index}"])
        moments = Moments()
        if count:
            moments = Moments(count, totals[f"m{index}"], totals[f"s{index}"], totals[f"a{index}"], totals[f"b{index}"])
            if not all(map(math.isfinite, (moments.mean, moments.std))):
                raise FatalInputError(f"{feature.name}: values too large for the Spark engine's moments")
            if _median(feature, fitting):
                bounds[feature_field(feature)] = (count, *totals[f"p{index}"])
        stats[feature.name] = FeatureStats(feature, fitting, rows - count, moments)
    medians = _medians(frame, bounds) if bounds else {}
    for feature in numeric:
        stats[feature.name].observed = _Median(medians.get(feature_field(feature)))
    for name, counts in _value_counts(frame, _counted(spec, fitting)).items():
        if name in stats:
            stats[name].counts = counts
        else:
            feature = next(f for f in spec.features if f.name == name)
            present = sum(counts.table().column("count").to_pylist())
            stats[name] = FeatureStats(feature, fitting, rows - present, counts=counts)
    return stats


def _median(feature: FeatureSpec, fitting: bool) -> bool:
    return fitting and feature.numeric and feature.impute == "median"
