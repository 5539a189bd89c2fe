"""One processing run: scan the input, drop duplicates, fit (or take) the transform state, write the records.

1. Scan: every batch of every input file is checked row by row (vectorised); a rejected row goes to
   rejected.jsonl at once, the others are parsed (numbers, event times, text) into a scratch Arrow file on
   local disk, so memory holds one batch whatever the input's size.
2. Duplicates: a record id seen in an earlier accepted row rejects the later rows (the first one is kept). A
   64-bit hash of each record id is the one thing held for the whole input; a median's values wait in a spill
   file beside the scratch file.
3. Fit or apply: without a state, the accepted rows' statistics fit one; with a state, the state is used as
   it is. Either way the same statistics give the drift against the state.
4. Write: the scratch rows are transformed with the state, scored with the model and written as JSON Lines.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
from scoring import Scorer

from labelflow_processing import record_ids, rejections, values, writers
from labelflow_processing.background import ordered_map
from labelflow_processing.config import FatalInputError, FeatureSpec, Spec, TooManyRejectedError
from labelflow_processing.readers import InputFile, RawBatch, Rejection, read_batches
from labelflow_processing.selection import Observed
from labelflow_processing.shards import Shard
from labelflow_processing.state import drift, fit_state, parse_state
from labelflow_processing.transforms import FeatureStats, apply_numeric, encode, encoded_outputs

ROW, LINE, RECORD_ID, EVENT_TIME = "_row", "_line", "_id", "_time"
# A scored chunk: large enough to amortise predict_proba, small enough to bound a model's working memory.
SCORING_ROWS = 8192
# Rows of the table that renders a run of encoded features in one lookup.
MAX_LOOKUP = 4096


def feature_field(feature: FeatureSpec) -> str:
    return f"f:{feature.name}"


@dataclass
class Layout:
    """Where each value of an accepted row lives in the scratch file."""

    spec: Spec
    model_fields: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        # A model reads a numeric feature's column as that feature's numbers (NaN when missing), any other as text.
        numeric = {f.column: feature_field(f) for f in reversed(self.spec.features) if f.numeric}
        columns = self.spec.model.columns if self.spec.model else ()
        self.model_fields = {column: numeric.get(column, f"m:{column}") for column in columns}

    def schema(self) -> pa.Schema:
        fields = [
            pa.field(ROW, pa.int64()),
            pa.field(LINE, pa.int64()),
            pa.field(RECORD_ID, pa.string()),
            pa.field(EVENT_TIME, pa.int64()),
        ]
        fields += [pa.field(f"d:{column}", pa.string()) for column in self.spec.display_columns]
        for feature in self.spec.features:
            fields.append(pa.field(feature_field(feature), pa.float64() if feature.numeric else pa.string()))
        fields += [pa.field(name, pa.string()) for name in self.model_fields.values() if name.startswith("m:")]
        return pa.schema(fields)


@dataclass
class Checked:
    """One scanned batch: the accepted rows' parsed values and statistics, and the rejected rows."""

    read: int
    accepted: dict[str, Any]
    id_hashes: np.ndarray
    stats: dict[str, FeatureStats]
    rejected: list[Rejection]


class Scanner:
    """Checks and parses raw batches (thread-safe): rejected rows out, accepted rows parsed and observed."""

    def __init__(self, spec: Spec, default_event_time: str | None, fitting: bool) -> None:
        self.spec = spec
        self.fitting = fitting
        self.layout = Layout(spec)
        self.default_seconds = None
        if default_event_time is not None:
            seconds, _, _, _ = values.event_times(pa.array([default_event_time]))
            self.default_seconds = int(seconds[0])

    def check(self, batch: RawBatch) -> Checked:
        n = batch.num_rows
        reasons: list[str | None] = [None] * n
        pending = np.ones(n, dtype=bool)

        def reject(mask: np.ndarray, reason: Any) -> None:
            hits = pending & mask
            for index in np.flatnonzero(hits).tolist():
                reasons[index] = reason(index)
            pending[hits] = False

        self._sizes(batch, reject)
        ids, missing_id = values.stripped(batch.columns[self.spec.record_id_column])
        reject(missing_id, lambda i: rejections.MISSING_ID)
        reject(values.has_control(ids), lambda i: rejections.control_in_id(ids[i].as_py()))
        if self.spec.event_time_column:
            seconds, missing, bad, text = values.event_times(batch.columns[self.spec.event_time_column])
            reject(missing, lambda i: rejections.MISSING_TIME)
            reject(bad, lambda i: rejections.bad_time(text[i].as_py()))
        else:
            seconds = np.full(n, self.default_seconds, dtype=np.int64)
        parsed: dict[str, Any] = {}
        for feature in self.spec.features:
            parsed[feature_field(feature)] = self._feature(feature, batch.columns[feature.column], reject)
        accepted: dict[str, Any] = {LINE: batch.lines, RECORD_ID: ids, EVENT_TIME: seconds, **parsed}
        for column in self.spec.display_columns:
            accepted[f"d:{column}"] = values.as_text(batch.columns[column]).fill_null("")
        for column, name in self.layout.model_fields.items():
            if name.startswith("m:"):
                accepted[name] = values.stripped(batch.columns[column])[0]
        if not pending.all():
            keep = np.flatnonzero(pending)
            indices = pa.array(keep)
            accepted = {k: v[keep] if isinstance(v, np.ndarray) else v.take(indices) for k, v in accepted.items()}
        stats = {f.name: FeatureStats.of(f, self.fitting, accepted[feature_field(f)]) for f in self.spec.features}
        rejected = [
            Rejection(int(batch.lines[i]), ids[i].as_py(), reason)
            for i, reason in enumerate(reasons)
            if reason is not None
        ]
        hashes = record_ids.hashes(accepted[RECORD_ID])
        return Checked(n + len(batch.rejected), accepted, hashes, stats, batch.rejected + rejected)

    def _sizes(self, batch: RawBatch, reject: Any) -> None:
        """Reject the rows with a cell, or cells in all, above the spec's limits (UTF-8 bytes)."""
        limit = self.spec.max_cell_bytes
        row_bytes = np.zeros(batch.num_rows, dtype=np.int64)
        for name, column in batch.columns.items():
            sizes = values.text_sizes(column)
            row_bytes += sizes
            reject(
                sizes > limit, lambda i, name=name, sizes=sizes: rejections.cell_too_large(name, int(sizes[i]), limit)
            )
        limit_row = self.spec.max_row_bytes
        reject(row_bytes > limit_row, lambda i: rejections.row_too_large(int(row_bytes[i]), limit_row))

    def _feature(self, feature: FeatureSpec, column: pa.Array, reject: Any) -> np.ndarray | pa.Array:
        if feature.numeric:
            numbers, missing, bad = values.numbers(column)
            if feature.impute is None:
                reject(missing, lambda i: rejections.missing_value(feature.name))
            if bad.any():
                text = values.as_text(column)
                reject(bad, lambda i: rejections.not_a_number(feature.name, (text[i].as_py() or "").strip()))
            return numbers
        text, missing = values.stripped(column)
        if feature.impute is None:
            reject(missing, lambda i: rejections.missing_value(feature.name))
        return text


@dataclass
class RunResult:
    records_in: int
    records_out: int
    rejected: int
    state: bytes
    fitted: bool
    drift: dict[str, Any]
    predicted: dict[str, int]
    model: Scorer | None


class Scratch:
    """The accepted rows on local disk, in the Layout's schema, read back a batch at a time."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._writer: pa.ipc.RecordBatchFileWriter | None = pa.ipc.new_file(str(path), schema)

    def append(self, columns: dict[str, Any]) -> None:
        assert self._writer is not None
        arrays = [pa.array(columns[f.name], f.type) for f in self.schema]
        self._writer.write_batch(pa.record_batch(arrays, schema=self.schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        with pa.OSFile(str(self.path)) as source:
            reader = pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                yield batch.select(columns) if columns else batch


@dataclass
class Scanned:
    """The input scanned: what the scan found, the accepted rows on disk, where rejections and spills go."""

    scan: Scan
    scratch: Scratch
    rejected_out: IO[str]
    spill: Callable[[], IO[bytes]]


@contextmanager
def scanned(
    files: list[InputFile],
    scanner: Scanner,
    scratch_root: Path,
    rejected: Path | None,
    line_offset: int = 0,
) -> Iterator[Scanned]:
    """Scan the files into a scratch file under `scratch_root`, rejections to `rejected` (None: dropped)."""
    # Scratch space beside the output folder: on SageMaker that is the job's storage volume, not the container's.
    with (
        tempfile.TemporaryDirectory(dir=scratch_root, prefix=".labelflow-scratch-") as scratch_dir,
        open(rejected or os.devnull, "w", encoding="utf-8") as rejected_out,
        ExitStack() as spills,
    ):

        def spill() -> IO[bytes]:
            return spills.enter_context(tempfile.TemporaryFile(dir=scratch_dir))

        scratch = Scratch(Path(scratch_dir) / "rows.arrow", scanner.layout.schema())
        scan = _scan(files, scanner.spec, scanner, scratch, rejected_out, spill, line_offset)
        scratch.close()
        yield Scanned(scan, scratch, rejected_out, spill)


def run_files(
    files: list[InputFile],
    spec: Spec,
    default_event_time: str | None,
    state: bytes | None,
    output_dir: Path,
    load_model: Any,
    shard: Shard | None = None,
) -> RunResult:
    """Process the files into output_dir's records.jsonl and rejected.jsonl.

    A part of a sharded input (`shard`) is checked against the whole by the caller: its own rejected share is
    not the input's.
    """
    scanner = Scanner(spec, default_event_time, fitting=state is None)
    offset = shard.line_offset if shard else 0
    with scanned(files, scanner, output_dir.parent, output_dir / "rejected.jsonl", offset) as found:
        scan = found.scan
        if shard is None:
            if scan.records_in == 0:
                raise FatalInputError("input has no data rows")
            check_rejected_share(files, spec, scan.records_in, scan.rejected)
        duplicates = _duplicates(found.scan.id_hashes, found.scratch, found.rejected_out, shard)
        stats = scan.stats
        if len(duplicates):
            _clear_observed(stats)
            stats = _observe(spec, found.scratch, duplicates, state is None, found.spill)
        state_bytes = fit_state(spec, stats) if state is None else state
        _clear_observed(stats)
        states = parse_state(state_bytes, spec)
        model = load_model()
        with (output_dir / "records.jsonl").open("wb") as records_out:
            formatter = Formatter(spec, states, duplicates, model)
            written, late, predicted = _write(formatter, found.scratch, records_out, found.rejected_out)
        if shard is None:
            check_rejected_share(files, spec, scan.records_in, scan.rejected + len(duplicates) + late)
    return RunResult(
        records_in=scan.records_in,
        records_out=written,
        rejected=scan.rejected + len(duplicates) + late,
        state=state_bytes,
        fitted=state is None,
        drift=drift(spec, states, stats),
        predicted=predicted,
        model=model,
    )


@dataclass
class PartIds:
    """A part as the scan pass sees it: rows read and rejected, and the accepted rows' id hash pairs."""

    records_in: int
    rejected: int
    ids: np.ndarray


def scan_ids(files: list[InputFile], spec: Spec, default_event_time: str | None, scratch_root: Path) -> PartIds:
    """Check every row and hash the accepted rows' ids, in row order (the scan pass of a sharded input)."""
    scanner = Scanner(spec, default_event_time, fitting=False)
    with scanned(files, scanner, scratch_root, None) as found:
        pairs = [record_ids.pair_hashes(batch.column(0)) for batch in found.scratch.batches([RECORD_ID])]
        _clear_observed(found.scan.stats)
        ids = np.concatenate(pairs) if pairs else np.empty((0, 2), np.uint64)
        return PartIds(found.scan.records_in, found.scan.rejected, ids)


def part_stats(
    files: list[InputFile],
    spec: Spec,
    default_event_time: str | None,
    fitting: bool,
    scratch_root: Path,
    shard: Shard,
    keep: Callable[[dict[str, FeatureStats]], None],
) -> None:
    """The statistics of a part's accepted rows that are not duplicates in the whole input, handed to `keep`
    while their spilled values are still there."""
    scanner = Scanner(spec, default_event_time, fitting)
    with scanned(files, scanner, scratch_root, None, shard.line_offset) as found:
        duplicates = _duplicates(found.scan.id_hashes, found.scratch, found.rejected_out, shard)
        stats = found.scan.stats
        if len(duplicates):
            _clear_observed(stats)
            stats = _observe(spec, found.scratch, duplicates, fitting, found.spill)
        keep(stats)
        _clear_observed(stats)


def check_rejected_share(files: list[InputFile], spec: Spec, read: int, rejected: int) -> None:
    """TooManyRejectedError when no row is left, or a larger share than the spec allows was rejected."""
    names = ", ".join(file.name for file in files)
    if rejected >= read:
        raise TooManyRejectedError(
            f"{names}: all {read:,} rows were rejected; see rejected.jsonl for the reasons, "
            "fix the file and upload it again",
            read,
            rejected,
        )
    share = rejected / read
    if share > spec.max_rejected_share:
        raise TooManyRejectedError(
            f"{names}: {rejected:,} of {read:,} rows were rejected ({share:.1%}), above the spec's max_rejected_share "
            f"of {spec.max_rejected_share:g}; see rejected.jsonl for the reasons, fix the file and upload it again, "
            "or raise max_rejected_share",
            read,
            rejected,
        )


def _write_rejections(handle: IO[str], rejected: list[Rejection]) -> None:
    handle.writelines(
        writers.json_line({"line": r.line, "record_id": r.record_id, "reason": r.reason})
        for r in sorted(rejected, key=lambda r: r.line)
    )


def run_stats(spec: Spec, fitting: bool, spill: Callable[[], IO[bytes]]) -> dict[str, FeatureStats]:
    """Empty statistics for a whole input, a median's values spilled to a file that `spill` opens."""
    stats = {}
    for feature in spec.features:
        spilled = fitting and feature.numeric and feature.impute == "median"
        observed = Observed(spill()) if spilled else Observed()
        stats[feature.name] = FeatureStats(feature, fitting, observed=observed)
    return stats


def _clear_observed(stats: dict[str, FeatureStats]) -> None:
    for feature_stats in stats.values():
        feature_stats.observed.clear()


@dataclass
class Scan:
    """What the scan found: rows read and rejected, feature statistics, the accepted rows' id hashes (a file)."""

    stats: dict[str, FeatureStats]
    id_hashes: IO[bytes]
    records_in: int = 0
    rejected: int = 0
    accepted: int = 0


def _scan(
    files: list[InputFile],
    spec: Spec,
    scanner: Scanner,
    scratch: Scratch,
    out: IO[str],
    spill: Callable[[], IO[bytes]],
    line_offset: int = 0,
) -> Scan:
    scan = Scan(run_stats(spec, scanner.fitting, spill), spill())
    for file in files:
        batches = _shifted(read_batches(file, spec.required_columns), line_offset)
        for checked in ordered_map(scanner.check, batches):
            scan.records_in += checked.read
            scan.rejected += len(checked.rejected)
            _write_rejections(out, checked.rejected)
            count = len(checked.accepted[LINE])
            if not count:
                continue
            checked.accepted[ROW] = np.arange(scan.accepted, scan.accepted + count, dtype=np.int64)
            scratch.append(checked.accepted)
            scan.accepted += count
            scan.id_hashes.write(checked.id_hashes.data)
            for name, stats in checked.stats.items():
                scan.stats[name].merge(stats)
    return scan


def _shifted(batches: Iterator[RawBatch], offset: int) -> Iterator[RawBatch]:
    """The batches with lines counted from the start of the whole input, whose earlier parts hold `offset`."""
    for batch in batches:
        if offset:
            rejected = [Rejection(r.line + offset, r.record_id, r.reason) for r in batch.rejected]
            batch = RawBatch(batch.columns, batch.lines + offset, rejected)
        yield batch


def _duplicates(id_hashes: IO[bytes], scratch: Scratch, out: IO[str], shard: Shard | None = None) -> np.ndarray:
    """Rows whose record id an earlier accepted row has (in an earlier part too), sorted; each is written to
    rejected.jsonl."""
    rows = _repeated_rows(id_hashes, scratch)
    if shard is not None and len(shard.earlier_ids):
        rows = np.union1d(rows, np.flatnonzero(record_ids.seen_before(shard.earlier_ids, shard.own_ids)))
    if not len(rows):
        return np.empty(0, dtype=np.int64)
    for batch in scratch.batches([ROW, LINE, RECORD_ID]):
        hit = batch.filter(pa.array(np.isin(batch.column(0).to_numpy(), rows)))
        pairs = zip(hit.column(1).to_pylist(), hit.column(2).to_pylist(), strict=True)
        _write_rejections(out, [Rejection(line, rid, rejections.DUPLICATE) for line, rid in pairs])
    return rows.astype(np.int64)


def _repeated_rows(id_hashes: IO[bytes], scratch: Scratch) -> np.ndarray:
    """Rows whose record id an earlier accepted row of the scratch file has, sorted."""
    repeated = record_ids.repeated(id_hashes)
    if not len(repeated):
        return np.empty(0, dtype=np.int64)
    # Only the rows whose id hash repeats can be duplicates: their ids are compared as text.
    candidates = record_ids.rows_with(id_hashes, repeated)
    taken = [
        batch.filter(pa.array(np.isin(batch.column(0).to_numpy(), candidates)))
        for batch in scratch.batches([ROW, RECORD_ID])
    ]
    ids = pa.chunked_array([batch.column(1) for batch in taken if batch.num_rows], pa.string())
    later: np.ndarray = candidates[record_ids.later_occurrences(ids)]
    return later


def _kept(batch: pa.RecordBatch, duplicates: np.ndarray) -> pa.RecordBatch:
    if not len(duplicates):
        return batch
    rows = batch.column(ROW).to_numpy()
    return batch.filter(pa.array(~np.isin(rows, duplicates)))


def _observe(
    spec: Spec, scratch: Scratch, duplicates: np.ndarray, fitting: bool, spill: Callable[[], IO[bytes]]
) -> dict[str, FeatureStats]:
    """The feature statistics of the scratch rows that are not duplicates."""
    stats = run_stats(spec, fitting, spill)
    for batch in scratch.batches():
        batch = _kept(batch, duplicates)
        for feature in spec.features:
            column = batch.column(feature_field(feature))
            values = column.to_numpy(zero_copy_only=False) if feature.numeric else column
            stats[feature.name].merge(FeatureStats.of(feature, fitting, values))
    return stats


@dataclass
class Formatted:
    """One batch's output: its lines, the rows rejected instead, the labels predicted."""

    lines: pa.Array | None
    rejected: list[Rejection]
    labels: np.ndarray


class Formatter:
    """Transforms, scores and renders batches of scratch rows as records.jsonl lines (thread-safe)."""

    def __init__(self, spec: Spec, states: dict[str, Any], duplicates: np.ndarray, model: Scorer | None) -> None:
        self.spec, self.states, self.duplicates, self.model = spec, states, duplicates, model
        self.layout = Layout(spec)
        self.outputs = {f.name: encoded_outputs(f) for f in spec.features if f.encoding}

    def __call__(self, batch: pa.RecordBatch) -> Formatted:
        batch = _kept(batch, self.duplicates)
        parts = writers.Parts()
        parts.text('{"record_id":')
        writers.string_member(parts, "", batch.column(RECORD_ID))
        writers.time_member(parts, ',"event_time":', batch.column(EVENT_TIME).to_numpy())
        parts.text(',"features":{')
        overflow = self._features(batch, parts)
        parts.text('},"display":{')
        for index, column_name in enumerate(self.spec.display_columns):
            prefix = ("," if index else "") + writers.key(column_name)
            writers.string_member(parts, prefix, batch.column(f"d:{column_name}"))
        parts.text('},"prediction":')
        rejected: list[Rejection] = []
        if overflow.any():
            taken = batch.filter(pa.array(overflow))
            lines, ids = taken.column(LINE).to_pylist(), taken.column(RECORD_ID).to_pylist()
            rejected = [Rejection(line, rid, rejections.OVERFLOW) for line, rid in zip(lines, ids, strict=True)]
            keep = pa.array(~overflow)
            batch, parts = batch.filter(keep), parts.filter(keep)
        labels = np.empty(0, dtype=object)
        if self.model is not None and batch.num_rows:
            labels, confidences = _score(self.model, self.layout, batch)
            writers.string_member(parts, '{"label":', pa.array(labels, pa.string()))
            writers.number_member(parts, ',"confidence":', confidences)
            parts.text("}}\n")
        else:
            parts.text("null}\n")
        return Formatted(parts.join() if batch.num_rows else None, rejected, labels)

    def _features(self, batch: pa.RecordBatch, parts: writers.Parts) -> np.ndarray:
        """Render the features; the rows where a scaled value overflowed.

        A run of encoded features is rendered by one table lookup, while the table of their combined buckets
        stays small.
        """
        overflow = np.zeros(batch.num_rows, dtype=bool)
        encoded: list[tuple[FeatureSpec, str, np.ndarray]] = []

        def flush() -> None:
            if encoded:
                outputs = [self.outputs[f.name] for f, _, _ in encoded]
                parts.values(writers.bucket_members(outputs, [p for _, p, _ in encoded], [b for _, _, b in encoded]))
                encoded.clear()

        for index, feature in enumerate(self.spec.features):
            lead = "," if index else ""
            column, state = batch.column(feature_field(feature)), self.states[feature.name]
            if feature.numeric:
                flush()
                values = apply_numeric(feature, state, column.to_numpy(zero_copy_only=False))
                overflow |= np.isnan(values)
                writers.number_member(parts, lead + writers.key(feature.name), np.nan_to_num(values))
            elif feature.encoding:
                size = len(self.outputs[feature.name])
                if math.prod(len(self.outputs[f.name]) for f, _, _ in encoded) * size > MAX_LOOKUP:
                    flush()
                encoded.append((feature, lead, encode(feature, state, column)))
            else:
                flush()
                writers.string_member(parts, lead + writers.key(feature.name), encode(feature, state, column))
        flush()
        return overflow


def _write(
    formatter: Formatter, scratch: Scratch, records_out: IO[bytes], rejected_out: IO[str]
) -> tuple[int, int, dict[str, int]]:
    """Write every kept row's record, in order; returns records written, rows rejected and label counts."""
    written = late = 0
    predicted = dict.fromkeys(formatter.spec.labels, 0) if formatter.model else {}
    for done in ordered_map(formatter, scratch.batches()):
        if done.lines is not None:
            writers.write_lines(records_out, done.lines)
            written += len(done.lines)
        _write_rejections(rejected_out, done.rejected)
        late += len(done.rejected)
        for label, count in zip(*np.unique(done.labels, return_counts=True), strict=True):
            predicted[str(label)] = predicted.get(str(label), 0) + int(count)
    return written, late, predicted


def _score(model: Scorer, layout: Layout, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    labels, confidences = [], []
    for start in range(0, batch.num_rows, SCORING_ROWS):
        chunk = batch.slice(start, SCORING_ROWS)
        columns = {column: chunk.column(name) for column, name in layout.model_fields.items()}
        chunk_labels, chunk_confidences = model.predict(columns)
        labels.append(chunk_labels)
        confidences.append(chunk_confidences)
    return np.concatenate(labels), np.concatenate(confidences)
