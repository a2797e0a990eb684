"""What a run is asked to do beyond its job: the command line's and the Python API's choices."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrun.limits.shared import SharedLimit
    from batchrun.sources import Shard


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Command-line choices that are not part of the job."""

    limit: int | None = None
    fresh: bool = False
    retry_errors: bool = False
    progress: bool = True
    handle_signals: bool = False
    # Only these input ids (estimate --sample); None: every row.
    only_ids: frozenset[str] | None = None
    # Called once the output directory is this run's and before anything is sent, so that
    # "sending for real" is never said by a run that is then refused (estimate --sample).
    on_start: Callable[[], None] | None = None
    # This process runs one shard of the job: its rows, its folder, its share of the limits.
    shard: Shard | None = None
    # Provider name -> a limit shared by every shard (a Ray actor's leases); then the shard's
    # limits are not divided, since the shared one holds the total.
    shared_limits: Mapping[str, SharedLimit] | None = None
    # (input rows, rows of this shard) as the parent of shard processes found them in its own
    # scan of the input: the shard checks nothing again and starts at once.
    known_input: tuple[int, int] | None = None
    # Progress as JSON lines on stdout instead of a bar, for a parent process that shows one.
    progress_events: bool = False
    # Batch variants: submit their provider batches and return, leaving them to run; the same
    # command later collects them.
    detach: bool = False
