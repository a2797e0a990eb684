"""Reading a run directory back: one row per (id, variant, sample), its latest result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from batchrun import store
from batchrun.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


def read_table(root: str | Path) -> pa.Table:
    """One row per (id, variant, sample), its latest result, as an Arrow table."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such output directory")
    if store.read_manifest(root) is None and not store.list_parts(root):
        raise UsageError(f"{root}: not a batchrun output directory (no {store.MANIFEST})")
    table = store.read_all(root)
    if table is None:
        return store.RESULT_SCHEMA.empty_table()
    return store.latest_per_key(table)


def read(root: str | Path) -> pd.DataFrame:
    """The results of a run (also while it runs) as a pandas DataFrame."""
    return to_pandas(read_table(root))


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame whose integer columns stay integers where values are null."""
    # Imported here: pandas is heavy, and nothing on the write path needs it.
    import pandas as pd

    types: dict[Any, Any] = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}
    return table.to_pandas(types_mapper=types.get)
