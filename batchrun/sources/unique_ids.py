"""Row ids must be unique: checked in 8 bytes a row, naming both rows of a duplicate."""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from batchrun.errors import InputError

if TYPE_CHECKING:
    from batchrun.sources.rows import InputRow


def count_rows_with_unique_ids(
    stream: Callable[[], Iterable[InputRow]], id_column: str | None
) -> int:
    """The number of rows `stream()` yields; InputError naming the first id two rows share.

    `stream` is called a second time only when two ids hash alike.
    """
    # 8 bytes per row instead of a set of strings keeps a million-row scan within a few MB.
    hashes = array("q")
    for row in stream():
        hashes.append(_hash(row.id))
    sorted_hashes = np.frombuffer(hashes, dtype=np.int64)
    sorted_hashes.sort()
    clash = sorted_hashes[1:][sorted_hashes[1:] == sorted_hashes[:-1]]
    if clash.size:
        _name_duplicate(stream(), id_column, set(clash.tolist()))
    return len(hashes)


def _hash(row_id: str) -> int:
    digest = hashlib.blake2b(row_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _name_duplicate(rows: Iterable[InputRow], id_column: str | None, clashes: set[int]) -> None:
    # Only rows whose hash collided are remembered, so this second pass stays small too.
    seen: dict[str, str] = {}
    for row in rows:
        if _hash(row.id) not in clashes:
            continue
        if row.id in seen:
            fix = "" if id_column is None else " or drop [input] id to use row numbers"
            raise InputError(
                f'duplicate id "{row.id}" at {seen[row.id]} and {row.where}; '
                f"ids must be unique — fix the data{fix}"
            )
        seen[row.id] = row.where
