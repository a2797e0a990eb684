"""Row ids must be unique: checked in 8 bytes a row, naming both rows of a duplicate."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from batchrun.errors import InputError
from batchrun.sources.shards import id_hash

if TYPE_CHECKING:
    from batchrun.sources.rows import InputRow


def id_hashes_checked_unique(
    stream: Callable[[], Iterable[InputRow]], id_column: str | None
) -> np.ndarray:
    """The id hashes of the rows `stream()` yields, in input order; InputError naming the
    first id two rows share.

    `stream` is called a second time only when two ids hash alike.
    """
    # 8 bytes per row instead of a set of strings keeps a million-row scan within a few MB.
    hashes = array("q")
    for row in stream():
        hashes.append(id_hash(row.id))
    in_order = np.frombuffer(hashes, dtype=np.int64)
    sorted_hashes = np.sort(in_order)
    clash = sorted_hashes[1:][sorted_hashes[1:] == sorted_hashes[:-1]]
    if clash.size:
        _name_duplicate(stream(), id_column, set(clash.tolist()))
    return in_order


def _name_duplicate(rows: Iterable[InputRow], id_column: str | None, clashes: set[int]) -> None:
    # Only rows whose hash collided are remembered, so this second pass stays small too.
    seen: dict[str, str] = {}
    for row in rows:
        if id_hash(row.id) not in clashes:
            continue
        if row.id in seen:
            fix = "" if id_column is None else " or drop [input] id to use row numbers"
            raise InputError(
                f'duplicate id "{row.id}" at {seen[row.id]} and {row.where}; '
                f"ids must be unique — fix the data{fix}"
            )
        seen[row.id] = row.where
