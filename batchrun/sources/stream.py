"""JSONL / Parquet / directory / glob -> input rows, streamed in batches.

Inputs may hold millions of rows, so nothing here loads a whole file: JSONL is read one line at
a time, Parquet one record batch at a time, reading only the columns the job needs. Every error
names the file and line (JSONL, 1-based) or row (Parquet, 0-based) and says what to do next.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from batchrun.errors import InputError
from batchrun.sources.image_parts import check
from batchrun.sources.records import jsonl_records, open_parquet, parquet_records, show_path
from batchrun.sources.rows import InputRow, plan_rows
from batchrun.sources.shards import Shard
from batchrun.sources.unique_ids import id_hashes_checked_unique

if TYPE_CHECKING:
    from batchrun.job import InputSpec

_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True, slots=True)
class InputScan:
    """What a validation pass over the whole input found."""

    files: tuple[Path, ...]
    rows: int
    columns: tuple[str, ...]
    # Rows this run sends: of the first `limit` rows, those of its shard (all rows without).
    selected: int
    # With `scan(..., count_shards=N)`: the rows of each of N shards, of the first `limit`.
    per_shard: tuple[int, ...] = ()


def list_files(spec: InputSpec, base_dir: Path) -> tuple[Path, ...]:
    """The input files named by `spec.path`: a file, a directory of them, or a glob, sorted."""
    raw = spec.path
    if any(c in raw for c in "*?["):
        pattern = raw if os.path.isabs(raw) else os.path.join(glob.escape(str(base_dir)), raw)
        files = sorted(p for p in map(Path, glob.glob(pattern)) if p.is_file())
        if not files:
            raise InputError(f"no files match {raw!r} (from {base_dir}); check [input] path")
        for p in files:
            if p.suffix.lower() not in _SUFFIXES:  # a pattern is explicit: say, don't skip
                raise InputError(
                    f"{raw!r} matches {show_path(p, base_dir)}, which is neither .jsonl nor "
                    ".parquet; narrow the pattern, e.g. data/*.jsonl"
                )
        return tuple(files)
    path = Path(raw) if os.path.isabs(raw) else base_dir / raw
    shown = show_path(path, base_dir)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
            if not files:
                raise InputError(f"{shown}: the folder holds no .jsonl or .parquet files")
            return tuple(files)
    except OSError as e:
        raise InputError(f"{shown}: cannot read ({e.strerror}); check its permissions") from None
    if not path.exists():
        raise InputError(
            f"{shown}: no such file or folder; check [input] path "
            "(paths in a job file are relative to the job file's folder)"
        )
    if path.suffix.lower() not in _SUFFIXES:
        raise InputError(f"{shown}: unsupported file type; convert it to .jsonl or .parquet")
    return (path,)


def input_columns(spec: InputSpec, base_dir: Path) -> tuple[str, ...]:
    """The columns of the first input file (JSONL: the keys of its first line)."""
    first = list_files(spec, base_dir)[0]
    shown = show_path(first, base_dir)
    if first.suffix.lower() == ".parquet":
        with open_parquet(first, shown) as pf:
            return tuple(pf.schema_arrow.names)
    return next((tuple(rec) for _, rec in jsonl_records(first, shown)), ())


def iter_rows(
    spec: InputSpec, base_dir: Path, keep_columns: Sequence[str] = (), batch_size: int = 2048
) -> Iterator[list[InputRow]]:
    """Yield the input's rows in lists of up to `batch_size`, reading lazily."""
    rows = _stream(spec, base_dir, tuple(keep_columns), batch_size)
    while batch := list(islice(rows, batch_size)):
        yield batch


def scan(
    spec: InputSpec,
    base_dir: Path,
    keep_columns: Sequence[str] = (),
    *,
    shard: Shard | None = None,
    limit: int | None = None,
    count_shards: int | None = None,
) -> InputScan:
    """Validate the whole input before anything is sent: rows, columns, unique ids, images.

    Every shard checks the whole input: a duplicate id or a bad line anywhere stops them all.
    """
    files = list_files(spec, base_dir)
    keep = tuple(keep_columns)
    hashes = id_hashes_checked_unique(
        lambda: _checked(_stream(spec, base_dir, keep, 1024)), spec.id
    )
    if hashes.size == 0:
        raise no_rows(files, base_dir)
    chosen = hashes[:limit]
    selected = len(chosen) if shard is None else int((chosen % shard.count == shard.index).sum())
    per_shard = () if count_shards is None else tuple(
        int(n) for n in np.bincount(chosen % count_shards, minlength=count_shards))
    return InputScan(files, int(hashes.size), input_columns(spec, base_dir), selected, per_shard)


def no_rows(files: Sequence[Path], base_dir: Path) -> InputError:
    """The error for an input without a single row."""
    # Nothing to do is almost always a wrong path or glob, not a finished job: say so (exit 2).
    names = ", ".join(show_path(p, base_dir) for p in files[:3])
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    verb = "holds" if len(files) == 1 else "hold"
    return InputError(
        f"the input has no rows ({names}{more} {verb} none); check [input] path and the data"
    )


def _stream(
    spec: InputSpec, base_dir: Path, keep: tuple[str, ...], batch_size: int
) -> Iterator[InputRow]:
    """Every row of every input file, in order, read lazily."""
    files = list_files(spec, base_dir)
    plan = plan_rows(spec, files, base_dir, keep)
    seq = 0
    for path in files:
        shown = show_path(path, base_dir)
        if path.suffix.lower() == ".parquet":
            records = parquet_records(path, shown, plan.owners, plan.messages, batch_size)
        else:
            records = jsonl_records(path, shown)
        folder = path.parent
        for where, rec in records:
            yield plan.row(rec, where, seq, folder)
            seq += 1


def _checked(rows: Iterator[InputRow]) -> Iterator[InputRow]:
    """The rows, each once its images are found readable (a few header bytes of each file)."""
    for row in rows:
        if row.folder is not None:
            check(row.messages, row.folder, row.where)
        yield row

