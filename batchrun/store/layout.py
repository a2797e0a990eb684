"""The on-disk layout of an output directory, shared by the writer and the readers.

    DIR/batchrun.json          manifest: the job snapshot and the expected request count
    DIR/journal/NNNNNN.jsonl   results as they arrive, one JSON line each (plain writes)
    DIR/parts/NNNNNN.parquet   checkpoints: journal segment NNNNNN turned into Parquet
    DIR/.lock                  held (flock) by the live run
    DIR/batches/               provider batches of batch variants: their journal and files
    DIR/shards/I-of-N/         a sharded run: one such directory, laid out as above, per shard

A journal segment whose part exists is already checkpointed; one without is read as it is, its
torn last line (a write cut by a crash) skipped. Parts sort in the order results arrived, so
"latest result" is "last seen" when reading them in name order.
"""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST = "batchrun.json"
JOURNAL_DIR = "journal"
PARTS_DIR = "parts"
LOCK = ".lock"
SHARDS_DIR = "shards"  # DIR/shards/I-of-N/: one such directory per shard of a sharded run
BATCHES_DIR = "batches"  # DIR/batches/: provider batches of batch variants (store.batches)
OWNED_NAMES = frozenset(
    {MANIFEST, MANIFEST + ".tmp", JOURNAL_DIR, PARTS_DIR, LOCK, "run.log", SHARDS_DIR,
     BATCHES_DIR}
)


def segment_name(seq: int, suffix: str) -> str:
    """File name of journal segment / part number `seq`."""
    return f"{seq:06d}{suffix}"


def parse_seq(path: Path) -> int:
    """The sequence number in a journal or part file name."""
    return int(path.name.split(".", 1)[0])


def part_path(root: Path, seq: int) -> Path:
    """Where checkpoint part `seq` lives."""
    return root / PARTS_DIR / segment_name(seq, ".parquet")


def journal_path(root: Path, seq: int) -> Path:
    """Where journal segment `seq` lives."""
    return root / JOURNAL_DIR / segment_name(seq, ".jsonl")


def list_parts(root: Path) -> list[Path]:
    """Checkpointed parts, oldest first (temporary files excluded)."""
    folder = root / PARTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))


def list_journals(root: Path) -> list[Path]:
    """Journal segments, oldest first."""
    folder = root / JOURNAL_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".jsonl")


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
