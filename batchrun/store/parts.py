"""Results as Arrow: the result schema, journal records -> tables, Parquet parts, reading back.

Parts are written atomically (temporary name, fsync, rename, fsync of the folder); reading merges
the parts with the journal segments not yet checkpointed, in arrival order.
"""

from __future__ import annotations

import itertools
import operator
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from batchrun.store.journal import read_journal_lines
from batchrun.store.layout import fsync_dir, list_journals, list_parts, parse_seq

KEY_COLUMNS = ("id", "variant", "sample")

RESULT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("variant", pa.string()),
        ("provider", pa.string()),
        ("model", pa.string()),
        ("sample", pa.int32()),
        ("request_hash", pa.string()),
        ("status", pa.string()),
        ("content", pa.string()),
        ("reasoning", pa.string()),
        ("refusal", pa.string()),
        ("parsed", pa.string()),
        ("tool_calls", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
        ("latency_s", pa.float64()),
        ("attempts", pa.int32()),
        ("error_type", pa.string()),
        ("error_message", pa.string()),
        ("response_id", pa.string()),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("raw", pa.string()),
        ("mode", pa.string()),
        ("batch_id", pa.string()),
        ("shard", pa.string()),
    ]
)
RESULT_COLUMNS = frozenset(RESULT_SCHEMA.names)


# The journal holds finished_at as microseconds since the epoch; the parts as a UTC timestamp.
_JOURNAL_SCHEMA = pa.schema(
    [pa.field(f.name, pa.int64()) if f.name == "finished_at" else f for f in RESULT_SCHEMA]
)
_FINISHED_AT = RESULT_SCHEMA.get_field_index("finished_at")
# Checkpoint tables come and go: the system allocator hands their memory back, where Arrow's
# default pool would keep what the largest checkpoint needed for the rest of the run.
_POOL = pa.system_memory_pool()


def lines_to_table(lines: list[bytes]) -> pa.Table:
    """Journal lines -> an Arrow table with the result schema first, extra columns after.

    Arrow's own JSON reader parses the lines: no Python object per value, and none of the
    Python-to-Arrow conversion that loads pandas. Extra columns whose values change type from
    row to row (which it refuses) take the slower path, where they become text.
    """
    data = b"".join(lines)
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(use_threads=False, block_size=max(len(data), 1)),
            parse_options=pajson.ParseOptions(
                explicit_schema=_JOURNAL_SCHEMA, unexpected_field_behavior="infer"
            ),
            memory_pool=_POOL,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return records_to_table([orjson.loads(line) for line in lines])
    finished = pc.cast(table.column(_FINISHED_AT), RESULT_SCHEMA.field(_FINISHED_AT).type,
                       memory_pool=_POOL)
    return table.set_column(_FINISHED_AT, RESULT_SCHEMA.field(_FINISHED_AT), finished)


def records_to_table(records: list[dict[str, Any]]) -> pa.Table:
    """Journal records -> an Arrow table with the result schema first, extra columns after."""
    columns: dict[str, pa.Array] = {}
    for field in RESULT_SCHEMA:
        values = _column(records, field.name)
        if field.name == "finished_at":
            columns[field.name] = pa.array(values, pa.int64()).cast(field.type)
        else:
            columns[field.name] = pa.array(values, field.type)
    # Every key of every record, in first-seen order, iterated in C: this runs per checkpoint.
    keys = dict.fromkeys(itertools.chain.from_iterable(records))
    for key in keys:
        if key not in RESULT_COLUMNS:
            columns[key] = _extra_column(_column(records, key))
    return pa.table(columns)


def _column(records: list[dict[str, Any]], name: str) -> list[Any]:
    try:
        return list(map(operator.itemgetter(name), records))  # the common case, in C
    except KeyError:
        return [r.get(name) for r in records]


def _extra_column(values: list[Any]) -> pa.Array:
    """A keep_columns / parse.fields column; values of mixed types become text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else _as_text(v) for v in values], pa.string())


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name, fsync it, rename it, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        pq.write_table(table, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_all(root: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every result on disk (parts, then journals not yet checkpointed), in arrival order.

    Safe while a run writes: journals are read before parts are listed, and a journal is only
    deleted after its part exists, so a segment is always found in one form or the other.
    """
    from_journals: dict[int, pa.Table] = {}
    for journal in list_journals(root):
        try:
            lines = read_journal_lines(journal)
        except FileNotFoundError:
            continue  # checkpointed meanwhile: its part is listed below
        if lines:
            from_journals[parse_seq(journal)] = lines_to_table(lines)
    tables: dict[int, pa.Table] = {}
    for part in list_parts(root):
        try:
            tables[parse_seq(part)] = pq.read_table(part, columns=columns)
        except FileNotFoundError:
            # Merged away by a compaction meanwhile: only once a later part (read after this
            # one, in name order) holds its rows.
            continue
    for seq, table in from_journals.items():
        if seq not in tables:
            tables[seq] = table.select(columns) if columns else table
    ordered = [tables[seq] for seq in sorted(tables) if tables[seq].num_rows]
    if not ordered:
        return None
    return concat(ordered)


def concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate parts whose extra columns may disagree in type (then they become text)."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            if not pa.types.is_null(field.type):
                types.setdefault(field.name, set()).add(field.type)
    mixed = {name for name, seen in types.items() if len(seen) > 1 and name not in RESULT_COLUMNS}
    fixed = []
    for table in tables:
        for name in mixed & set(table.column_names):
            index = table.column_names.index(name)
            values = [None if v is None else _as_text(v) for v in table.column(name).to_pylist()]
            table = table.set_column(index, name, pa.array(values, pa.string()))
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")


def latest_per_key(table: pa.Table) -> pa.Table:
    """One row per (id, variant, sample): the last one that arrived."""
    n = table.num_rows
    if n == 0:
        return table
    order = pa.array(range(n), pa.int64())
    indexed = table.select(list(KEY_COLUMNS)).append_column("__order", order)
    last = indexed.group_by(list(KEY_COLUMNS), use_threads=False).aggregate([("__order", "max")])
    # Sorted, so readers see results in the order they arrived.
    rows = np.sort(last.column("__order_max").to_numpy())
    return table.take(pa.array(rows))


def iter_keys(table: pa.Table, columns: Iterable[str]) -> Iterable[tuple[Any, ...]]:
    """Tuples of the given columns, row by row (for building small lookup sets)."""
    arrays = [table.column(c).to_pylist() for c in columns]
    return zip(*arrays, strict=True)
