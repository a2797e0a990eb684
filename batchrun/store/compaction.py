"""Compaction: a run's many small checkpoint parts merged into a few large ones, losing nothing.

A run checkpoints every `flush_rows` results, so a million-row run leaves a thousand parts. Runs
of consecutive parts are merged, in order, into one part that takes the name of the last of them
and records in its Parquet metadata which parts it covers. The merged part replaces the last one
with one atomic rename; only then are the parts it covers deleted. At every moment each result is
on disk at least once, in arrival order, and a reader that meets a result twice for a moment (the
covered parts not yet deleted) keeps the latest of the two copies, which are the same row. A kill
in the middle leaves covered parts behind; `drop_covered` (run by recovery, under the lock)
deletes them, so sums over every row, like the money already spent, never count one twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from batchrun.store import layout
from batchrun.store.parts import concat

COVERS_KEY = b"batchrun.covers"
# A merged part holds at most this many rows: big enough that a million rows make a handful of
# files, small enough that a reader can still load one part comfortably.
TARGET_ROWS = 250_000


@dataclass(frozen=True, slots=True)
class Compacted:
    """What a compaction did: parts before and after."""

    parts_before: int
    parts_after: int


def compact(root: Path, *, target_rows: int = TARGET_ROWS) -> Compacted:
    """Merge runs of consecutive small parts of `root`.

    The caller holds the output lock and has recovered the directory (no journal is left).
    """
    drop_covered(root)
    parts = layout.list_parts(root)
    groups: list[list[tuple[Path, int]]] = [[]]
    for part in parts:
        rows = pq.read_metadata(part).num_rows
        if groups[-1] and sum(n for _, n in groups[-1]) + rows > target_rows:
            groups.append([])
        groups[-1].append((part, rows))
    for group in groups:
        if len(group) > 1:
            _merge([path for path, _ in group])
    return Compacted(len(parts), len(layout.list_parts(root)))


def _merge(paths: list[Path]) -> None:
    first, last = layout.parse_seq(paths[0]), layout.parse_seq(paths[-1])
    table = concat([pq.read_table(path) for path in paths])
    metadata = dict(table.schema.metadata or {})
    metadata[COVERS_KEY] = f"{first}-{last}".encode()
    table = table.replace_schema_metadata(metadata)
    target = paths[-1]
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as handle:
        pq.write_table(table, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)  # the merged rows are now under the last part's name
    layout.fsync_dir(target.parent)
    for path in paths[:-1]:
        path.unlink(missing_ok=True)
    layout.fsync_dir(target.parent)


def drop_covered(root: Path) -> int:
    """Delete parts that a merged part already holds (left by a compaction that was killed)."""
    parts = layout.list_parts(root)
    by_seq = {layout.parse_seq(part): part for part in parts}
    dropped = 0
    for part in parts:
        covers = (pq.read_schema(part).metadata or {}).get(COVERS_KEY)
        if covers is None:
            continue
        first, last = (int(x) for x in covers.decode().split("-"))
        for seq in range(first, last):
            covered = by_seq.get(seq)
            if covered is not None and covered.exists():
                covered.unlink()
                dropped += 1
    if dropped:
        layout.fsync_dir(root / layout.PARTS_DIR)
    return dropped
