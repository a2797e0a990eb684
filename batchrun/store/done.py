"""What earlier runs into an output directory already settled, so a rerun skips it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchrun.store.parts import iter_keys, latest_per_key, read_all


def done_key(row_id: str, request_hash: str) -> int:
    """Identity of a finished request: its id and hash (rows with equal prompts share a hash)."""
    return hash((row_id, request_hash))


@dataclass(frozen=True, slots=True)
class Previous:
    """Finished requests by `done_key` (ok, and errors unless they are to be redone), and spend."""

    done_ok: set[int]
    done_error: set[int]
    spent: float


def previous_results(root: Path, retry_errors: bool) -> Previous:
    """What earlier runs into this directory already settled (and what they spent)."""
    # Only the columns needed: the answers themselves may be gigabytes.
    table = read_all(root, columns=["id", "variant", "sample", "request_hash", "status",
                                          "cost_usd"])
    if table is None:
        return Previous(set(), set(), 0.0)
    latest = latest_per_key(table)
    done_ok: set[int] = set()
    done_error: set[int] = set()
    for row_id, request_hash, status in iter_keys(latest, ("id", "request_hash", "status")):
        if status == "ok":
            done_ok.add(done_key(row_id, request_hash))
        elif not retry_errors:
            done_error.add(done_key(row_id, request_hash))
    costs = [c for c in table.column("cost_usd").to_pylist() if c is not None]
    return Previous(done_ok, done_error, float(sum(costs)))
