"""What earlier runs into an output directory already settled, so a rerun skips it.

An answer stays usable after the job changed and changed back (a template A -> B -> A): every
ok result ever written counts as done, not only the latest per (id, variant, sample). When the
latest result of a row is another request's (B's), the old answer (A's) is `revived`: its
record is written again, so it is the latest once more, and nothing is paid for twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from batchrun.store.layout import list_parts
from batchrun.store.parts import iter_keys, latest_per_key, read_all

_KEYS = ["id", "variant", "sample", "request_hash", "status", "cost_usd"]


def done_key(row_id: str, request_hash: str) -> int:
    """Identity of a finished request: its id and hash (rows with equal prompts share a hash)."""
    return hash((row_id, request_hash))


@dataclass(frozen=True, slots=True)
class Previous:
    """Finished requests by `done_key`, the ok ones superseded since, and what was spent.

    `done_ok`: every request answered ok at some point; `done_error`: requests whose latest
    result is an error (empty with --retry-errors); `superseded`: ok answers that are no longer
    the latest of their (id, variant, sample), to be revived when the job asks for them again.
    """

    done_ok: set[int]
    done_error: set[int]
    superseded: set[int]
    spent: float


def previous_results(root: Path, retry_errors: bool) -> Previous:
    """What earlier runs into this directory already settled (and what they spent)."""
    # Only the columns needed: the answers themselves may be gigabytes.
    table = read_all(root, columns=_KEYS)
    if table is None:
        return Previous(set(), set(), set(), 0.0)
    done_ok: set[int] = set()
    for row_id, request_hash, status in iter_keys(table, ("id", "request_hash", "status")):
        if status == "ok":
            done_ok.add(done_key(row_id, request_hash))
    current_ok: set[int] = set()
    done_error: set[int] = set()
    latest = latest_per_key(table)
    for row_id, request_hash, status in iter_keys(latest, ("id", "request_hash", "status")):
        key = done_key(row_id, request_hash)
        if status == "ok":
            current_ok.add(key)
        elif not retry_errors and key not in done_ok:
            done_error.add(key)
    costs = [c for c in table.column("cost_usd").to_pylist() if c is not None]
    return Previous(done_ok, done_error, done_ok - current_ok, float(sum(costs)))


def revive(root: Path, wanted: Iterable[tuple[str, str]]) -> list[bytes]:
    """The journal lines of earlier ok answers to (id, request_hash), to be written again.

    Called under the output lock after recovery, so every result is in a part; each part is
    filtered as it is read, so memory is one part's matches, whatever the run's size.
    """
    wanted = set(wanted)
    if not wanted:
        return []
    hashes = sorted({h for _, h in wanted})
    found: dict[tuple[str, str], bytes] = {}
    for part in list_parts(root):  # in arrival order: the last copy of an answer wins
        table = pq.read_table(part, filters=[("request_hash", "in", hashes),
                                             ("status", "=", "ok")])
        if not table.num_rows:
            continue
        index = table.schema.get_field_index("finished_at")
        table = table.set_column(index, "finished_at", table.column(index).cast(pa.int64()))
        for row in table.to_pylist():
            key = (row["id"], row["request_hash"])
            if key in wanted:
                found[key] = orjson.dumps(row, default=str) + b"\n"
    return list(found.values())
