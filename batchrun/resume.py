"""What earlier runs into an output directory already settled, so a rerun skips it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchrun import store


def done_key(row_id: str, request_hash: str) -> int:
    """Identity of a finished request: its id and hash (rows with equal prompts share a hash)."""
    return hash((row_id, request_hash))


@dataclass(frozen=True, slots=True)
class Previous:
    """Finished requests (by `done_key`), their counts, and the money they cost."""

    done: set[int]
    ok: int
    error: int
    counted: int
    spent: float


def previous_results(root: Path, retry_errors: bool) -> Previous:
    """What earlier runs into this directory already settled (and what they spent)."""
    table = store.read_all(root)
    if table is None:
        return Previous(set(), 0, 0, 0, 0.0)
    latest = store.latest_per_key(table)
    done: set[int] = set()
    ok = error = 0
    for row_id, request_hash, status in store.iter_keys(latest, ("id", "request_hash", "status")):
        if status == "ok":
            ok += 1
        else:
            error += 1
        if status == "ok" or not retry_errors:
            done.add(done_key(row_id, request_hash))
    costs = [c for c in table.column("cost_usd").to_pylist() if c is not None]
    counted = ok + error if not retry_errors else ok
    return Previous(done, ok, error if not retry_errors else 0, counted, float(sum(costs)))
