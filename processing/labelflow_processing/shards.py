"""A sharded input: the instance this is, and what every part of the input tells the others.

Planning cuts a large input into parts at line ends, and each instance of a job reads some of them. Facts about
the whole input travel between jobs as files, one folder per part (`parts/<part>/`, the part's path under the
input folder), read back in part order, which is the input's record order:

1. scan: `scan.json` (rows read and rejected, the lines the part numbers, the line of a quoted line break the
   spec rules out) and `ids.bin`, two 64-bit hashes of each accepted row's record id (record_ids.pair_hashes),
   in row order.
2. stats: the statistics of the part's accepted rows that are not duplicates (`stats.json` plus value counts and
   medians' keys beside it), which every instance merges in part order into the same state and drift.
3. process: each part's records, rejections and stats under `parts/<part>/`; the first host writes state.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.feather as feather

from labelflow_processing.config import FatalInputError, Spec
from labelflow_processing.readers import InputFile, QuotedLineBreak
from labelflow_processing.selection import Observed
from labelflow_processing.transforms import FeatureStats, Moments, ValueCounts

RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")
PARTS = "parts"
SCAN_FILE, IDS_FILE, STATS_FILE = "scan.json", "ids.bin", "stats.json"


@dataclass(frozen=True)
class Host:
    """This instance's name and every instance's, in order (SageMaker developer guide, "How Amazon SageMaker
    Processing Configures Your Processing Container": /opt/ml/config/resourceconfig.json)."""

    current: str
    hosts: tuple[str, ...]

    @property
    def first(self) -> bool:
        return self.current == self.hosts[0]


def this_host(path: Path) -> Host:
    """The host the resource config names; a lone algo-1 when there is none (the script run by hand)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Host("algo-1", ("algo-1",))
    return Host(str(config["current_host"]), tuple(str(host) for host in config["hosts"]))


def part_dir(root: Path, part: str) -> Path:
    return root / PARTS / part


@dataclass(frozen=True)
class PartScan:
    """What the scan pass found in one part."""

    name: str
    records_in: int
    rejected: int
    lines: int
    ids: np.ndarray
    # The part's own line of its first quoted line break, when the spec says CSV values hold none.
    line_break: int | None = None


def physical_lines(path: Path) -> int:
    """Line feeds in the file, plus one for a last line without one."""
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def part_lines(file: InputFile, records_in: int) -> int:
    """The lines a part adds to the numbering of the parts after it. A JSON Lines row is numbered by its physical
    line; a CSV row by its record, the header being line 1 of every part (readers.py), so a CSV part adds its rows
    read and its header, a copy of the first part's, adds nothing."""
    return records_in if file.read_as.format == "csv" else physical_lines(file.path)


def write_scan(root: Path, scan: PartScan) -> None:
    folder = part_dir(root, scan.name)
    folder.mkdir(parents=True, exist_ok=True)
    facts = {
        "records_in": scan.records_in,
        "rejected": scan.rejected,
        "lines": scan.lines,
        "line_break": scan.line_break,
    }
    (folder / SCAN_FILE).write_text(json.dumps(facts) + "\n", encoding="utf-8")
    np.ascontiguousarray(scan.ids, dtype=np.uint64).tofile(folder / IDS_FILE)


def read_scans(root: Path) -> list[PartScan]:
    """Every part's scan, in part order; FatalInputError when there is none, QuotedLineBreak at the whole
    input's line when a part found one."""
    found = sorted((root / PARTS).rglob(SCAN_FILE))
    if not found:
        raise FatalInputError(f"no scan of the input's parts under {root}")
    scans = []
    for path in found:
        facts = json.loads(path.read_text(encoding="utf-8"))
        ids = np.fromfile(path.parent / IDS_FILE, dtype=np.uint64).reshape(-1, 2)
        name = path.parent.relative_to(root / PARTS).as_posix()
        counts = int(facts["records_in"]), int(facts["rejected"]), int(facts["lines"])
        scans.append(PartScan(name, *counts, ids, facts.get("line_break")))
    _check_line_breaks(scans)
    return scans


def _check_line_breaks(scans: list[PartScan]) -> None:
    """The first part's quoted line break, numbered as one instance reading the whole input numbers it: the parts
    before it are whole, so their lines are exact."""
    for index, scan in enumerate(scans):
        if scan.line_break is not None:
            raise QuotedLineBreak(sum(earlier.lines for earlier in scans[:index]) + scan.line_break)


@dataclass(frozen=True)
class Shard:
    """One part's place in the whole input: the lines and accepted ids of the parts before it."""

    line_offset: int
    earlier_ids: np.ndarray
    own_ids: np.ndarray


def shard_of(scans: list[PartScan], name: str) -> Shard:
    index = next((i for i, scan in enumerate(scans) if scan.name == name), None)
    if index is None:
        raise FatalInputError(f"input part {name} was not scanned")
    earlier = [scan.ids for scan in scans[:index]]
    return Shard(
        line_offset=sum(scan.lines for scan in scans[:index]),
        earlier_ids=np.concatenate(earlier) if earlier else np.empty((0, 2), np.uint64),
        own_ids=scans[index].ids,
    )


def duplicate_count(scans: list[PartScan]) -> int:
    """Accepted rows of the whole input whose id hash pair an earlier row has."""
    ids = np.ascontiguousarray(np.concatenate([scan.ids for scan in scans]))
    return len(ids) - len(np.unique(ids.view(np.dtype((np.void, 16))).ravel()))


def write_stats(folder: Path, stats: dict[str, FeatureStats]) -> None:
    """A part's statistics: counts and moments as JSON, value counts as Feather, medians' keys as raw uint64."""
    folder.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {}
    for index, (name, feature_stats) in enumerate(stats.items()):
        document[name] = {"missing": feature_stats.missing, "moments": feature_stats.moments.to_json()}
        counts = feature_stats.counts.table()
        if counts.num_rows:
            feather.write_feather(counts, str(folder / f"counts-{index}.arrow"))
        if feature_stats.observed.count:
            with (folder / f"keys-{index}.bin").open("wb") as handle:
                for keys in feature_stats.observed.key_chunks():
                    handle.write(np.ascontiguousarray(keys).data)
    (folder / STATS_FILE).write_text(json.dumps(document) + "\n", encoding="utf-8")


def merged_stats(root: Path, spec: Spec, fitting: bool, empty: dict[str, FeatureStats]) -> dict[str, FeatureStats]:
    """Every part's statistics under `root` merged into `empty` (a run's, medians spilled), in part order."""
    for path in sorted((root / PARTS).rglob(STATS_FILE)):
        document = json.loads(path.read_text(encoding="utf-8"))
        for index, feature in enumerate(spec.features):
            raw = document[feature.name]
            part = FeatureStats(feature, fitting, int(raw["missing"]), Moments.from_json(raw["moments"]))
            counts = path.parent / f"counts-{index}.arrow"
            if counts.exists():
                part.counts = ValueCounts.from_table(feather.read_table(str(counts)))
            empty[feature.name].merge(part)
            _merge_keys(path.parent / f"keys-{index}.bin", empty[feature.name].observed)
    return empty


def _merge_keys(path: Path, observed: Observed) -> None:
    if not path.exists():
        return
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            observed.merge(Observed.of_keys(np.frombuffer(chunk, np.uint64)))
