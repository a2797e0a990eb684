"""A sharded run read as one: `DIR/shards/I-of-N/` folders, each a run directory of its own.

Shards own disjoint rows (by a hash of the id), so the whole run is every shard's results side
by side, each row's `shard` column set to the folder it lies in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from batchrun.store.layout import SHARDS_DIR
from batchrun.store.parts import concat, read_all

_FOLDER = re.compile(r"^(\d+)-of-(\d+)$")


def shard_folders(root: Path) -> list[tuple[str, Path]]:
    """(`I-of-N`, folder) of each shard under `root`, in shard order; empty when unsharded."""
    parent = root / SHARDS_DIR
    if not parent.is_dir():
        return []
    found = [(m, p) for p in parent.iterdir() if p.is_dir() and (m := _FOLDER.match(p.name))]
    found.sort(key=lambda item: (int(item[0].group(2)), int(item[0].group(1))))
    return [(p.name, p) for _, p in found]


def shard_counts(root: Path) -> set[int]:
    """The N of every `I-of-N` folder under `root/shards` (one, unless someone mixed them)."""
    return {int(name.rsplit("-", 1)[1]) for name, _ in shard_folders(root)}


def read_run(root: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every result of the run in `root`, all shards included (see `parts.read_all`)."""
    folders = shard_folders(root)
    if not folders:
        return read_all(root, columns)
    tables = []
    for name, folder in folders:
        table = read_all(folder, columns)
        if table is None:
            continue
        labels = pa.array([name] * table.num_rows, pa.string())
        if "shard" in table.column_names:
            table = table.set_column(table.column_names.index("shard"), "shard", labels)
        elif columns is None or "shard" in columns:
            table = table.append_column("shard", labels)
        tables.append(table)
    return concat(tables) if tables else None
