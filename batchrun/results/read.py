"""Reading a run directory back: one row per (id, variant, sample), its latest result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from batchrun import store
from batchrun.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


def read_table(root: str | Path) -> pa.Table:
    """One row per (id, variant, sample), its latest result, as an Arrow table.

    A sharded run's shards are read as one dataset, each row's `shard` column set.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such output directory")
    sharded = bool(store.shard_folders(root))
    if not sharded and store.read_manifest(root) is None and not store.list_parts(root):
        raise UsageError(f"{root}: not a batchrun output directory (no {store.MANIFEST})")
    if len(store.shard_counts(root)) > 1:
        raise UsageError(f"{root}: holds shards of different counts N ({root / store.SHARDS_DIR}"
                         "); a row's shard depends on N, so keep one N per directory")
    table = store.read_run(root)
    if table is None:
        return store.RESULT_SCHEMA.empty_table()
    return _complete(store.latest_per_key(table))


def _complete(table: pa.Table) -> pa.Table:
    """Every result column present: parts written by older versions lack the newer ones."""
    for field in store.RESULT_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    # Results written before the mode column existed were all online answers.
    mode = table.column("mode")
    if mode.null_count:
        table = table.set_column(table.column_names.index("mode"), "mode",
                                 pc.fill_null(mode, "online"))
    return table


def read(root: str | Path) -> pd.DataFrame:
    """The results of a run (also while it runs) as a pandas DataFrame."""
    return to_pandas(read_table(root))


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame whose integer columns stay integers where values are null."""
    # Imported here: pandas is heavy, and nothing on the write path needs it.
    import pandas as pd

    types: dict[Any, Any] = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}
    return table.to_pandas(types_mapper=types.get)
