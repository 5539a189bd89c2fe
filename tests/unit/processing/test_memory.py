"""What the job holds for a whole input stays small: exact medians from spilled values, hashed record ids."""

from __future__ import annotations

import json

from tests.unit.processing.conftest import in_image

MEDIANS = """
import json, sys, tempfile
import numpy as np
from labelflow_processing import selection

selection.HOLD = int(sys.argv[1])
generator = np.random.default_rng(0)
cases = {
    "ties": generator.integers(0, 5, 1001).astype(float),
    "one value": np.full(1000, 3.25),
    "signed zeros": np.array([-0.0, 0.0, -0.0, 0.0, -1.0, 1.0]),
    "narrow": 1.0 + generator.random(999) * 1e-12,
    "wide": generator.standard_normal(1000) * 10.0 ** generator.integers(-300, 300, 1000),
    "huge": np.array([1e308, 1.5e308, -1e308, 1.7e308]),
    "infinite": np.array([-np.inf, 2.0, np.inf, np.inf]),
    "single": np.array([7.0]),
}
results = {}
for name, values in cases.items():
    with tempfile.TemporaryFile() as spill:
        observed = selection.Observed(spill)
        for start in range(0, len(values), 7):
            observed.merge(selection.Observed.of(values[start:start + 7]))
        ordered = np.sort(values)
        middle = len(values) // 2
        expected = ordered[middle] if len(values) % 2 else ordered[middle - 1] * 0.5 + ordered[middle] * 0.5
        results[name] = [observed.median(), float(expected)]
print(json.dumps(results))
"""


def test_a_spilled_median_is_exact_even_when_its_bucket_must_be_split(image_python: str) -> None:
    # Given values with ties, one repeated value, signed zeros, a range narrower than one bucket, huge values
    for hold in ["4", str(1 << 20)]:
        # When they are spilled in batches of 7 and their median is selected, buckets of more than `hold` split
        results = in_image(image_python, MEDIANS, hold)

        # Then every median is the middle of the sorted values, to the bit
        for name, (median, expected) in results.items():
            assert json.dumps(median) == json.dumps(expected), (name, hold)


HASHES = """
import json
import numpy as np, pyarrow as pa
from labelflow_processing import record_ids

ids = pa.array([f"rec-{i:07d}" for i in range(200_000)] + ["", "é", "a" * 300, "a" * 300 + "b"])
hashes = record_ids.hashes(ids)
print(json.dumps({
    "distinct": len(np.unique(hashes)),
    "count": len(ids),
    "sliced_same": bool((record_ids.hashes(ids.slice(5, 1000)) == hashes[5:1005]).all()),
    "repeat_same": bool(record_ids.hashes(pa.array(["x", "x"]))[0] == record_ids.hashes(pa.array(["x"]))[0]),
}))
"""


def test_record_id_hashes_are_per_value_and_distinct_for_distinct_ids(image_python: str) -> None:
    # Given 200,000 sequential ids and a few odd ones (empty, non-ASCII, longer than the hash's table)
    # When they are hashed whole and as a slice
    result = in_image(image_python, HASHES)

    # Then distinct ids hash apart, and a value's hash depends on nothing but the value
    assert result["distinct"] == result["count"]
    assert result["sliced_same"] and result["repeat_same"]


COLLISIONS = """
import io, json, tempfile
from pathlib import Path
import numpy as np, pyarrow as pa
from labelflow_processing import pipeline

batches = [["a", "b", "a", "c"], ["b", "d", "e", "a"]]
with tempfile.TemporaryDirectory() as folder:
    schema = pa.schema([(pipeline.ROW, pa.int64()), (pipeline.LINE, pa.int64()), (pipeline.RECORD_ID, pa.string())])
    scratch = pipeline.Scratch(Path(folder) / "rows.arrow", schema)
    row = 0
    for ids in batches:
        rows = np.arange(row, row + len(ids))
        scratch.append({pipeline.ROW: rows, pipeline.LINE: rows + 1, pipeline.RECORD_ID: ids})
        row += len(ids)
    scratch.close()
    out = io.StringIO()
    with tempfile.TemporaryFile() as hashes:
        # Every id hashes alike: each row is a candidate, only the text decides.
        hashes.write(np.zeros(row, np.uint64).data)
        duplicates = pipeline._duplicates(hashes, scratch, out)
print(json.dumps({"rows": duplicates.tolist(), "rejected": [json.loads(line) for line in out.getvalue().splitlines()]}))
"""


def test_ids_whose_hashes_collide_are_compared_as_text(image_python: str) -> None:
    # Given ids in two scratch batches whose hashes all collide
    # When the duplicates are found
    result = in_image(image_python, COLLISIONS)

    # Then only the rows repeating an earlier id's text are rejected, in row order
    assert result["rows"] == [2, 4, 7]
    assert [(r["line"], r["record_id"]) for r in result["rejected"]] == [(3, "a"), (5, "b"), (8, "a")]
